-- The current window for drift monitoring: the same columns the wind-power model was trained on.
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
WHERE ts >= @start
  AND status = 'ok'
