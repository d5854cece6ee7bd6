"""Migrations: idempotent, and the plain-PostgreSQL partitioning and retention work."""

import json
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


def test_016_keeps_sent_recall_links_working_and_names_old_message_lines_channels(
    database_server, make_settings, broker
):
    """A database as 015 left it: a recall link sent with a clear token, message lines
    without their channel. After 016 the link still works, nothing holds the token in
    clear, and the customer's line names its channel (the staff line does not)."""
    import uuid

    from fastapi.testclient import TestClient
    from psycopg import conninfo

    from api.app import create_app
    from campaigns.store import CampaignCreate, create_campaign

    name = f"fleetwatch_old_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(database_server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = conninfo.make_conninfo(database_server, dbname=name)
    legacy = "legacy-clear-token-0123456789abcdef"
    now = datetime.now(UTC)
    try:
        before = [m for m in db.load_migrations("postgres") if m.version < 16]
        db.migrate(url, flavour="postgres", migrations=before)
        with psycopg.connect(url, autocommit=True) as old:
            # As 015 held a device (today's import writes later columns).
            old.execute("INSERT INTO customers (id, name) VALUES ('old', 'old')")
            old.execute(
                "INSERT INTO devices (id, model_id, customer_id) "
                "VALUES ('ev-old', 'ev-charger-v1', 'old')"
            )
            old.execute("INSERT INTO device_state (device_id) VALUES ('ev-old')")
            recall = {
                "name": "Cable recall",
                "kind": "recall_notice",
                "target": {"device_ids": ["ev-old"]},
                "safe_to_use": True,
                "instructions": "Swap the cable.",
            }
            campaign = create_campaign(
                old, CampaignCreate.model_validate(recall), created_by="t", now=now
            )[0]
            old.execute(
                "UPDATE campaign_devices SET state = 'notified', notified_at = now(), "
                "ack_token = %s WHERE campaign_id = %s",
                (legacy, campaign),
            )
            # As a channel was saved then: no verified_at (018) or address (022) yet.
            channel = old.execute(
                "INSERT INTO contact_channels (customer_id, kind, apprise_url) "
                "VALUES ('old', 'webhook', 'json://127.0.0.1:9/old') RETURNING id"
            ).fetchone()[0]
            staff = old.execute(
                "INSERT INTO staff_channels (apprise_url) VALUES ('json://127.0.0.1:9/s') "
                "RETURNING id"
            ).fetchone()[0]
            incident = old.execute(
                "INSERT INTO incidents (scope, device_id, kind, severity, opened_at, summary) "
                "VALUES ('device', 'ev-old', 'offline', 'warning', now(), 'x') RETURNING id"
            ).fetchone()[0]
            for column, target in (("channel_id", channel), ("staff_channel_id", staff)):
                message = uuid.uuid4()
                notification = old.execute(
                    f"INSERT INTO notifications (incident_id, device_id, {column}, template, "
                    "severity, context, created_at, due_at) VALUES "
                    "(%s, 'ev-old', %s, 'device_offline', 'warning', '{}', now(), now()) "
                    "RETURNING id",
                    (incident, target),
                ).fetchone()[0]
                old.execute(
                    "INSERT INTO delivery_attempts (notification_id, started_at, message_id) "
                    "VALUES (%s, now(), %s)",
                    (notification, message),
                )
                old.execute(
                    "INSERT INTO incident_events (incident_id, at, kind, detail) "
                    "VALUES (%s, now(), 'notified', %s)",
                    (incident, json.dumps({"channel": column, "message_id": str(message)})),
                )
        assert "016_recall_links_and_message_lines" in db.migrate(url)

        with psycopg.connect(url, autocommit=True) as new:
            clear = new.execute(
                "SELECT count(*) FROM campaign_devices cd WHERE cd::text LIKE %s", (f"%{legacy}%",)
            ).fetchone()[0]
            assert clear == 0
            lines = dict(
                new.execute(
                    "SELECT detail ->> 'channel', detail -> 'channel_id' FROM incident_events"
                ).fetchall()
            )
            assert lines == {"channel_id": channel, "staff_channel_id": None}
            target, protocol = broker
            app = create_app(make_settings(), url, mqtt_target=target, mqtt_protocol=protocol)
            with TestClient(app) as client:
                assert "I have read this notice" in client.get(f"/recall/{legacy}").text
                assert "Thank you" in client.post(f"/recall/{legacy}").text
            assert new.execute("SELECT state FROM campaign_devices").fetchone()[0] == (
                "acknowledged"
            )
    finally:
        with psycopg.connect(database_server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
