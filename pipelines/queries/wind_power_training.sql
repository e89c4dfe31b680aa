-- Wind-farm power model: predict active power from weather and turbine at 10-minute SCADA resolution.
-- Only normal operation trains the model (curtailed and faulty periods would teach it wrong physics).
SELECT
  ts,
  turbine_id,
  wind_speed_ms,
  wind_direction_deg,
  air_temperature_c,
  air_density_kgm3,
  EXTRACT(HOUR FROM ts) AS hour_of_day,
  power_kw
FROM scada.turbine
WHERE ts < @cutoff
  AND status = 'ok'
