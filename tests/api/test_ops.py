"""Operations: liveness, readiness and the Prometheus figures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from support import make_device

from api.app import create_app
from core.settings import MqttTarget
from harness.ports import free_port
from ingest.writer import WriteResult, record_progress


def test_healthz_and_readyz_with_database_and_broker(api):
    assert api.get("/healthz").json() == {"status": "ok"}
    ready = api.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {
        "ready": True,
        "database": True,
        "broker": True,
    }


def test_readyz_says_which_part_is_unreachable(make_settings, dsn, conn):
    dead_broker = MqttTarget(host="127.0.0.1", port=free_port(), username="fleetwatch")
    app = create_app(make_settings(), dsn, mqtt_target=dead_broker)
    with TestClient(app) as client:
        answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json() == {"ready": False, "database": True, "broker": False}


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in metrics")


def test_metrics_show_ingest_monitor_and_outbox_figures(api, conn, tick):
    make_device(conn, "dev-1")
    now = datetime.now(UTC)
    record_progress(
        conn, "ingest-a", now, messages=10, result=WriteResult(stored=8, rejected={"not_json": 2})
    )
    label_b = record_progress(
        conn,
        "ingest-b",
        now,
        messages=5,
        result=WriteResult(stored=5),
        caught_up_at=now - timedelta(minutes=2),
    )
    channel = conn.execute(
        "INSERT INTO contact_channels (customer_id, kind, apprise_url) "
        "VALUES ('cust-1', 'email', 'mailto://x@example.com') RETURNING id"
    ).fetchone()[0]
    for status in ("pending", "pending", "held", "failed"):
        conn.execute(
            "INSERT INTO notifications (device_id, customer_id, channel_id, template, severity, "
            "context, created_at, due_at, status) VALUES ('dev-1', 'cust-1', %s, 't', 'info', "
            "'{}', now(), now(), %s)",
            (channel, status),
        )
    tick(now)
    text = api.get("/metrics").text
    assert metric(text, "fleetwatch_ingest_messages_total") == 15
    assert metric(text, "fleetwatch_ingest_stored_total") == 13
    assert metric(text, "fleetwatch_ingest_rejected_total") == 2
    assert metric(text, "fleetwatch_ingest_lag_seconds") < 60
    # ingest-b is two minutes behind what the broker has for it; ingest-a reports no watermark.
    behind = [ln for ln in text.splitlines() if ln.startswith("fleetwatch_ingest_watermark_lag")]
    assert len(behind) == 1 and f'{{ingest="{label_b}"}}' in behind[0]
    # An ingest's client id names its broker session: never on /metrics.
    assert "ingest-a" not in text and "ingest-b" not in text
    assert 120 <= float(behind[0].split()[1]) < 180
    assert 'fleetwatch_outbox_depth{status="pending"} 2.0' in text
    assert 'fleetwatch_outbox_depth{status="held"} 1.0' in text
    assert metric(text, "fleetwatch_notifications_failed_total") == 1
    assert 0 <= metric(text, "fleetwatch_monitor_tick_seconds") < 10
    assert 'fleetwatch_devices{status="provisioned"}' in text
