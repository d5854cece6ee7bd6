-- The monitor's tick writes an incident and its 'opened' line for every device that goes
-- offline: ten thousand of each when 1% of a million-device fleet drops at once. A foreign
-- key check runs once per row and locks the referenced row (SELECT ... FOR KEY SHARE),
-- which writes that device's page of `devices` again: about a fifth of the tick
-- (bench/monitor.py). Both references hold without it:
--  - incidents.device_id: incidents/lifecycle.py opens a device incident with an INSERT
--    that joins `devices`, so a row cannot name a device that is not there; devices are
--    retired, never deleted (no code deletes from `devices`).
--  - incident_events.incident_id: lines are written by the incident lifecycle for the
--    incidents it has just opened or read; incidents are never deleted.
ALTER TABLE incidents DROP CONSTRAINT IF EXISTS incidents_device_id_fkey;
ALTER TABLE incident_events DROP CONSTRAINT IF EXISTS incident_events_incident_id_fkey;

-- Opening a device incident reads the device's model and name for its summary: from this
-- covering index (an index-only scan), not from the wide `devices` rows, which at a
-- million devices are mostly not in memory.
CREATE INDEX devices_label ON devices (id) INCLUDE (model_id, name);
