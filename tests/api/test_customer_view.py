"""What a customer (and a firmware key) sees of incidents and devices: an allow-listed view of
each timeline, in the words staff read, and nothing staff keep for themselves: no staff note,
key label, staff channel, staff delivery's error, another customer's channel, or silence's
reason and creator. Served over HTTP by uvicorn, against PostgreSQL and the real monitor,
escalation and dispatcher.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import httpx
import pytest
from support import add_channel, auth, make_device, make_overdue

import incidents
from api.app import create_app
from harness.apiserver import ApiServer

NOW = datetime.now(UTC).replace(microsecond=0)
MIN = timedelta(minutes=1)
STAFF_LABEL = "test staff"  # the staff key's label (tests/conftest.py keys)
PAGER = "night-shift pager"  # the staff channel's label


@pytest.fixture
def http_api(make_settings, dsn, conn, broker):
    """The API served by uvicorn on a free port, and an HTTP client for it."""
    target, protocol = broker
    settings = make_settings(api_summary_refresh_s=3600)
    server = ApiServer(create_app(settings, dsn, mqtt_target=target, mqtt_protocol=protocol))
    server.start()
    with httpx.Client(base_url=server.url, timeout=20) as client:
        yield client
    server.stop()


@pytest.fixture
def panel(conn, http_sink, tick):
    """Ann's alarm panel gone offline through a real monitor tick; Bob's camera; a staff
    pager that is down."""
    make_device(conn, "panel-1", model_id="alarm-panel-v3", name="Hall", customer_id="ann")
    make_device(conn, "cam-9", model_id="camera-v1", customer_id="bob")
    ann = add_channel(conn, "ann", http_sink.url("ann"))
    bob = add_channel(conn, "bob", "mailto://bob@bob-mail.example")
    conn.execute(
        "INSERT INTO staff_channels (apprise_url, label) VALUES (%s, %s)",
        ("json://127.0.0.1:9/staff-pager", PAGER),
    )
    make_overdue(conn, ["panel-1"], NOW)
    tick(NOW)
    incident = conn.execute("SELECT id FROM incidents WHERE device_id = 'panel-1'").fetchone()[0]
    return SimpleNamespace(incident=incident, ann_channel=ann, bob_channel=bob)


def texts(answer: httpx.Response) -> dict[str, str]:
    """The timeline's sentence per event kind (the last of each kind)."""
    return {e["kind"]: e["text"] for e in answer.json()["timeline"]}


def test_customer_reads_the_timeline_without_anything_staff_only(
    http_api, keys, conn, panel, make_alerts, make_dispatcher
):
    staff, ann = auth(keys.staff), auth(keys.customer("ann"))
    dispatcher = make_dispatcher(alerts_max_attempts=1)
    assert dispatcher.run_once(NOW) == 1  # Ann is told
    assert make_alerts().review(NOW + 15 * MIN).escalated == 1
    assert dispatcher.run_once(NOW + 16 * MIN) == 1  # the pager is down: failed for good
    url = f"/api/v1/incidents/{panel.incident}"
    assert http_api.post(f"{url}/ack", headers=staff).status_code == 200
    private = http_api.post(
        f"{url}/comments", json={"text": "owner sounds upset, VIP account"}, headers=staff
    )
    assert private.status_code == 201
    note = http_api.post(
        f"{url}/comments",
        json={"text": "A technician comes on Tuesday.", "for_customer": True},
        headers=staff,
    )
    assert note.status_code == 201, note.text
    silence = http_api.post(
        "/api/v1/silences",
        json={"scope": "device", "target": "panel-1", "duration_s": 3600, "reason": "rewiring"},
        headers=staff,
    )
    assert silence.status_code == 201

    [error] = conn.execute(
        "SELECT last_error FROM notifications WHERE staff_channel_id IS NOT NULL"
    ).fetchone()
    assert error and len(error) > 10
    staff_only = [
        STAFF_LABEL,
        PAGER,
        "127.0.0.1:9/",  # the staff pager's address (Ann's channel is on another port)
        "owner sounds upset",
        error,
        "rewiring",
        "bob-mail.example",
    ]
    for path in (url, "/api/v1/devices/panel-1", "/api/v1/incidents", "/api/v1/me/incidents"):
        seen = http_api.get(path, headers=ann)
        assert seen.status_code == 200, (path, seen.text)
        for text in staff_only:
            assert text not in seen.text, (path, text)
    as_staff = http_api.get(url, headers=staff)
    for text in staff_only[:5]:
        assert text in as_staff.text, text
    assert "rewiring" in http_api.get("/api/v1/devices/panel-1", headers=staff).text

    as_ann = http_api.get(url, headers=ann)
    timeline = as_ann.json()["timeline"]
    assert [e["kind"] for e in timeline] == ["opened", "notified", "acknowledged", "comment"]
    assert timeline[-1]["detail"] == {"text": "A technician comes on Tuesday."}
    assert timeline[-1]["text"] == "Note: A technician comes on Tuesday."
    assert as_ann.json()["acknowledged_by"] is None
    assert [n["channel_id"] for n in as_ann.json()["notifications"]] == [panel.ann_channel]
    # The same words: staff read each sentence the customer reads, and then what only they see.
    staff_texts, ann_texts = texts(as_staff), texts(as_ann)
    assert {"escalated", "notification_failed"} <= set(staff_texts)
    for kind, text in ann_texts.items():
        assert staff_texts[kind].startswith(text), (kind, staff_texts[kind], text)
    assert staff_texts["acknowledged"] != ann_texts["acknowledged"]
    [window] = http_api.get("/api/v1/devices/panel-1", headers=ann).json()["silences"]
    assert window["reason"] is None and window["created_by"] is None and window["ends_at"]


# (kind, detail, what only staff may read, what the customer reads of it or None: hidden).
# `{ann}`/`{bob}` stand for the owner's own channel and another customer's.
EVENTS = [
    ("opened", {"reason": "silent", "since": "2026-12-01T10:00:00+00:00"}, [], "no heartbeat"),
    (
        "resolved",
        {
            "by": "key 7 (ops laptop)",
            "reason": "heartbeat",
            "note": "swapped the router",
            "back": "2026-12-01T11:00:00+00:00",
            "cancelled": 2,
        },
        ["ops laptop", "swapped the router", "cancelled"],
        "Resolved",
    ),
    ("acknowledged", {"by": "key 7 (ops laptop)"}, ["ops laptop"], "Acknowledged"),
    ("comment", {"by": "key 7 (ops laptop)", "text": "refund?"}, ["ops laptop", "refund?"], None),
    (
        "comment",
        {"by": "key 7 (ops laptop)", "text": "We replace it free.", "for_customer": True},
        ["ops laptop"],
        "We replace it free.",
    ),
    ("attached", {"group_incident_id": 424242}, ["424242"], None),
    ("detached", {"group_incident_id": 434343}, ["434343"], None),
    ("customers_told", {"notices": 5151}, ["5151"], None),
    ("escalated", {"waited": "15 min"}, ["Escalated"], None),
    ("reminded", {"reminder": 2}, [], "Reminder 2"),
    ("suppressed", {"reason": "unstable connection"}, [], "unstable connection"),
    (
        "notified",
        {"channel": PAGER, "attempt": 1, "message_id": "m-staff-1"},
        [PAGER, "m-staff-1"],
        None,
    ),
    (
        "notified",
        {"channel": "mailto://***@ann-mail.example", "attempt": 2, "channel_id": "{ann}"},
        [],
        "ann-mail.example",
    ),
    (
        "notified",
        {"channel": "mailto://***@bob-mail.example", "attempt": 1, "channel_id": "{bob}"},
        ["bob-mail.example"],
        None,
    ),
    (
        "notification_failed",
        {"channel": PAGER, "attempt": 8, "error": "pager gateway 10.1.2.3 refused"},
        [PAGER, "10.1.2.3"],
        None,
    ),
    (
        "notification_failed",
        {"channel": "ann hook", "attempt": 8, "error": "HTTP 404", "channel_id": "{ann}"},
        [],
        "could not be delivered: HTTP 404",
    ),
    ("silenced", {"until": "2026-12-02T00:00:00+00:00", "silence_id": 987654}, ["987654"], "held"),
    ("rate_limited", {"until": "2026-12-02T01:00:00+00:00", "channel_id": "{ann}"}, [], "limit"),
    (
        "rate_limited",
        {"until": "2026-12-02T02:22:00+00:00", "channel_id": "{bob}"},
        ["02:22"],
        None,
    ),
    ("a_kind_from_the_future", {"x": "future-secret"}, ["future-secret"], None),
]


@pytest.mark.parametrize(("kind", "detail", "staff_only", "shown"), EVENTS)
def test_each_event_kind_shows_a_customer_only_its_allowed_fields(
    http_api, keys, conn, panel, kind, detail, staff_only, shown
):
    own = {"{ann}": panel.ann_channel, "{bob}": panel.bob_channel}
    detail = {k: own.get(v, v) if isinstance(v, str) else v for k, v in detail.items()}
    incidents.record_events(conn, [(panel.incident, kind, detail)], NOW + MIN)
    url = f"/api/v1/incidents/{panel.incident}"
    as_staff = http_api.get(url, headers=auth(keys.staff))
    for text in staff_only:
        assert text in as_staff.text, text
    for who in (keys.customer("ann"), keys.firmware):
        answer = http_api.get(url, headers=auth(who))
        assert answer.status_code == 200
        for text in staff_only:
            assert text not in answer.text, (text, answer.text)
        events = [
            e
            for e in answer.json()["timeline"]
            if e["kind"] == kind and datetime.fromisoformat(e["at"]) == NOW + MIN
        ]
        if shown is None or (who == keys.firmware and "channel_id" in detail):
            assert events == [], events  # a firmware key sees nobody's channel
        else:
            [event] = events
            assert shown in event["text"], event
            assert set(event["detail"]) <= set(detail) - {"by", "channel_id", "for_customer"}


def read_stream(client: httpx.Client, key: str, query: str) -> list[dict]:
    messages = []
    with client.stream("GET", f"/api/v1/events?{query}", headers=auth(key)) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: "):
                messages.append(json.loads(line[6:]))
    return messages


def test_the_live_stream_carries_a_customer_only_what_their_timeline_shows(
    http_api, keys, conn, panel
):
    start = conn.execute("SELECT max(id) FROM incident_events").fetchone()[0]
    incidents.comment(conn, panel.incident, "key 7 (ops laptop)", "refund?", NOW + MIN)
    incidents.record_events(conn, [(panel.incident, "escalated", {"waited": "15 min"})], NOW)
    # The marker: a later event the customer may see.
    incidents.record_events(conn, [(panel.incident, "reminded", {"reminder": 1})], NOW)
    [seen] = read_stream(http_api, keys.customer("ann"), f"since={start}&limit=1")
    assert seen["event"] == "reminded" and seen["text"] == "Reminder 1 sent to the owner"
    assert "refund?" not in json.dumps(seen)
    staff = read_stream(http_api, keys.staff, f"since={start}&limit=3")
    assert [m["event"] for m in staff] == ["comment", "escalated", "reminded"]
    assert "refund?" in staff[0]["text"]


def test_a_customers_notifications_are_those_to_their_own_channels(
    http_api, keys, conn, panel, make_alerts, make_dispatcher
):
    dispatcher = make_dispatcher(alerts_max_attempts=1)
    dispatcher.run_once(NOW)
    make_alerts().review(NOW + 15 * MIN)
    dispatcher.run_once(NOW + 16 * MIN)
    mine = http_api.get("/api/v1/me/notifications", headers=auth(keys.customer("ann"))).json()
    assert [(n["channel_id"], n["template"]) for n in mine] == [
        (panel.ann_channel, "device_offline")
    ]
    assert http_api.get("/api/v1/me/notifications", headers=auth(keys.customer("bob"))).json() == []
