-- Recall notices and over-the-air update campaigns: what they target, how they roll out
-- in waves, each device's progress, and what devices report about their updates.
-- The state lives here, not in the scheduler: a restarted runner resumes from these rows.

CREATE TABLE campaigns (
    id               bigserial PRIMARY KEY,
    name             text NOT NULL,
    kind             text NOT NULL CHECK (kind IN ('recall_notice', 'ota_update')),
    status           text NOT NULL DEFAULT 'scheduled'
                     CHECK (status IN ('scheduled', 'running', 'paused', 'halted', 'completed',
                                       'cancelled')),
    -- The targeting spec as given (campaigns/targeting.py), kept for the record.
    target           jsonb NOT NULL,
    target_version   text,
    artifact_url     text,
    artifact_sha256  text CHECK (artifact_sha256 IS NULL OR artifact_sha256 ~ '^[0-9a-f]{64}$'),
    -- Cumulative percentages of the targeted devices, one per wave: [1, 10, 50, 100].
    waves            jsonb NOT NULL DEFAULT '[1, 10, 50, 100]',
    soak_s           integer NOT NULL DEFAULT 3600 CHECK (soak_s >= 0),
    -- In each device's own local time; both NULL: any time.
    window_start     time,
    window_end       time,
    starts_at        timestamptz NOT NULL,
    current_wave     integer NOT NULL DEFAULT 0,
    wave_opened_at   timestamptz,
    -- Health gate and per-device step limits (campaigns/policy.py).
    policy           jsonb NOT NULL DEFAULT '{}',
    -- Recall notices: whether the device is safe to use meanwhile, and what to do.
    safe_to_use      boolean,
    instructions     text,
    halted_reason    text,
    created_by       text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    CHECK ((window_start IS NULL) = (window_end IS NULL)),
    CHECK (kind <> 'ota_update'
           OR (target_version IS NOT NULL AND artifact_url IS NOT NULL
               AND artifact_sha256 IS NOT NULL))
);
-- The runner reads only the campaigns it has work on.
CREATE INDEX campaigns_active ON campaigns (starts_at)
    WHERE status IN ('scheduled', 'running', 'paused', 'halted');

CREATE TABLE campaign_devices (
    campaign_id     bigint NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    device_id       text NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    wave            integer NOT NULL,
    -- pending: not yet commanded; sent .. rebooting: the update's steps; then an outcome.
    state           text NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'sent', 'accepted', 'downloading', 'installing',
                                     'rebooting', 'succeeded', 'failed', 'notified',
                                     'acknowledged', 'skipped', 'cancelled')),
    state_at        timestamptz,
    attempt         integer NOT NULL DEFAULT 0,
    -- The command in flight: the device names it in every report.
    command_id      text,
    sent_at         timestamptz,
    from_version    text,
    failure_reason  text,
    finished_at     timestamptz,
    -- Recall notices: the owner's acknowledgement, by the API or the link's token.
    ack_token       text UNIQUE,
    notified_at     timestamptz,
    acknowledged_at timestamptz,
    repeated_at     timestamptz,
    PRIMARY KEY (campaign_id, device_id)
);
CREATE INDEX campaign_devices_state ON campaign_devices (campaign_id, wave, state);
CREATE UNIQUE INDEX campaign_devices_command ON campaign_devices (command_id)
    WHERE command_id IS NOT NULL;

-- A campaign's timeline: created, started, wave opened, halted, resumed, completed, ...
CREATE TABLE campaign_events (
    id          bigserial PRIMARY KEY,
    campaign_id bigint NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    at          timestamptz NOT NULL,
    kind        text NOT NULL,
    detail      jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX campaign_events_campaign ON campaign_events (campaign_id, id);

-- What devices report on {prefix}/{device_id}/ota, as the ingest received it. The runner
-- applies each report once (applied_at) to its device's campaign progress.
CREATE TABLE ota_reports (
    id          bigserial PRIMARY KEY,
    received_at timestamptz NOT NULL,
    device_id   text NOT NULL,
    command_id  text,
    campaign_id bigint,
    state       text NOT NULL,
    progress    integer,
    reason      text,
    applied_at  timestamptz
);
CREATE INDEX ota_reports_unapplied ON ota_reports (id) WHERE applied_at IS NULL;

-- Customer notices of a campaign go through the same outbox as incident alerts.
ALTER TABLE notifications
    ADD COLUMN campaign_id bigint REFERENCES campaigns (id) ON DELETE SET NULL;
CREATE INDEX notifications_campaign ON notifications (campaign_id) WHERE campaign_id IS NOT NULL;
