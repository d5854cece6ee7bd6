-- Sensible default models, one per kind of device the product ships for.
-- Thresholds are read by the monitor's degraded rules.

INSERT INTO device_models
    (id, name, device_type, kind, heartbeat_interval_s, allowed_misses, grace_s, critical, thresholds)
VALUES
    ('thermostat-v2', 'Thermostat v2', 'thermostat', 'home', 60, 3, 60, false,
     '{"battery_low_pct": 15, "battery_ok_pct": 20, "temp_max_c": 45, "temp_min_c": 0}'),
    ('alarm-panel-v3', 'Alarm panel v3', 'alarm_panel', 'home', 30, 3, 30, true,
     '{"battery_low_pct": 20, "battery_ok_pct": 25, "temp_max_c": 50, "temp_min_c": -10}'),
    ('camera-v1', 'Outdoor camera v1', 'camera', 'home', 60, 3, 60, false,
     '{"battery_low_pct": 15, "battery_ok_pct": 20, "temp_max_c": 60, "temp_min_c": -20}'),
    ('ev-charger-v1', 'EV charger v1', 'ev_charger', 'home', 60, 3, 60, false,
     '{"temp_max_c": 70, "temp_min_c": -25}'),
    ('car-telematics-v1', 'Car telematics unit v1', 'car', 'vehicle', 300, 2, 300, false,
     '{"battery_low_pct": 20, "battery_ok_pct": 25, "temp_max_c": 85, "temp_min_c": -30}')
ON CONFLICT (id) DO NOTHING;
