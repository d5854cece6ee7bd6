"""The live stream: incident timeline events as server-sent events, scoped per key."""

from __future__ import annotations

import json

import pytest
from support import auth, make_device


@pytest.fixture
def events(conn):
    """Three timeline events: opened and resolved on A's camera, opened on B's panel."""
    make_device(conn, "a-1", customer_id="cust-a", model_id="camera-v1")
    make_device(conn, "b-1", customer_id="cust-b", model_id="alarm-panel-v3")
    ids = []
    for device, kinds in (("a-1", ("opened", "resolved")), ("b-1", ("opened",))):
        incident = conn.execute(
            "INSERT INTO incidents (scope, device_id, kind, severity, opened_at, summary) "
            "VALUES ('device', %s, 'offline', 'warning', now(), %s) RETURNING id",
            (device, f"{device} went offline"),
        ).fetchone()[0]
        for kind in kinds:
            ids.append(
                conn.execute(
                    "INSERT INTO incident_events (incident_id, at, kind) VALUES (%s, now(), %s) "
                    "RETURNING id",
                    (incident, kind),
                ).fetchone()[0]
            )
    return ids


def read_stream(api, key: str, query: str, headers: dict | None = None) -> list[tuple[int, dict]]:
    with api.stream(
        "GET", f"/api/v1/events?{query}", headers={**auth(key), **(headers or {})}
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        messages, current = [], {}
        for line in response.iter_lines():
            if line.startswith("id: "):
                current["id"] = int(line[4:].split("-")[0])  # the incident part of I-C
            elif line.startswith("event: "):
                assert line == "event: incident"
            elif line.startswith("data: "):
                messages.append((current["id"], json.loads(line[6:])))
    return messages


def test_staff_stream_carries_every_event_in_order(api, keys, events):
    messages = read_stream(api, keys.staff, "since=0&limit=3")
    assert [m[0] for m in messages] == events
    assert [(m[1]["event"], m[1]["incident"]["device_id"]) for m in messages] == [
        ("opened", "a-1"),
        ("resolved", "a-1"),
        ("opened", "b-1"),
    ]
    assert messages[0][1]["incident"]["summary"] == "a-1 went offline"


def test_the_stream_opens_with_its_position_so_a_client_can_resume_from_it(api, keys, events):
    with api.stream("GET", "/api/v1/events?since=1", headers=auth(keys.staff)) as response:
        first = next(response.iter_lines())
    assert first.startswith("id: 1-")


def test_a_resumed_stream_starts_after_the_last_event_seen(api, keys, events):
    messages = read_stream(api, keys.staff, "limit=1", {"Last-Event-ID": f"{events[1]}-0"})
    assert [m[0] for m in messages] == [events[2]]


def test_customer_stream_carries_only_their_devices(api, keys, events):
    messages = read_stream(api, keys.customer("cust-b"), "since=0&limit=1")
    assert [(m[0], m[1]["incident"]["device_id"]) for m in messages] == [(events[2], "b-1")]


def test_stream_needs_a_key_and_a_numeric_position(api, keys):
    assert api.get("/api/v1/events").status_code == 401
    bad = api.get("/api/v1/events", headers={**auth(keys.staff), "Last-Event-ID": "x"})
    assert bad.status_code == 422
    odd = api.get("/api/v1/events", headers={**auth(keys.staff), "Last-Event-ID": "1-2-3"})
    assert odd.status_code == 400 and "position" in odd.json()["detail"]


def test_staff_stream_carries_campaign_progress(api, keys, conn):
    make_device(conn, "cam-1", model_id="camera-v1", customer_id="cust-a")
    campaign = conn.execute(
        "INSERT INTO campaigns (name, kind, target, starts_at, created_by, waves) VALUES "
        "('Recall', 'recall_notice', '{}', now(), 'fw', '[100]') RETURNING id"
    ).fetchone()[0]
    conn.execute(
        "INSERT INTO campaign_events (campaign_id, at, kind, detail) "
        "VALUES (%s, now(), 'halted', '{\"reason\": \"3 of 10 failed\"}')",
        (campaign,),
    )
    with api.stream(
        "GET",
        "/api/v1/events?since=0&limit=1",
        headers={**auth(keys.staff), "Last-Event-ID": "0-0"},
    ) as response:
        lines = list(response.iter_lines())
    assert "event: campaign" in lines
    data = json.loads(next(line for line in lines if line.startswith("data: "))[6:])
    assert data["event"] == "halted" and data["campaign"]["id"] == campaign
    assert data["detail"] == {"reason": "3 of 10 failed"}
