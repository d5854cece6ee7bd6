-- One path for notifications: every producer (connectivity, health rules, escalation and
-- reminders, fleet outages, blind spots, campaign and recall notices) records a notice,
-- what happened and whom it concerns, in the transaction of the change that causes it.
-- One router (alerts/router.py) claims notices, routes them to channels and writes the
-- outbox; so detection never waits for delivery, and every message takes the same road.

CREATE TABLE notices (
    id          bigserial PRIMARY KEY,
    created_at  timestamptz NOT NULL,
    -- owner: the device's owner, through their channels; staff: every staff channel.
    audience    text NOT NULL CHECK (audience IN ('owner', 'staff')),
    template    text NOT NULL,
    severity    text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    -- No foreign keys: a fleet-wide burst records ten thousand notices in the tick's
    -- transaction, and checking each against a million devices costs the tick a third of
    -- its time. The router copes with a device or an incident that is gone.
    device_id   text,
    incident_id bigint,
    campaign_id bigint,
    -- Which of the owner's channels: 'routed' (by severity, the usual), or 'position:N'
    -- (the Nth channel alone, whatever its minimum severity: a recall's first, then next).
    channels    text NOT NULL DEFAULT 'routed' CHECK (channels ~ '^(routed|position:[0-9]{1,3})$'),
    -- The producer's facts for the template; the router adds the device's own.
    context     jsonb NOT NULL DEFAULT '{}',
    routed_at   timestamptz,
    -- What the router made of it: 'queued 2', or why nothing was sent ('incident resolved').
    outcome     text,
    CHECK (audience = 'staff' OR device_id IS NOT NULL)
);
-- The router reads only what it has not routed yet.
CREATE INDEX notices_unrouted ON notices (id) WHERE routed_at IS NULL;

-- Events still owed a message under the old scheme become notices, then the old columns go.
INSERT INTO notices (created_at, audience, template, severity, device_id, incident_id, context)
SELECT e.at, 'owner', e.notify, i.severity, i.device_id, e.incident_id, e.detail
FROM incident_events e JOIN incidents i ON i.id = e.incident_id
WHERE e.notify IS NOT NULL AND e.fanned_out_at IS NULL AND i.device_id IS NOT NULL
ORDER BY e.id;
DROP INDEX incident_events_fanout;
ALTER TABLE incident_events DROP COLUMN notify, DROP COLUMN fanned_out_at;

-- Every long-running part (ingest, monitor, alerts, campaign runner) counts the runs and the
-- failures of its jobs and adds them here every few seconds (core/worker.py); /metrics reads
-- them, so a job failing in any process is seen.
CREATE TABLE worker_jobs (
    worker         text NOT NULL,
    job            text NOT NULL,
    runs_total     bigint NOT NULL DEFAULT 0,
    errors_total   bigint NOT NULL DEFAULT 0,
    -- Runs skipped because the one before was still going (a busy tick).
    overruns_total bigint NOT NULL DEFAULT 0,
    last_run_at    timestamptz,
    last_seconds   real,
    last_error_at  timestamptz,
    last_error     text,
    PRIMARY KEY (worker, job)
);
