-- The staff and customer API: keys with roles, silences and maintenance windows, and the
-- counters /metrics reads from the processes that keep them.

-- Only a SHA-256 of each key is kept: the key itself is shown once, when it is made.
-- Keys are 32 random bytes, so a plain hash is enough (no password stretching needed).
CREATE TABLE api_keys (
    id          bigserial PRIMARY KEY,
    -- The key's first characters, shown in listings so a person can tell keys apart.
    prefix      text NOT NULL,
    key_hash    bytea NOT NULL UNIQUE,
    role        text NOT NULL CHECK (role IN ('admin', 'staff', 'firmware', 'customer')),
    customer_id text REFERENCES customers (id) ON DELETE CASCADE,
    label       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at  timestamptz,
    CHECK ((role = 'customer') = (customer_id IS NOT NULL))
);

-- A silence (or maintenance window) holds the customer alerts of the devices it matches
-- until it ends: they wait in the outbox, and a device back meanwhile sends nothing.
CREATE TABLE silences (
    id          bigserial PRIMARY KEY,
    scope       text NOT NULL CHECK (scope IN ('device', 'model', 'label')),
    target      text NOT NULL,
    starts_at   timestamptz NOT NULL,
    ends_at     timestamptz NOT NULL,
    reason      text NOT NULL,
    maintenance boolean NOT NULL DEFAULT false,
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (ends_at > starts_at)
);
CREATE INDEX silences_active ON silences (ends_at, scope, target);

-- Running totals each ingest keeps, and how long each monitor job last took.
ALTER TABLE ingest_status
    ADD COLUMN messages_total bigint NOT NULL DEFAULT 0,
    ADD COLUMN stored_total   bigint NOT NULL DEFAULT 0,
    ADD COLUMN rejected_total bigint NOT NULL DEFAULT 0;
ALTER TABLE monitor_runs ADD COLUMN duration_ms real;

-- /metrics counts these without reading the whole outbox.
CREATE INDEX notifications_failed ON notifications (id) WHERE status = 'failed';
CREATE INDEX notifications_active ON notifications (status)
    WHERE status IN ('pending', 'held', 'sending');
-- The device list's status filter, and its fleet summary, read device_state by status.
CREATE INDEX device_state_status ON device_state (status, device_id);

-- How much of the fleet was online, a point a minute, for the dashboard's chart. Written
-- by the API's summary refresh; a point per minute whichever API process writes it.
CREATE TABLE fleet_history (
    at      timestamptz PRIMARY KEY,
    total   integer NOT NULL,
    online  integer NOT NULL,
    by_status jsonb NOT NULL
);

-- Delivery failures for /metrics, without reading the whole delivery log.
CREATE INDEX delivery_attempts_failed ON delivery_attempts (id) WHERE ok = false;
