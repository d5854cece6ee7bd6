-- The TimescaleDB jobs Fleetwatch ran by hand because their scheduler had not succeeded
-- for too long (ingest/upkeep.py). `CALL run_job` leaves no trace in job_stats, so our own
-- runs are kept here: /metrics and /readyz count them, and the next upkeep does not run a
-- job again before its interval. On plain PostgreSQL it stays empty.
CREATE TABLE timescale_job_runs (
    job_id         integer PRIMARY KEY,
    last_ok_at     timestamptz,
    last_failed_at timestamptz,
    last_error     text,
    runs           bigint NOT NULL DEFAULT 0,
    failures       bigint NOT NULL DEFAULT 0
);
