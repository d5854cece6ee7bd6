-- Registry: device models, customers and their channels, devices, and per-device state.

CREATE TABLE device_models (
    id                   text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9._-]{1,64}$'),
    name                 text NOT NULL,
    device_type          text NOT NULL,
    kind                 text NOT NULL CHECK (kind IN ('home', 'vehicle')),
    heartbeat_interval_s integer NOT NULL CHECK (heartbeat_interval_s > 0),
    allowed_misses       integer NOT NULL DEFAULT 3 CHECK (allowed_misses >= 1),
    grace_s              integer NOT NULL DEFAULT 60 CHECK (grace_s >= 0),
    -- A critical device (an alarm panel) may break a customer's quiet hours.
    critical             boolean NOT NULL DEFAULT false,
    thresholds           jsonb NOT NULL DEFAULT '{}'
);

CREATE TABLE customers (
    id         text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9._@-]{1,64}$'),
    name       text NOT NULL,
    timezone   text NOT NULL DEFAULT 'UTC',
    created_at timestamptz NOT NULL DEFAULT now()
);

-- apprise_url may hold secrets (tokens, passwords): never log or return it unredacted.
CREATE TABLE contact_channels (
    id          bigserial PRIMARY KEY,
    customer_id text NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    kind        text NOT NULL CHECK (kind IN ('email', 'sms', 'push', 'webhook')),
    apprise_url text NOT NULL,
    label       text,
    enabled     boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX contact_channels_customer ON contact_channels (customer_id);

CREATE TABLE devices (
    id              text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9._-]{1,64}$'),
    model_id        text NOT NULL REFERENCES device_models (id),
    name            text,
    serial          text,
    vin             text CHECK (vin IS NULL OR vin ~ '^[A-HJ-NPR-Z0-9]{17}$'),
    firmware        text,
    customer_id     text REFERENCES customers (id),
    timezone        text NOT NULL DEFAULT 'UTC',
    region          text,
    labels          text[] NOT NULL DEFAULT '{}',
    -- Overrides the model's interval * allowed_misses + grace.
    offline_after_s integer CHECK (offline_after_s > 0),
    provisioned_at  timestamptz NOT NULL DEFAULT now(),
    retired_at      timestamptz
);
CREATE INDEX devices_model ON devices (model_id);
CREATE INDEX devices_customer ON devices (customer_id);
CREATE INDEX devices_labels ON devices USING gin (labels);
CREATE UNIQUE INDEX devices_model_serial ON devices (model_id, serial) WHERE serial IS NOT NULL;
CREATE UNIQUE INDEX devices_vin ON devices (vin) WHERE vin IS NOT NULL;

-- One row per device, kept current by the ingest. overdue_at is the stored deadline the
-- monitor reads by range, so no tick ever scans the fleet and no timer lives in memory.
CREATE TABLE device_state (
    device_id         text PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
    -- provisioned: waiting for its first heartbeat; never_seen: that wait ran past its grace.
    status            text NOT NULL DEFAULT 'provisioned'
                      CHECK (status IN ('provisioned', 'never_seen', 'online', 'degraded',
                                        'offline', 'retired')),
    status_changed_at timestamptz NOT NULL DEFAULT now(),
    last_seen_at      timestamptz,
    last_received_at  timestamptz,
    last_seq          bigint,
    last_uptime_s     bigint,
    firmware          text,
    last_metrics      jsonb,
    overdue_at        timestamptz,
    clock_skewed_at   timestamptz,
    connectivity      text CHECK (connectivity IN ('online', 'offline')),
    connectivity_at   timestamptz
);

-- The device's own retained birth message and Last Will, as received.
CREATE TABLE connectivity_events (
    id          bigserial PRIMARY KEY,
    device_id   text NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    received_at timestamptz NOT NULL,
    status      text NOT NULL CHECK (status IN ('online', 'offline')),
    retained    boolean NOT NULL DEFAULT false
);
CREATE INDEX connectivity_events_device ON connectivity_events (device_id, received_at);

-- Whatever the ingest could not accept, kept whole with the reason.
CREATE TABLE rejected_messages (
    id          bigserial PRIMARY KEY,
    received_at timestamptz NOT NULL,
    topic       text NOT NULL,
    device_id   text,
    reason      text NOT NULL,
    detail      text,
    payload     bytea
);
CREATE INDEX rejected_messages_received ON rejected_messages (received_at);
CREATE INDEX rejected_messages_device ON rejected_messages (device_id, received_at);
