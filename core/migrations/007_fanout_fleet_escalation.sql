-- Detection and delivery apart (the Healthchecks "flip" split), fleet incidents that hold
-- their devices' alerts, escalation to staff, reminders, and a per-customer rate limit.

-- An event that owes its customer a message names the template. The monitor's tick writes
-- it with the state change, in the same transaction; the fan-out later claims it, routes
-- it to the owner's channels and writes the outbox rows, again in one transaction.
ALTER TABLE incident_events
    ADD COLUMN notify       text,
    ADD COLUMN fanned_out_at timestamptz;
CREATE INDEX incident_events_fanout ON incident_events (id)
    WHERE notify IS NOT NULL AND fanned_out_at IS NULL;

ALTER TABLE incidents
    -- The fleet incident (a group outage) this device incident is part of.
    ADD COLUMN fleet_incident_id bigint REFERENCES incidents (id) ON DELETE SET NULL,
    ADD COLUMN escalated_at      timestamptz,
    ADD COLUMN reminded_at       timestamptz,
    ADD COLUMN reminders         integer NOT NULL DEFAULT 0;
CREATE INDEX incidents_fleet ON incidents (fleet_incident_id) WHERE fleet_incident_id IS NOT NULL;
-- The few incidents that may need a reminder or an escalation: open critical ones.
CREATE INDEX incidents_open_critical ON incidents (opened_at)
    WHERE severity = 'critical' AND status <> 'resolved';

-- At most this many messages an hour on each of the customer's channels (critical ones
-- excepted); NULL: the FLEETWATCH_ALERTS_RATE_LIMIT_PER_HOUR default.
ALTER TABLE customers ADD COLUMN max_messages_per_hour integer
    CHECK (max_messages_per_hour IS NULL OR max_messages_per_hour > 0);
CREATE INDEX notifications_sent ON notifications (channel_id, sent_at) WHERE status = 'sent';

-- held: kept back by an open fleet incident, released when it resolves or customers are
-- told of the outage.
ALTER TABLE notifications DROP CONSTRAINT notifications_status_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_status_check
    CHECK (status IN ('pending', 'held', 'sending', 'sent', 'failed', 'cancelled'));
CREATE INDEX notifications_held ON notifications (incident_id) WHERE status = 'held';
