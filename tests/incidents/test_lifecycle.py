"""The incident lifecycle: one behaviour for every caller, whoever resolves."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from support import add_channel, auth, count, make_device, make_overdue

import incidents
from incidents import DeviceProblem, GroupProblem

NOW = datetime.now(UTC).replace(microsecond=0)
MIN = timedelta(minutes=1)


def statuses(conn) -> Counter:
    return Counter(
        dict(conn.execute("SELECT status, count(*) FROM notifications GROUP BY 1").fetchall())
    )


def timeline(conn, incident_id: int) -> list[tuple[str, dict]]:
    return conn.execute(
        "SELECT kind, detail FROM incident_events WHERE incident_id = %s ORDER BY id",
        (incident_id,),
    ).fetchall()


def test_staff_resolve_during_quiet_hours_means_the_owner_never_hears_went_offline(
    api, keys, conn, tick, make_dispatcher, http_sink
):
    make_device(conn, "th-1", name="Hall", customer_id="ann")
    conn.execute("UPDATE customers SET quiet_hours_start = '00:00', quiet_hours_end = '23:59:59'")
    add_channel(conn, "ann", http_sink.url("ann"))
    conn.execute("INSERT INTO staff_channels (apprise_url) VALUES (%s)", (http_sink.url("staff"),))
    make_overdue(conn, ["th-1"], NOW)
    tick(NOW)
    [(incident_id, due)] = conn.execute(
        "SELECT incident_id, due_at FROM notifications WHERE customer_id = 'ann'"
    ).fetchall()
    assert due > NOW  # waiting for the quiet hours to end

    resolved = api.post(
        f"/api/v1/incidents/{incident_id}/resolve",
        json={"note": "router replaced on site"},
        headers=auth(keys.staff),
    )
    assert resolved.status_code == 200, resolved.text
    # After the quiet hours the dispatcher finds nothing for her; the timeline says why.
    make_dispatcher().run_once(due + MIN)
    assert http_sink.by_path().get("/ann") is None
    assert statuses(conn) == {"cancelled": 1}
    kind, detail = timeline(conn, incident_id)[-1]
    assert kind == "resolved"
    assert detail["cancelled"] == 1 and detail["note"] == "router replaced on site"
    assert detail["by"].startswith("key ")


def test_fleet_outage_resolved_by_hand_leaves_nothing_held(
    api, keys, conn, tick, make_dispatcher, http_sink
):
    for i in range(25):
        make_device(conn, f"cam-{i:02d}", model_id="camera-v1", customer_id=f"o{i:02d}")
        add_channel(conn, f"o{i:02d}", http_sink.url(f"o{i:02d}"))
    make_overdue(conn, [f"cam-{i:02d}" for i in range(25)], NOW)
    tick(NOW)
    [fleet_id] = [r[0] for r in conn.execute("SELECT id FROM incidents WHERE scope = 'fleet'")]
    assert statuses(conn) == {"held": 25}

    response = api.post(f"/api/v1/incidents/{fleet_id}/resolve", json={}, headers=auth(keys.staff))
    assert response.status_code == 200, response.text
    # The devices are still down: their owners' own alerts go out now, none stays held.
    assert statuses(conn) == {"pending": 25}
    # Due from the resolve on: the API's clock.
    assert make_dispatcher().run_once(datetime.now(UTC) + MIN) == 25
    assert len(http_sink.by_path()) == 25
    assert timeline(conn, fleet_id)[-1][1]["released"] == 25


def test_a_member_resolved_before_its_group_has_its_held_alert_cancelled(conn, tick):
    for i in range(25):
        make_device(conn, f"cam-{i:02d}", model_id="camera-v1", customer_id=f"o{i:02d}")
        add_channel(conn, f"o{i:02d}", f"json://127.0.0.1:9/o{i:02d}")
    make_overdue(conn, [f"cam-{i:02d}" for i in range(25)], NOW)
    tick(NOW)
    member = conn.execute(
        "SELECT id FROM incidents WHERE device_id = 'cam-00' AND kind = 'offline'"
    ).fetchone()[0]
    [done] = incidents.resolve(conn, [member], NOW + MIN, by="maria")
    assert (done.cancelled, done.released) == (1, 0)
    assert statuses(conn) == {"held": 24, "cancelled": 1}
    # Resolving again changes nothing and records nothing.
    assert incidents.resolve(conn, [member], NOW + 2 * MIN) == []
    assert [k for k, _ in timeline(conn, member)] == ["opened", "attached", "resolved"]


def test_detach_lets_a_held_alert_go_and_says_so(conn, tick):
    for i in range(25):
        make_device(conn, f"cam-{i:02d}", model_id="camera-v1", customer_id=f"o{i:02d}")
        add_channel(conn, f"o{i:02d}", f"json://127.0.0.1:9/o{i:02d}")
    make_overdue(conn, [f"cam-{i:02d}" for i in range(25)], NOW)
    tick(NOW)
    member, group = conn.execute(
        "SELECT id, fleet_incident_id FROM incidents WHERE device_id = 'cam-03'"
    ).fetchone()
    assert incidents.detach(conn, [member], NOW + MIN) == 1
    assert incidents.detach(conn, [member], NOW + MIN) == 0
    assert statuses(conn) == {"held": 24, "pending": 1}
    kind, detail = timeline(conn, member)[-1]
    assert (kind, detail) == ("detached", {"group_incident_id": group})


def test_one_open_incident_per_device_and_kind_and_per_group_and_kind(conn):
    make_device(conn, "ap-1", model_id="alarm-panel-v3", name="Hall", customer_id="c1")
    problem = DeviceProblem(
        "ap-1", "offline", "warning", "{device} went offline", {"x": 1}, "critical"
    )
    [opened] = incidents.open_device_incidents(conn, [problem], NOW)
    # The model is critical, and the summary names the device as people know it.
    assert opened.severity == "critical"
    summary = conn.execute("SELECT summary FROM incidents WHERE id = %s", (opened.id,)).fetchone()
    assert summary == ("Alarm panel v3 Hall (ap-1) went offline",)
    assert incidents.open_device_incidents(conn, [problem], NOW + MIN) == []
    # A device that is gone gets no incident.
    ghost = DeviceProblem("ghost", "offline", "warning", "{device} went offline")
    assert incidents.open_device_incidents(conn, [ghost], NOW) == []

    group = GroupProblem("system", "blind_spot", "ingest", "critical", "blind")
    first = incidents.open_group_incident(conn, group, NOW)
    assert first is not None and incidents.open_group_incident(conn, group, NOW) is None
    assert incidents.find_open_group(conn, "ingest", "blind_spot") == [first.id]
    assert count(conn, "SELECT count(*) FROM incident_events WHERE kind = 'opened'") == 2


@pytest.mark.parametrize("caller", ["monitor", "staff"])
def test_resolve_is_the_same_whoever_asks(conn, tick, api, keys, caller):
    make_device(conn, "th-1", customer_id="ann")
    conn.execute("UPDATE customers SET quiet_hours_start = '00:00', quiet_hours_end = '23:59:59'")
    add_channel(conn, "ann", "json://127.0.0.1:9/ann")
    make_overdue(conn, ["th-1"], NOW)
    tick(NOW)
    incident_id = conn.execute("SELECT id FROM incidents").fetchone()[0]
    if caller == "monitor":
        conn.execute("UPDATE device_state SET last_received_at = %s", (NOW + MIN,))
        tick(NOW + 2 * MIN)
    else:
        api.post(f"/api/v1/incidents/{incident_id}/resolve", json={}, headers=auth(keys.staff))
    assert statuses(conn) == {"cancelled": 1}
    assert timeline(conn, incident_id)[-1][1]["cancelled"] == 1
