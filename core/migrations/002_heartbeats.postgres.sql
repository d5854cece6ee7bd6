-- Heartbeats on plain PostgreSQL: native daily range partitions, dropped by retention.

CREATE TABLE heartbeats (
    device_id       text NOT NULL,
    ts              timestamptz NOT NULL,
    seq             bigint NOT NULL,
    received_at     timestamptz NOT NULL,
    fw              text,
    uptime_s        bigint,
    metrics         jsonb NOT NULL DEFAULT '{}',
    -- ts is the receive time: the device sent none, or its clock was wildly off.
    ts_from_receipt boolean NOT NULL DEFAULT false,
    -- What a skewed device clock claimed, kept when ts was replaced.
    device_ts       timestamptz
) PARTITION BY RANGE (ts);

-- Serves both history reads (device, time range) and redelivery de-duplication.
CREATE UNIQUE INDEX heartbeats_device_ts_seq ON heartbeats (device_id, ts, seq);

CREATE FUNCTION fleetwatch_ensure_heartbeat_partitions(first_day date, last_day date)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    day date := first_day;
    created integer := 0;
    part text;
BEGIN
    WHILE day <= last_day LOOP
        part := 'heartbeats_' || to_char(day, 'YYYYMMDD');
        IF to_regclass(part) IS NULL THEN
            EXECUTE format(
                'CREATE TABLE %I PARTITION OF heartbeats FOR VALUES FROM (%L) TO (%L)',
                part, day::timestamp AT TIME ZONE 'UTC', (day + 1)::timestamp AT TIME ZONE 'UTC');
            created := created + 1;
        END IF;
        day := day + 1;
    END LOOP;
    RETURN created;
END $$;

CREATE FUNCTION fleetwatch_apply_heartbeat_retention(keep interval)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    part record;
    dropped integer := 0;
BEGIN
    FOR part IN
        SELECT c.relname
        FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'heartbeats'::regclass
          AND c.relname ~ '^heartbeats_[0-9]{8}$'
          AND (to_date(substr(c.relname, 12), 'YYYYMMDD') + 1)::timestamp AT TIME ZONE 'UTC'
              < now() - keep
    LOOP
        EXECUTE format('DROP TABLE %I', part.relname);
        dropped := dropped + 1;
    END LOOP;
    RETURN dropped;
END $$;

SELECT fleetwatch_ensure_heartbeat_partitions(
    (now() AT TIME ZONE 'UTC')::date - 8, (now() AT TIME ZONE 'UTC')::date + 2);

-- Per-device 5-minute summaries: computed on read here, a continuous aggregate on TimescaleDB.
CREATE VIEW heartbeats_5m AS
SELECT device_id,
       date_bin('5 minutes', ts, timestamptz '2000-01-01 00:00:00+00') AS bucket,
       count(*) AS heartbeats,
       min(uptime_s) AS min_uptime_s,
       avg((metrics ->> 'battery_pct')::float8) AS avg_battery_pct,
       min((metrics ->> 'battery_pct')::float8) AS min_battery_pct,
       avg((metrics ->> 'temp_c')::float8) AS avg_temp_c,
       max((metrics ->> 'temp_c')::float8) AS max_temp_c,
       avg((metrics ->> 'rssi_dbm')::float8) AS avg_rssi_dbm
FROM heartbeats
GROUP BY 1, 2;
