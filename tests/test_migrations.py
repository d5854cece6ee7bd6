"""Migrations: idempotent, and the plain-PostgreSQL partitioning and retention work."""

from datetime import UTC, datetime, timedelta

import psycopg
from support import count

from core import db
from ingest.upkeep import maintain_heartbeats


def test_migrate_twice_applies_nothing_the_second_time(dsn):
    assert db.migrate(dsn) == []
    with psycopg.connect(dsn) as conn:
        versions = [v for (v,) in conn.execute("SELECT version FROM schema_migrations")]
        flavour = conn.execute("SELECT DISTINCT flavour FROM schema_migrations").fetchall()
    assert versions == sorted(versions) and versions[:3] == [1, 2, 3]
    assert flavour == [("postgres",)]


def test_model_thresholds_are_dropped_once_they_seeded_the_health_rules(conn):
    columns = {
        name
        for (name,) in conn.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = 'device_models'"
        )
    }
    assert "thresholds" not in columns and "health_rules" in columns
    # The alarm panel's battery limits of 003 (20 %, ok at 25 %) live on in its rule.
    low_battery = conn.execute(
        "SELECT rule FROM device_models, jsonb_array_elements(health_rules) AS rule "
        "WHERE id = 'alarm-panel-v3' AND rule ->> 'name' = 'low_battery'"
    ).fetchone()[0]
    assert (low_battery["fire_below"], low_battery["clear_above"]) == (20, 25)


def test_each_flavour_has_one_migration_per_number():
    for flavour in ("postgres", "timescaledb"):
        numbers = [m.version for m in db.load_migrations(flavour)]
        assert numbers == sorted(set(numbers))
        assert any("heartbeats" in m.name for m in db.load_migrations(flavour))


def test_partitions_ahead_and_retention_drops_old_days(conn):
    now = datetime.now(UTC)
    old_day = now.date() - timedelta(days=40)
    conn.execute("SELECT fleetwatch_ensure_heartbeat_partitions(%s, %s)", (old_day, old_day))
    conn.execute(
        "INSERT INTO heartbeats (device_id, ts, seq, received_at) VALUES ('d', %s, 1, %s)",
        (now - timedelta(days=40), now),
    )
    maintain_heartbeats(conn, retention_days=30, now=now)

    parts = {
        r[0]
        for r in conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'heartbeats'::regclass"
        )
    }
    assert f"heartbeats_{old_day:%Y%m%d}" not in parts
    for offset in (-8, 0, 2):
        assert f"heartbeats_{now.date() + timedelta(days=offset):%Y%m%d}" in parts
    assert count(conn, "SELECT count(*) FROM heartbeats") == 0


def test_five_minute_summaries_on_plain_postgres(conn):
    t0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    conn.execute("SELECT fleetwatch_ensure_heartbeat_partitions(%s, %s)", (t0.date(), t0.date()))
    for i, battery in enumerate([90.0, 80.0, 70.0]):
        conn.execute(
            "INSERT INTO heartbeats (device_id, ts, seq, received_at, metrics) "
            "VALUES ('d', %s, %s, %s, %s)",
            (t0 + timedelta(minutes=2 * i), i, t0, f'{{"battery_pct": {battery}}}'),
        )
    rows = conn.execute(
        "SELECT bucket, heartbeats, avg_battery_pct, min_battery_pct FROM heartbeats_5m "
        "WHERE device_id = 'd' ORDER BY bucket"
    ).fetchall()
    assert rows == [(t0, 3, 80.0, 70.0)]
