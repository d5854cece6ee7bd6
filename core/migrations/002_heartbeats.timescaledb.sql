-- Heartbeats on TimescaleDB: a hypertable with compression, retention and a continuous aggregate.

CREATE EXTENSION IF NOT EXISTS timescaledb;

CREATE TABLE heartbeats (
    device_id       text NOT NULL,
    ts              timestamptz NOT NULL,
    seq             bigint NOT NULL,
    received_at     timestamptz NOT NULL,
    fw              text,
    uptime_s        bigint,
    metrics         jsonb NOT NULL DEFAULT '{}',
    ts_from_receipt boolean NOT NULL DEFAULT false,
    device_ts       timestamptz
);
SELECT create_hypertable('heartbeats', 'ts', chunk_time_interval => INTERVAL '1 day');
CREATE UNIQUE INDEX heartbeats_device_ts_seq ON heartbeats (device_id, ts, seq);

ALTER TABLE heartbeats SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'device_id',
    timescaledb.compress_orderby = 'ts DESC, seq'
);
-- Older than the longest broker backlog the ingest accepts, so inserts rarely hit compressed chunks.
SELECT add_compression_policy('heartbeats', INTERVAL '8 days');
SELECT add_retention_policy('heartbeats', INTERVAL '30 days');

-- Chunks are created on demand here; kept so callers need not know the flavour.
CREATE FUNCTION fleetwatch_ensure_heartbeat_partitions(first_day date, last_day date)
RETURNS integer LANGUAGE sql AS $$ SELECT 0 $$;

CREATE FUNCTION fleetwatch_apply_heartbeat_retention(keep interval)
RETURNS integer LANGUAGE sql AS $$
    SELECT count(*)::integer FROM drop_chunks('heartbeats', older_than => now() - keep)
$$;

-- Real-time: recent buckets not yet materialised are computed from raw rows on read, so
-- this answers the same as the plain-PostgreSQL view.
CREATE MATERIALIZED VIEW heartbeats_5m
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT device_id,
       time_bucket(INTERVAL '5 minutes', ts) AS bucket,
       count(*) AS heartbeats,
       min(uptime_s) AS min_uptime_s,
       avg((metrics ->> 'battery_pct')::float8) AS avg_battery_pct,
       min((metrics ->> 'battery_pct')::float8) AS min_battery_pct,
       avg((metrics ->> 'temp_c')::float8) AS avg_temp_c,
       max((metrics ->> 'temp_c')::float8) AS max_temp_c,
       avg((metrics ->> 'rssi_dbm')::float8) AS avg_rssi_dbm
FROM heartbeats
GROUP BY 1, 2
WITH NO DATA;

SELECT add_continuous_aggregate_policy('heartbeats_5m',
    start_offset => INTERVAL '1 day',
    end_offset => INTERVAL '5 minutes',
    schedule_interval => INTERVAL '5 minutes');
SELECT add_retention_policy('heartbeats_5m', INTERVAL '30 days');
