"""Our migrations and heartbeat read queries on TimescaleDB 2.23 (PGlite, see pglite_server).

Each test opens its own connection and closes it before the next: the server takes one at a
time. Each test writes its own devices, so the tests do not depend on their order.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from pglite_server import pglite_connection
from psycopg.types.json import Jsonb

from api.metrics import _timescaledb_metrics
from api.ops import timescaledb_jobs
from core import db
from ingest.upkeep import read_jobs, run_overdue_jobs, upkeep

pytestmark = pytest.mark.node

INSERT_HEARTBEAT = """
INSERT INTO heartbeats (device_id, ts, seq, received_at, metrics)
VALUES (%s, %s, %s, %s, %s)
"""

# The raw history read: one device, a time range, oldest first.
HISTORY = """
SELECT ts, seq FROM heartbeats WHERE device_id = %s AND ts >= %s AND ts < %s ORDER BY ts
"""

FIVE_MINUTE_SUMMARIES = """
SELECT bucket, heartbeats, avg_battery_pct, min_battery_pct, max_temp_c
FROM heartbeats_5m WHERE device_id = %s ORDER BY bucket
"""

TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def insert_heartbeat(
    conn: psycopg.Connection, device_id: str, ts: datetime, seq: int, **metrics: float
) -> None:
    conn.execute(INSERT_HEARTBEAT, (device_id, ts, seq, ts, Jsonb(metrics)))


def scalar(conn: psycopg.Connection, sql: str, *params):
    return conn.execute(sql, params).fetchone()[0]


@pytest.fixture(scope="module")
def first_migration(pglite_dsn) -> list[str]:
    """What `migrate` applied to the empty database."""
    return db.migrate(pglite_dsn)


@pytest.fixture(scope="module")
def timescale_dsn(pglite_dsn, first_migration) -> str:
    """The DSN of the migrated database."""
    return pglite_dsn


# -- the migrations -----------------------------------------------------------------------


def test_first_migrate_applies_every_migration_with_the_timescaledb_flavour(
    first_migration, timescale_dsn
):
    expected = [f"{m.version:03d}_{m.name}" for m in db.load_migrations("timescaledb")]
    assert first_migration == expected
    with pglite_connection(timescale_dsn) as conn:
        flavours = conn.execute("SELECT DISTINCT flavour FROM schema_migrations").fetchall()
    assert flavours == [("timescaledb",)]


def test_heartbeats_is_a_compressed_hypertable_chunked_by_day(timescale_dsn):
    with pglite_connection(timescale_dsn) as conn:
        hypertables = conn.execute(
            "SELECT hypertable_name, compression_enabled "
            "FROM timescaledb_information.hypertables WHERE hypertable_schema = 'public'"
        ).fetchall()
        dimensions = conn.execute(
            "SELECT column_name, time_interval FROM timescaledb_information.dimensions "
            "WHERE hypertable_name = 'heartbeats'"
        ).fetchall()
        segment_by = conn.execute(
            "SELECT attname FROM timescaledb_information.compression_settings "
            "WHERE hypertable_name = 'heartbeats' AND segmentby_column_index IS NOT NULL"
        ).fetchall()
    assert hypertables == [("heartbeats", True)]
    assert dimensions == [("ts", timedelta(days=1))]
    assert segment_by == [("device_id",)]


# (job, table it runs on, config key, value): the policies 002_heartbeats.timescaledb.sql adds.
POLICIES = [
    ("policy_compression", "heartbeats", "compress_after", timedelta(days=8)),
    ("policy_retention", "heartbeats", "drop_after", timedelta(days=30)),
    ("policy_refresh_continuous_aggregate", "heartbeats_5m", "start_offset", timedelta(days=1)),
    ("policy_refresh_continuous_aggregate", "heartbeats_5m", "end_offset", timedelta(minutes=5)),
    ("policy_retention", "heartbeats_5m", "drop_after", timedelta(days=30)),
]


def test_compression_retention_and_refresh_policies_are_scheduled(timescale_dsn):
    with pglite_connection(timescale_dsn) as conn:
        found = [
            (proc, *row)
            for proc, key in dict.fromkeys((proc, key) for proc, _, key, _ in POLICIES)
            for row in conn.execute(
                "SELECT hypertable_name, (config ->> %s)::interval "
                "FROM timescaledb_information.jobs WHERE proc_name = %s AND scheduled "
                "ORDER BY hypertable_name",
                (key, proc),
            )
        ]
    assert sorted(found) == sorted((proc, table, value) for proc, table, _, value in POLICIES)


def test_heartbeats_5m_is_a_continuous_aggregate_of_heartbeats(timescale_dsn):
    with pglite_connection(timescale_dsn) as conn:
        aggregates = conn.execute(
            "SELECT view_name, hypertable_name FROM timescaledb_information.continuous_aggregates"
        ).fetchall()
    assert aggregates == [("heartbeats_5m", "heartbeats")]


def test_second_migrate_applies_nothing(timescale_dsn):
    with pglite_connection(timescale_dsn) as conn:
        before = conn.execute("SELECT version, applied_at FROM schema_migrations").fetchall()
    assert db.migrate(timescale_dsn) == []
    with pglite_connection(timescale_dsn) as conn:
        after = conn.execute("SELECT version, applied_at FROM schema_migrations").fetchall()
    assert after == before


# -- the read queries and maintenance functions -------------------------------------------


def test_five_minute_summaries_count_and_average_each_device(timescale_dsn):
    t0 = TODAY - timedelta(days=2) + timedelta(hours=10)
    with pglite_connection(timescale_dsn) as conn:
        for seq, (offset, battery, temp) in enumerate(
            [
                (timedelta(0), 90.0, 20.0),
                (timedelta(minutes=2), 80.0, 25.0),
                (timedelta(minutes=4, seconds=59), 70.0, 22.0),
                (timedelta(minutes=5), 60.0, 30.0),
                (timedelta(minutes=20), 55.0, 21.0),
            ]
        ):
            insert_heartbeat(conn, "agg-1", t0 + offset, seq, battery_pct=battery, temp_c=temp)
        insert_heartbeat(conn, "agg-2", t0 + timedelta(minutes=1), 0, battery_pct=5.0, temp_c=99.0)
        conn.execute("CALL refresh_continuous_aggregate('heartbeats_5m', NULL, NULL)")
        rows = conn.execute(FIVE_MINUTE_SUMMARIES, ("agg-1",)).fetchall()
    assert rows == [
        (t0, 3, 80.0, 70.0, 25.0),
        (t0 + timedelta(minutes=5), 1, 60.0, 60.0, 30.0),
        (t0 + timedelta(minutes=20), 1, 55.0, 55.0, 21.0),
    ]


def test_history_returns_one_devices_range_oldest_first_across_chunks(timescale_dsn):
    midnight = TODAY - timedelta(days=3)
    in_range = [
        (midnight - timedelta(minutes=60), 0),  # the day before: another chunk
        (midnight - timedelta(minutes=30), 1),
        (midnight + timedelta(minutes=30), 2),
        (midnight + timedelta(minutes=60), 3),
    ]
    with pglite_connection(timescale_dsn) as conn:
        for ts, seq in [in_range[i] for i in (2, 0, 3, 1)]:
            insert_heartbeat(conn, "hist-1", ts, seq)
        insert_heartbeat(conn, "hist-1", midnight + timedelta(hours=3), 4)  # after the range
        insert_heartbeat(conn, "hist-2", midnight, 0)  # another device
        rows = conn.execute(
            HISTORY, ("hist-1", midnight - timedelta(hours=2), midnight + timedelta(hours=2))
        ).fetchall()
    assert rows == in_range


def test_retention_drops_chunks_older_than_keep(timescale_dsn):
    now = datetime.now(UTC)
    with pglite_connection(timescale_dsn) as conn:
        insert_heartbeat(conn, "old-1", now - timedelta(days=60), 1)
        insert_heartbeat(conn, "old-1", now - timedelta(days=1), 2)
        old_chunks = (
            "SELECT count(*) FROM show_chunks('heartbeats', older_than => interval '30 days')"
        )
        assert scalar(conn, old_chunks) == 1
        dropped = scalar(conn, "SELECT fleetwatch_apply_heartbeat_retention(interval '30 days')")
        assert dropped == 1
        assert scalar(conn, old_chunks) == 0
        seqs = conn.execute("SELECT seq FROM heartbeats WHERE device_id = 'old-1'").fetchall()
    assert seqs == [(2,)]


def test_partition_function_is_a_no_op_kept_for_callers(timescale_dsn):
    with pglite_connection(timescale_dsn) as conn:
        created = scalar(
            conn,
            "SELECT fleetwatch_ensure_heartbeat_partitions(%s, %s)",
            TODAY.date(),
            TODAY.date() + timedelta(days=2),
        )
    assert created == 0


def test_redelivered_heartbeat_is_skipped_by_the_unique_index(timescale_dsn):
    ts = TODAY - timedelta(days=1)
    insert = INSERT_HEARTBEAT + " ON CONFLICT DO NOTHING"
    with pglite_connection(timescale_dsn) as conn:
        stored = [
            conn.execute(insert, ("dup-1", ts, seq, ts, Jsonb({}))).rowcount
            for seq in (7, 7, 8)  # a redelivery, then a new heartbeat at the same instant
        ]
        rows = conn.execute(HISTORY, ("dup-1", ts, ts + timedelta(seconds=1))).fetchall()
    assert stored == [1, 0, 1]
    assert sorted(rows) == [(ts, 7), (ts, 8)]


def test_compressed_chunk_is_readable_and_still_skips_redeliveries(timescale_dsn):
    """Past the 8-day compression policy: history still reads, late redeliveries still dedupe."""
    t0 = TODAY - timedelta(days=10) + timedelta(hours=6)
    insert = INSERT_HEARTBEAT + " ON CONFLICT DO NOTHING"
    with pglite_connection(timescale_dsn) as conn:
        for seq in range(3):
            insert_heartbeat(conn, "cold-1", t0 + timedelta(minutes=seq), seq)
        conn.execute(
            "SELECT compress_chunk(format('%%I.%%I', chunk_schema, chunk_name)::regclass) "
            "FROM timescaledb_information.chunks "
            "WHERE hypertable_name = 'heartbeats' AND range_start <= %s AND %s < range_end",
            (t0, t0),
        )
        compressed = scalar(
            conn,
            "SELECT bool_and(is_compressed) FROM timescaledb_information.chunks "
            "WHERE hypertable_name = 'heartbeats' AND range_start <= %s AND %s < range_end",
            t0,
            t0,
        )
        duplicate = conn.execute(insert, ("cold-1", t0, 0, t0, Jsonb({}))).rowcount
        rows = conn.execute(HISTORY, ("cold-1", t0, t0 + timedelta(hours=1))).fetchall()
    assert compressed is True
    assert duplicate == 0
    assert rows == [(t0 + timedelta(minutes=seq), seq) for seq in range(3)]


def test_policy_jobs_compress_drop_and_refresh_when_run(timescale_dsn):
    """PGlite has no background workers, so the jobs are run here as the scheduler would."""
    now = datetime.now(UTC)
    cold, recent = now - timedelta(days=12), now - timedelta(minutes=30)
    with pglite_connection(timescale_dsn) as conn:
        for seq, ts in enumerate([now - timedelta(days=60), cold, recent]):
            insert_heartbeat(conn, "policy-1", ts, seq)
        jobs = {
            (proc, table): job
            for proc, table, job in conn.execute(
                "SELECT proc_name, hypertable_name, job_id FROM timescaledb_information.jobs "
                "WHERE hypertable_name IN ('heartbeats', 'heartbeats_5m')"
            )
        }
        for key in (
            ("policy_compression", "heartbeats"),
            ("policy_retention", "heartbeats"),
            ("policy_refresh_continuous_aggregate", "heartbeats_5m"),
        ):
            conn.execute("CALL run_job(%s)", (jobs[key],))
        cold_compressed = scalar(
            conn,
            "SELECT is_compressed FROM timescaledb_information.chunks "
            "WHERE hypertable_name = 'heartbeats' AND range_start <= %s AND %s < range_end",
            cold,
            cold,
        )
        seqs = conn.execute(
            "SELECT seq FROM heartbeats WHERE device_id = 'policy-1' ORDER BY seq"
        ).fetchall()
        recent_summaries = conn.execute(
            "SELECT heartbeats FROM heartbeats_5m WHERE device_id = 'policy-1' AND bucket > %s",
            (now - timedelta(days=1),),
        ).fetchall()
    assert cold_compressed is True
    assert seqs == [(1,), (2,)]
    assert recent_summaries == [(1,)]


# -- the API's history reads ----------------------------------------------------------------


def test_api_history_from_the_continuous_aggregate_equals_the_raw_reading(timescale_dsn):
    """Hourly points re-bucketed from heartbeats_5m weigh each 5-minute average by its count."""
    from api.history import read_history

    start = TODAY - timedelta(days=1) + timedelta(hours=6)
    with pglite_connection(timescale_dsn) as conn:
        for i in range(130):  # two hours and ten minutes, a heartbeat a minute, uneven buckets
            insert_heartbeat(
                conn,
                "api-1",
                start + timedelta(minutes=i, seconds=i % 7),
                i,
                battery_pct=100.0 - i / 2,
                temp_c=20.0 + i % 5,
            )
        conn.execute("CALL refresh_continuous_aggregate('heartbeats_5m', NULL, NULL)")
        window = (start, start + timedelta(hours=3))
        from_aggregate = read_history(conn, "api-1", *window, "1h", db_flavour="timescaledb")
        from_raw = read_history(conn, "api-1", *window, "1h", db_flavour="postgres")
        five = read_history(conn, "api-1", *window, "5m", db_flavour="timescaledb")
    assert [p["heartbeats"] for p in from_aggregate] == [60, 60, 10]
    assert len(from_aggregate) == len(from_raw)
    for agg, raw in zip(from_aggregate, from_raw, strict=True):
        assert agg["t"] == raw["t"] and agg["heartbeats"] == raw["heartbeats"]
        for field in ("avg_battery_pct", "min_battery_pct", "avg_temp_c", "max_temp_c"):
            assert agg[field] == pytest.approx(raw[field]), field
    assert sum(p["heartbeats"] for p in five) == 130 and len(five) == 26


# -- upkeep when TimescaleDB's scheduler does not run the jobs ----------------------------------


def test_upkeep_runs_the_jobs_no_scheduler_ran_and_reports_them(timescale_dsn):
    """PGlite has no background workers: the jobs never succeed by themselves. The upkeep
    sees that, runs them by hand, and /metrics' figures follow."""
    now = datetime.now(UTC)
    # A day no other test of this module writes, so its chunk is this test's alone.
    cold, recent = now - timedelta(days=20), now - timedelta(minutes=40)
    with pglite_connection(timescale_dsn) as conn:
        conn.autocommit = True
        for seq, ts in enumerate([cold, recent]):
            insert_heartbeat(conn, "upkeep-1", ts, seq, battery_pct=50.0)
        materialized = ".".join(
            conn.execute(
                "SELECT materialization_hypertable_schema, materialization_hypertable_name "
                "FROM timescaledb_information.continuous_aggregates "
                "WHERE view_name = 'heartbeats_5m'"
            ).fetchone()
        )
        bucket_rows = f"SELECT count(*) FROM {materialized} WHERE device_id = 'upkeep-1'"
        cold_chunk = (
            "SELECT is_compressed FROM timescaledb_information.chunks "
            "WHERE hypertable_name = 'heartbeats' AND range_start <= %s AND %s < range_end"
        )
        assert scalar(conn, cold_chunk, cold, cold) is False
        assert scalar(conn, bucket_rows) == 0

        db_now = scalar(conn, "SELECT now()")
        before = timescaledb_jobs(conn)
        assert before["ok"] is False and len(before["overdue"]) == 4
        families = {f.name: f for f in _timescaledb_metrics(read_jobs(conn), db_now)}
        assert {s.value for s in families["fleetwatch_timescaledb_job_overdue"].samples} == {1.0}

        upkeep(conn, retention_days=30)

        assert scalar(conn, cold_chunk, cold, cold) is True  # compressed
        assert scalar(conn, bucket_rows) == 1  # the recent bucket, materialized
        after = timescaledb_jobs(conn)
        assert after == {"ok": True, "overdue": [], "failures": 0}
        families = {f.name: f for f in _timescaledb_metrics(read_jobs(conn), db_now)}
        assert {s.value for s in families["fleetwatch_timescaledb_job_overdue"].samples} == {0.0}
        ages = [
            s.value for s in families["fleetwatch_timescaledb_job_last_success_age_seconds"].samples
        ]
        assert len(ages) == 4 and all(a < 600 for a in ages)
        # Done within its interval: the next upkeep leaves them be.
        assert run_overdue_jobs(conn, scalar(conn, "SELECT now()")) == []
        assert scalar(conn, "SELECT sum(runs) FROM timescale_job_runs") == 4


def test_release_rollup_reads_the_hypertable_into_device_days(timescale_dsn):
    """releases/rollup.py on TimescaleDB: the same tables, fed from the hypertable."""
    from releases.rollup import SETTLE, roll_up

    midnight = TODAY - timedelta(days=2)
    start = midnight - timedelta(hours=1)
    with pglite_connection(timescale_dsn) as conn:
        conn.execute("INSERT INTO devices (id, model_id) VALUES ('rel-1', 'camera-v1')")
        for n in range(24):  # every 5 minutes over midnight; a reboot at 23:30
            ts = start + timedelta(minutes=5 * n)
            uptime = 600 + n * 300 if n < 6 else (n - 6) * 300 + 10
            conn.execute(
                "INSERT INTO heartbeats (device_id, ts, seq, received_at, fw, uptime_s, metrics) "
                "VALUES ('rel-1', %s, %s, %s, '3.1.0', %s, %s)",
                (ts, n, ts, uptime, Jsonb({"battery_pct": 90 - n})),
            )
        conn.execute(
            "INSERT INTO release_rollup_state (rolled_to, updated_at) VALUES (%s, %s)",
            (start, start),
        )
        now = start + timedelta(hours=2) + SETTLE
        while roll_up(conn, now).more:
            pass
        rows = conn.execute(
            "SELECT day, heartbeats, reboots, battery_drop FROM release_device_days "
            "WHERE device_id = 'rel-1' ORDER BY day"
        ).fetchall()
        daily = conn.execute(
            "SELECT sum(device_days), sum(reboots) FROM release_daily WHERE model_id = 'camera-v1'"
        ).fetchone()
    assert rows == [
        ((midnight - timedelta(days=1)).date(), 12, 1, 11.0),
        (midnight.date(), 12, 0, 12.0),
    ]
    assert daily == (2, 1)
