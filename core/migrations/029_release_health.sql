-- Release health (releases/): rollups of heartbeats per device and day, and per model,
-- firmware and day, kept by the monitor's `releases` job; the release-health route and the
-- weekly digest read only release_daily, never raw heartbeats.
--
-- Both flavours keep these as tables: reboots, offline gaps and battery discharge need the
-- previous heartbeat of the same device (a window function), which a TimescaleDB continuous
-- aggregate cannot compute.

-- How far the rollup has read heartbeats (by ts): one row.
CREATE TABLE release_rollup_state (
    id         boolean PRIMARY KEY DEFAULT true CHECK (id),
    rolled_to  timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);

-- Each device's last heartbeat read, so the next step knows what came before its first row.
CREATE TABLE release_cursor (
    device_id     text PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
    last_ts       timestamptz NOT NULL,
    last_uptime_s bigint,
    last_fw       text,
    last_battery  float8
);

-- One row per device, UTC day and firmware it ran that day (a device updated that day has two).
CREATE TABLE release_device_days (
    device_id       text NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    day             date NOT NULL,
    firmware        text NOT NULL,
    model_id        text NOT NULL,
    heartbeats      integer NOT NULL,
    -- Heartbeats the device owed since its previous one (one per interval of silence).
    expected        integer NOT NULL,
    -- Uptime went back on the same firmware: an unexpected reboot.
    reboots         integer NOT NULL,
    -- Uptime went back with a new firmware: the reboot of an update, not counted above.
    update_reboots  integer NOT NULL,
    -- Silence past the device's offline threshold, counted on the day the device came back.
    offline_s       float8 NOT NULL,
    -- Sum of battery_pct decreases between consecutive heartbeats (charging is not negative).
    battery_drop    float8 NOT NULL,
    battery_samples integer NOT NULL,
    first_ts        timestamptz NOT NULL,
    last_ts         timestamptz NOT NULL,
    PRIMARY KEY (device_id, day, firmware)
);
CREATE INDEX release_device_days_day ON release_device_days (day);

-- One row per model, firmware and day: what the route and the digest read.
CREATE TABLE release_daily (
    model_id       text NOT NULL,
    firmware       text NOT NULL,
    day            date NOT NULL,
    device_days    integer NOT NULL,
    heartbeats     bigint NOT NULL,
    expected       bigint NOT NULL,
    reboots        bigint NOT NULL,
    update_reboots bigint NOT NULL,
    offline_s      float8 NOT NULL,
    battery_drop   float8 NOT NULL,
    -- Device-days with at least two battery readings (the battery drop's denominator).
    battery_days   integer NOT NULL,
    -- Device incidents opened that day, by kind, charged to the firmware the device ran.
    incidents      jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (model_id, day, firmware)
);

-- The weekly digests sent to staff: one row per week, so a digest goes once.
CREATE TABLE release_digests (
    week_start date PRIMARY KEY,
    sent_at    timestamptz NOT NULL
);
