"""Operations: liveness, readiness and the Prometheus figures."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient
from support import auth, make_device, wait_until

from api.app import create_app
from api.metrics import _CAMPAIGNS, _GROUP_INCIDENTS
from api.ops import BrokerCheck, is_fresh
from campaigns.store import CampaignCreate, create_campaign
from core.settings import MqttTarget
from harness.apiserver import ApiServer
from harness.mosquitto import Mosquitto
from harness.ports import free_port
from incidents.lifecycle import open_group_incident, resolve
from incidents.model import GroupProblem
from ingest.writer import WriteResult, record_progress


def test_healthz_and_readyz_with_database_and_broker(api, keys):
    assert api.get("/healthz").json() == {"status": "ok"}
    ready = api.get("/readyz", headers=auth(keys.staff))
    assert ready.status_code == 200 and ready.json() == {
        "ready": True,
        "database": True,
        "broker": True,
    }


def test_readyz_says_which_part_is_unreachable(make_settings, dsn, conn, keys):
    dead_broker = MqttTarget(host="127.0.0.1", port=free_port(), username="fleetwatch")
    app = create_app(make_settings(), dsn, mqtt_target=dead_broker)
    with TestClient(app) as client:
        answer = client.get("/readyz", headers=auth(keys.staff))
    assert answer.status_code == 503
    assert answer.json() == {"ready": False, "database": True, "broker": False}


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in metrics")


def test_metrics_show_ingest_monitor_and_outbox_figures(api, conn, tick, keys):
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
    text = api.get("/metrics", headers=auth(keys.staff)).text
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


OPERATIONS = ("/metrics", "/readyz", "/openapi.json", "/docs")


def test_operations_need_a_staff_key_by_default_and_healthz_does_not(api, keys, conn):
    make_device(conn, "dev-1", customer_id="cust-1")
    assert api.get("/healthz").status_code == 200
    for path in OPERATIONS:
        assert api.get(path).status_code == 401, path
        assert api.get(path, headers=auth("fwk_forged")).status_code == 401, path
        assert api.get(path, headers=auth(keys.customer("cust-1"))).status_code == 403, path
        for key in (keys.admin, keys.staff, keys.firmware):
            assert api.get(path, headers=auth(key)).status_code == 200, path


def test_an_operations_listener_serves_them_without_a_key_and_the_main_port_never(
    make_settings, dsn, conn, keys
):
    ops_port = free_port()
    app = create_app(make_settings(api_ops_port=ops_port, api_summary_refresh_s=3600), dsn)
    server = ApiServer(app, ops_port=ops_port).start()
    try:
        ops = f"http://127.0.0.1:{ops_port}"
        for path in OPERATIONS:
            assert httpx.get(f"{ops}{path}").status_code == 200, path
            on_main = httpx.get(f"{server.url}{path}", headers=auth(keys.admin))
            assert on_main.status_code == 404, path
        assert "fleetwatch_outbox_depth" in httpx.get(f"{ops}/metrics").text
        assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
        # The operations listener is only that: no API, no dashboard.
        assert httpx.get(f"{ops}/api/v1/fleet/summary", headers=auth(keys.admin)).status_code == 404
        assert httpx.get(f"{ops}/dashboard/").status_code == 404
    finally:
        server.stop()


def broker_logins(broker: Mosquitto, client_prefix: str) -> int:
    """How many times a client whose id starts with `client_prefix` logged in (its log)."""
    return broker.log_path.read_text().count(f" as {client_prefix}")


def test_readyz_logs_in_to_the_broker_once_however_often_it_is_asked(
    make_settings, dsn, conn, keys
):
    with Mosquitto(log_types=("notice",)) as broker:
        target = MqttTarget(host="127.0.0.1", port=broker.port)
        app = create_app(make_settings(), dsn, mqtt_target=target, mqtt_protocol="5")
        with TestClient(app) as client:
            headers = auth(keys.staff)
            answers = [client.get("/readyz", headers=headers) for _ in range(10)]
            with ThreadPoolExecutor(8) as pool:  # and many at once
                answers += pool.map(lambda _: client.get("/readyz", headers=headers), range(16))
        assert all(a.status_code == 200 and a.json()["broker"] is True for a in answers)

        # A later login to wait for: once it is in the log, every one before it is too.
        marker = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="marker-1")
        marker.connect("127.0.0.1", broker.port)
        marker.loop_start()
        try:
            wait_until(lambda: broker_logins(broker, "marker-1") == 1)
        finally:
            marker.disconnect()
            marker.loop_stop()
        assert broker_logins(broker, "fleetwatch-ready-") == 1


def test_a_broker_answer_stands_for_its_period_then_is_found_again():
    answers = iter([True, False])
    check = BrokerCheck(
        MqttTarget(host="127.0.0.1", port=1), "5", ttl_s=5.0, check=lambda *_: next(answers)
    )
    assert check.reachable(100.0) is True
    assert check.reachable(104.9) is True and check.checks == 1
    assert check.reachable(105.0) is False and check.checks == 2
    assert check.reachable(106.0) is False and check.checks == 2


@pytest.mark.parametrize(
    ("checked_at", "now", "fresh"),
    [(None, 0.0, False), (10.0, 10.0, True), (10.0, 14.99, True), (10.0, 15.0, False)],
)
def test_when_an_answer_is_fresh(checked_at, now, fresh):
    assert is_fresh(checked_at, now, ttl_s=5.0) is fresh


def test_metrics_show_an_open_blind_spot_and_unfinished_campaigns_by_status(api, conn, keys):
    text = api.get("/metrics", headers=auth(keys.staff)).text
    # Nothing open: the series are there, at 0, for the alerts to read.
    blind = 'fleetwatch_open_group_incidents{kind="blind_spot",scope="system"}'
    assert metric(text, blind) == 0
    assert metric(text, 'fleetwatch_campaigns{status="halted"}') == 0

    now = datetime.now(UTC)
    open_group_incident(
        conn, GroupProblem("system", "blind_spot", "ingest", "critical", "blind"), now
    )
    resolved = open_group_incident(
        conn, GroupProblem("fleet", "fleet_outage", "model:x", "critical", "outage"), now
    )
    resolve(conn, [resolved.id], now)
    make_device(conn, "dev-1")
    spec = CampaignCreate.model_validate(
        {
            "name": "n",
            "kind": "recall_notice",
            "target": {"device_ids": ["dev-1"]},
            "safe_to_use": True,
            "instructions": "none",
        }
    )
    for status in ("halted", "running", "completed"):
        campaign_id, _ = create_campaign(conn, spec, created_by="t", now=now)
        conn.execute("UPDATE campaigns SET status = %s WHERE id = %s", (status, campaign_id))

    text = api.get("/metrics", headers=auth(keys.staff)).text
    assert metric(text, blind) == 1
    assert metric(text, 'fleetwatch_open_group_incidents{kind="fleet_outage",scope="fleet"}') == 0
    assert metric(text, 'fleetwatch_campaigns{status="halted"}') == 1
    assert metric(text, 'fleetwatch_campaigns{status="running"}') == 1
    assert 'status="completed"' not in text.split("fleetwatch_campaigns")[-1]


@pytest.mark.parametrize(
    ("query", "index"),
    [(_GROUP_INCIDENTS, "incidents_open_group_kind"), (_CAMPAIGNS, "campaigns_active")],
)
def test_new_scrape_queries_can_read_a_partial_index_alone(conn, query, index):
    # The scrape must stay cheap at a million devices: each of these reads only the few
    # rows its partial index holds (seq scans off, or an empty table would use one anyway).
    with conn.transaction():
        conn.execute("SET LOCAL enable_seqscan = off")
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + query).fetchall())
    assert index in plan, plan
