-- Rows to score with the wind-power champion: the model's inputs plus the keys to join back on.
-- Every period is scored, curtailed and faulty ones too (the model says what normal operation
-- would have produced); `status` is passed through so consumers can filter.
SELECT
  ts,
  turbine_id,
  status,
  wind_speed_ms,
  wind_direction_deg,
  air_temperature_c,
  air_density_kgm3,
  EXTRACT(HOUR FROM ts) AS hour_of_day
FROM scada.turbine
WHERE ts >= @start
