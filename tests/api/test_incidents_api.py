"""Incident routes (list, timeline, ack, resolve, comment) and silences that hold alerts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from support import add_channel, auth, count, make_device, make_overdue

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def offline_panel(conn, tick):
    """An alarm panel gone offline through a real monitor tick: incident, timeline, outbox."""
    make_device(conn, "panel-1", model_id="alarm-panel-v3", name="Hall panel", customer_id="ann")
    add_channel(conn, "ann", "json://127.0.0.1:9/ann-token-123")
    make_overdue(conn, ["panel-1"], NOW)
    tick(NOW)
    return conn.execute("SELECT id FROM incidents WHERE device_id = 'panel-1'").fetchone()[0]


def test_incident_list_filters_and_detail_has_timeline_and_notifications(api, keys, offline_panel):
    staff = auth(keys.staff)
    listed = api.get("/api/v1/incidents?status=active&severity=critical", headers=staff).json()
    assert [i["id"] for i in listed["items"]] == [offline_panel]
    assert api.get("/api/v1/incidents?severity=info", headers=staff).json()["items"] == []
    detail = api.get(f"/api/v1/incidents/{offline_panel}", headers=staff).json()
    assert detail["kind"] == "offline" and detail["device_id"] == "panel-1"
    assert [e["kind"] for e in detail["timeline"]] == ["opened"]
    [notice] = detail["notifications"]
    assert notice["template"] == "device_offline" and notice["status"] == "pending"
    assert "ann-token-123" not in notice["channel"]


def test_ack_then_resolve_then_comment_are_on_the_timeline(api, keys, offline_panel, conn):
    staff = auth(keys.staff)
    url = f"/api/v1/incidents/{offline_panel}"
    acked = api.post(f"{url}/ack", headers=staff)
    assert acked.status_code == 200 and acked.json()["status"] == "acknowledged"
    assert (
        acked.json()["acknowledged_by"]
        == "key "
        + str(conn.execute("SELECT id FROM api_keys WHERE label = 'test staff'").fetchone()[0])
        + " (test staff)"
    )
    assert api.post(f"{url}/ack", headers=staff).status_code == 409
    resolved = api.post(f"{url}/resolve", json={"note": "replaced the router"}, headers=staff)
    assert resolved.json()["status"] == "resolved"
    assert api.post(f"{url}/resolve", json={}, headers=staff).status_code == 409
    commented = api.post(f"{url}/comments", json={"text": "customer called"}, headers=staff)
    assert commented.status_code == 201
    timeline = commented.json()["timeline"]
    assert [e["kind"] for e in timeline] == ["opened", "acknowledged", "resolved", "comment"]
    assert timeline[2]["detail"]["note"] == "replaced the router"
    assert timeline[3]["detail"]["text"] == "customer called"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/incidents/999999/ack", None),
        ("/api/v1/incidents/0/ack", None),
        ("/api/v1/incidents/99999999999999999999/resolve", {}),
        ("/api/v1/incidents/1/comments", {"text": ""}),
        ("/api/v1/incidents/1/comments", {"text": "x", "extra": 1}),
        ("/api/v1/incidents/1/comments", {"text": "nul \u0000 char"}),
    ],
)
def test_bad_incident_calls_are_4xx(api, keys, path, body):
    response = api.post(path, json=body, headers=auth(keys.staff))
    assert 400 <= response.status_code < 500, response.text


def test_a_silence_holds_its_devices_alerts_until_it_ends(
    api, keys, conn, tick, make_dispatcher, http_sink
):
    for device in ("cam-1", "cam-2"):
        make_device(conn, device, model_id="camera-v1", customer_id="ann", labels="porch")
    make_device(conn, "cam-3", model_id="camera-v1", customer_id="ann")
    add_channel(conn, "ann", http_sink.url("ann"))
    ends = NOW + timedelta(hours=1)
    response = api.post(
        "/api/v1/silences",
        json={
            "scope": "label",
            "target": "porch",
            "starts_at": (NOW - timedelta(minutes=1)).isoformat(),
            "ends_at": ends.isoformat(),
            "reason": "wiring work",
            "maintenance": True,
        },
        headers=auth(keys.staff),
    )
    assert response.status_code == 201, response.text
    make_overdue(conn, ["cam-1", "cam-2", "cam-3"], NOW)
    tick(NOW)

    dispatcher = make_dispatcher()
    assert dispatcher.run_once(NOW + timedelta(seconds=1)) == 1  # only cam-3's
    held = conn.execute(
        "SELECT device_id, due_at FROM notifications WHERE status = 'pending' ORDER BY device_id"
    ).fetchall()
    assert held == [("cam-1", ends), ("cam-2", ends)]
    silenced = count(conn, "SELECT count(*) FROM incident_events WHERE kind = 'silenced'")
    assert silenced == 2
    assert dispatcher.run_once(ends + timedelta(seconds=1)) == 2
    assert len(http_sink.received()) == 2  # cam-3 alone, then cam-1 and cam-2 as one digest


def test_ending_a_silence_releases_what_it_held(api, keys, conn, tick, make_dispatcher):
    make_device(conn, "cam-1", model_id="camera-v1", customer_id="ann")
    add_channel(conn, "ann", "json://127.0.0.1:9/hook")
    created = api.post(
        "/api/v1/silences",
        json={
            "scope": "device",
            "target": "cam-1",
            "duration_s": 3600,
            "reason": "move",
            "starts_at": (NOW - timedelta(minutes=1)).isoformat(),
        },
        headers=auth(keys.staff),
    ).json()
    make_overdue(conn, ["cam-1"], NOW)
    tick(NOW)
    assert conn.execute("SELECT due_at FROM notifications").fetchone()[0] > NOW
    listed = api.get("/api/v1/silences", headers=auth(keys.staff)).json()
    assert [s["id"] for s in listed] == [created["id"]]
    ended = api.delete(f"/api/v1/silences/{created['id']}", headers=auth(keys.staff))
    assert ended.status_code == 200
    assert conn.execute("SELECT due_at <= now() FROM notifications").fetchone()[0]
    assert api.get("/api/v1/silences", headers=auth(keys.staff)).json() == []
    assert (
        api.delete(f"/api/v1/silences/{created['id']}", headers=auth(keys.staff)).status_code == 404
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"scope": "device", "target": "ghost", "duration_s": 60, "reason": "x"}, "no device"),
        ({"scope": "label", "target": "x", "reason": "x"}, "exactly one"),
        ({"scope": "label", "target": "x", "duration_s": 999999999, "reason": "x"}, "less than"),
        (
            {"scope": "label", "target": "x", "ends_at": "2020-01-01T00:00:00Z", "reason": "x"},
            "end after",
        ),
        (
            {"scope": "label", "target": "x", "ends_at": "2099-01-01T00:00:00", "reason": "x"},
            "offset",
        ),
        ({"scope": "region", "target": "x", "duration_s": 60, "reason": "x"}, "scope"),
    ],
)
def test_bad_silences_are_refused_with_the_reason(api, keys, body, message):
    response = api.post("/api/v1/silences", json=body, headers=auth(keys.staff))
    assert response.status_code == 422, response.text
    assert message in response.text


def test_site_incidents_are_listed_for_staff_by_scope_and_not_shown_to_customers(api, conn, keys):
    make_device(conn, "oak-cam", model_id="camera-v1", customer_id="ann", site_id="oak-12")
    conn.execute(
        "INSERT INTO incidents (scope, kind, severity, opened_at, summary, group_key) "
        "VALUES ('site', 'site_offline', 'warning', now(), 'oak: 3 devices', 'site:oak-12')"
    )
    staff = api.get("/api/v1/incidents?scope=site", headers=auth(keys.staff)).json()
    assert [i["kind"] for i in staff["items"]] == ["site_offline"]
    mine = api.get("/api/v1/incidents", headers=auth(keys.customer("ann"))).json()
    assert mine["items"] == []
