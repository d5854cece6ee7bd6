-- Degraded-health rules as data, per device model with a per-device override, and what
-- the monitor needs to find the devices due an evaluation without scanning the fleet.
-- The rule schema is monitor/rules.py's; the monitor validates a list before using it.

ALTER TABLE device_models
    ADD COLUMN health_rules jsonb NOT NULL DEFAULT '[]'
        CHECK (jsonb_typeof(health_rules) = 'array');
-- NULL: the model's rules; '[]': none for this device.
ALTER TABLE devices
    ADD COLUMN health_rules jsonb CHECK (jsonb_typeof(health_rules) = 'array');

-- A heartbeat received after this makes the device due a health evaluation. The monitor
-- sets it to the newest receipt it evaluated, plus FLEETWATCH_MONITOR_HEALTH_MIN_INTERVAL_S.
-- The ingest never writes it. A constant default: adding the column rewrites nothing.
ALTER TABLE device_state
    ADD COLUMN health_due_after timestamptz NOT NULL DEFAULT '-infinity';
-- Exactly the health job's condition, so it reads only the devices due. The ingest's
-- update of a device is never HOT (overdue_at is indexed), so this costs it one more
-- index entry for a heartbeat that makes the device due, and none for the heartbeats
-- within the minimum interval after an evaluation.
CREATE INDEX device_state_health ON device_state (health_due_after)
    WHERE status IN ('online', 'degraded') AND last_received_at > health_due_after;

-- Defaults for the five models of 003, from their `thresholds`. Each rule's name is the
-- kind of incident it opens. Temperature is one rule with a range, so a device that is too
-- hot and then too cold stays one incident; it clears 2 degrees inside the range.
UPDATE device_models SET health_rules = jsonb_build_array(
    jsonb_build_object(
        'name', 'temperature', 'kind', 'threshold', 'severity', 'warning',
        'metric', 'temp_c',
        'fire_below', (thresholds ->> 'temp_min_c')::numeric,
        'fire_above', (thresholds ->> 'temp_max_c')::numeric,
        'clear_above', (thresholds ->> 'temp_min_c')::numeric + 2,
        'clear_below', (thresholds ->> 'temp_max_c')::numeric - 2,
        'for_s', 300),
    -- Uptime went backwards 3 times within 30 min; over after 30 min without one.
    jsonb_build_object(
        'name', 'reboot_loop', 'kind', 'reboot_loop', 'severity', 'warning',
        'resets', 3, 'window_s', 1800, 'clear_resets', 0),
    -- Over 20 % of the expected heartbeats missing within an hour; over below 10 %.
    jsonb_build_object(
        'name', 'flaky_link', 'kind', 'flaky_link', 'severity', 'warning',
        'missing_pct', 20, 'clear_pct', 10, 'window_s', 3600))
WHERE id IN ('thermostat-v2', 'alarm-panel-v3', 'camera-v1', 'ev-charger-v1',
             'car-telematics-v1')
  AND health_rules = '[]'
  AND thresholds ? 'temp_min_c' AND thresholds ? 'temp_max_c';

-- Models with a battery (those with battery thresholds): low for 10 min, over above the
-- "ok" level; and a drain that, at the last 4 hours' rate, empties it within 24 hours.
UPDATE device_models SET health_rules = jsonb_build_array(
    jsonb_build_object(
        'name', 'low_battery', 'kind', 'threshold', 'severity', 'warning',
        'metric', 'battery_pct',
        'fire_below', (thresholds ->> 'battery_low_pct')::numeric,
        'clear_above', (thresholds ->> 'battery_ok_pct')::numeric,
        'for_s', 600),
    jsonb_build_object(
        'name', 'battery_drain', 'kind', 'drain', 'severity', 'warning',
        'metric', 'battery_pct', 'horizon_s', 86400, 'clear_horizon_s', 129600,
        'window_s', 14400, 'min_points', 10)) || health_rules
WHERE id IN ('thermostat-v2', 'alarm-panel-v3', 'camera-v1', 'ev-charger-v1',
             'car-telematics-v1')
  AND thresholds ? 'battery_low_pct' AND thresholds ? 'battery_ok_pct'
  AND NOT health_rules @> '[{"name": "low_battery"}]';
