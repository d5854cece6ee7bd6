-- device_models.thresholds held the limits the default models of 003 shipped with. 006
-- turned them into health rules (device_models.health_rules), which are what the monitor
-- evaluates; nothing has read the column since.
ALTER TABLE device_models DROP COLUMN thresholds;
