-- Incidents with their timeline, the notification outbox and its delivery log.

-- The monitor reads devices by these, never by scanning the fleet.
CREATE INDEX device_state_watch ON device_state (overdue_at)
    WHERE status IN ('provisioned', 'online', 'degraded');
-- Down devices heard from since they went down: exactly the recovery query's condition, so
-- the tick reads only devices coming back, not every device that is down.
CREATE INDEX device_state_back ON device_state (status_changed_at)
    WHERE status IN ('offline', 'never_seen') AND last_received_at > status_changed_at;
CREATE INDEX device_state_will ON device_state (connectivity_at)
    WHERE connectivity = 'offline';

-- Customer preferences: quiet hours in the customer's own timezone.
ALTER TABLE customers
    ADD COLUMN quiet_hours_start time,
    ADD COLUMN quiet_hours_end   time;
-- Per channel: the lowest severity it receives.
ALTER TABLE contact_channels
    ADD COLUMN min_severity text NOT NULL DEFAULT 'info'
        CHECK (min_severity IN ('info', 'warning', 'critical'));

CREATE TABLE staff_channels (
    id           bigserial PRIMARY KEY,
    apprise_url  text NOT NULL,
    label        text,
    min_severity text NOT NULL DEFAULT 'warning'
                 CHECK (min_severity IN ('info', 'warning', 'critical')),
    enabled      boolean NOT NULL DEFAULT true
);

CREATE TABLE incidents (
    id              bigserial PRIMARY KEY,
    scope           text NOT NULL CHECK (scope IN ('device', 'fleet', 'system')),
    device_id       text REFERENCES devices (id) ON DELETE CASCADE,
    -- offline, never_seen, and later the degraded kinds, fleet_outage, blind_spot.
    kind            text NOT NULL,
    severity        text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    status          text NOT NULL DEFAULT 'open'
                    CHECK (status IN ('open', 'acknowledged', 'resolved')),
    opened_at       timestamptz NOT NULL,
    acknowledged_at timestamptz,
    acknowledged_by text,
    resolved_at     timestamptz,
    summary         text NOT NULL,
    -- Fleet and system incidents: what they are about ('model:camera-v1', 'ingest').
    group_key       text,
    details         jsonb NOT NULL DEFAULT '{}',
    CHECK ((scope = 'device') = (device_id IS NOT NULL))
);
-- One open incident per device and kind, whatever number of monitors race to open it.
CREATE UNIQUE INDEX incidents_open_device_kind ON incidents (device_id, kind)
    WHERE status <> 'resolved' AND scope = 'device';
CREATE UNIQUE INDEX incidents_open_group_kind ON incidents (group_key, kind)
    WHERE status <> 'resolved' AND scope <> 'device';
CREATE INDEX incidents_opened ON incidents (opened_at);
CREATE INDEX incidents_device ON incidents (device_id, opened_at) WHERE scope = 'device';
CREATE INDEX incidents_unstable_open ON incidents (device_id)
    WHERE scope = 'device' AND kind = 'unstable_connection' AND status <> 'resolved';

CREATE TABLE incident_events (
    id          bigserial PRIMARY KEY,
    incident_id bigint NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    at          timestamptz NOT NULL,
    -- opened, resolved, notified, notification_failed, acknowledged, comment, ...
    kind        text NOT NULL,
    detail      jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX incident_events_incident ON incident_events (incident_id, at);

-- The outbox: written in the same transaction as the change that causes it.
CREATE TABLE notifications (
    id               bigserial PRIMARY KEY,
    incident_id      bigint REFERENCES incidents (id) ON DELETE SET NULL,
    device_id        text REFERENCES devices (id) ON DELETE CASCADE,
    customer_id      text REFERENCES customers (id) ON DELETE CASCADE,
    channel_id       bigint REFERENCES contact_channels (id) ON DELETE CASCADE,
    staff_channel_id bigint REFERENCES staff_channels (id) ON DELETE CASCADE,
    template         text NOT NULL,
    severity         text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    -- Everything the template needs, taken from the registry when the event happened.
    context          jsonb NOT NULL,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'cancelled')),
    created_at       timestamptz NOT NULL,
    -- Not before: quiet hours, a retry's backoff.
    due_at           timestamptz NOT NULL,
    attempts         integer NOT NULL DEFAULT 0,
    -- A claim is a lease: a dispatcher that dies mid-send gives it up when this passes.
    claimed_until    timestamptz,
    claim_token      uuid,
    sent_at          timestamptz,
    last_error       text,
    CHECK ((channel_id IS NULL) <> (staff_channel_id IS NULL))
);
CREATE INDEX notifications_due ON notifications (due_at) WHERE status = 'pending';
CREATE INDEX notifications_claimed ON notifications (claimed_until) WHERE status = 'sending';
CREATE INDEX notifications_incident ON notifications (incident_id);
CREATE INDEX notifications_customer ON notifications (customer_id, created_at);

-- Every attempt, started before the send and finished after it: a send cut off between
-- delivery and its record shows here as an attempt that never finished.
CREATE TABLE delivery_attempts (
    id              bigserial PRIMARY KEY,
    notification_id bigint NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
    started_at      timestamptz NOT NULL,
    finished_at     timestamptz,
    ok              boolean,
    permanent       boolean,
    error           text,
    duration_ms     integer,
    -- Several notifications sent as one digest share a message id.
    message_id      uuid NOT NULL
);
CREATE INDEX delivery_attempts_notification ON delivery_attempts (notification_id);

-- When the monitor last ran, per job, so several monitor processes can share the work.
CREATE TABLE monitor_runs (
    job      text PRIMARY KEY,
    last_run timestamptz NOT NULL
);
