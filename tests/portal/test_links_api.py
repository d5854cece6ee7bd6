"""POST /api/v1/links/open and /act: what a message's link opens, and the answers it takes."""

from __future__ import annotations

import pytest
from support import auth, count, make_device

from api.links import NOT_VALID


def open_page(api, token):
    return api.post("/api/v1/links/open", json={"token": token})


def act(api, token, action, device_id="thermo-1"):
    return api.post(
        "/api/v1/links/act", json={"token": token, "action": action, "device_id": device_id}
    )


def test_a_link_opens_its_owner_device_incident_and_actions(api, home, keys):
    page = open_page(api, home["token"])
    assert page.status_code == 200, page.text
    body = page.json()
    assert body["customer"] == {"name": "Ann Example", "first_name": "Ann", "timezone": "UTC"}
    [subject] = body["subjects"]
    device = subject["device"]
    assert (device["id"], device["name"], device["status"]) == ("thermo-1", "Kitchen", "offline")
    assert device["kind"] == "thermostat" and device["status_text"].startswith("Offline since ")
    assert device["what_to_do"]
    assert subject["incident"]["id"] == home["incident"] and subject["recall"] is None
    assert [a["action"] for a in subject["actions"]] == [
        "ack",
        "snooze_24h",
        "snooze_7d",
        "stop_watching",
    ]
    # The owner reads the same sentences as staff; staff read more after them.
    owner_lines = [line["text"] for line in subject["incident"]["timeline"]]
    staff = api.get(f"/api/v1/incidents/{home['incident']}", headers=auth(keys.admin)).json()
    staff_lines = [line["text"] for line in staff["timeline"]]
    assert owner_lines and owner_lines[0].startswith("Problem found: no heartbeat in time")
    assert all(any(s.startswith(o) for s in staff_lines) for o in owner_lines)
    assert any(o.startswith("Message sent to") for o in owner_lines)


@pytest.mark.parametrize("token", ["x" * 43, "not a token", "", "A" * 256])
def test_unknown_malformed_and_expired_tokens_get_the_same_404(api, conn, home, token):
    conn.execute("UPDATE message_links SET expires_at = created_at + interval '1 s'")
    for t in (token, home["token"]):
        for response in (open_page(api, t), act(api, t, "ack")):
            assert response.status_code == 404, response.text
            assert response.json() == {"detail": NOT_VALID}


def test_fields_are_bounded_and_actions_named(api, home):
    assert open_page(api, "A" * 257).status_code == 422
    assert act(api, home["token"], "delete_everything").status_code == 422
    assert act(api, home["token"], "ack", device_id="d" * 65).status_code == 422


def test_a_get_never_acts(api, home, conn):
    assert api.get("/api/v1/links/open").status_code == 405
    assert api.get(f"/api/v1/links/act?token={home['token']}&action=ack").status_code == 405
    assert count(conn, "SELECT count(*) FROM incidents WHERE status = 'acknowledged'") == 0


def test_ack_from_a_link_lands_on_the_timeline_and_is_not_offered_again(api, home, keys):
    done = act(api, home["token"], "ack")
    assert done.status_code == 200, done.text
    body = done.json()
    assert body["done"].startswith("Thank you")
    subject = body["subjects"][0]
    assert "ack" not in [a["action"] for a in subject["actions"]]
    assert subject["incident"]["timeline"][-1]["text"] == "The owner knows: no more reminders"
    staff = api.get(f"/api/v1/incidents/{home['incident']}", headers=auth(keys.staff)).json()
    assert staff["status"] == "acknowledged"
    assert staff["timeline"][-1]["text"] == (
        "The owner knows: no more reminders (by owner Ann Example, from a message link)"
    )
    again = act(api, home["token"], "ack")
    assert again.status_code == 409
    assert again.json()["detail"] == "you have already said you know about this problem"


def test_a_link_acts_only_on_its_own_devices(api, home, conn):
    make_device(conn, "thermo-2", customer_id="ann")  # Ann's, but not in this message
    make_device(conn, "b-1", customer_id="cust-b")
    for device in ("thermo-2", "b-1", "nope"):
        response = act(api, home["token"], "stop_watching", device_id=device)
        assert response.status_code == 404, response.text
    assert count(conn, "SELECT count(*) FROM device_state WHERE status = 'paused'") == 0


def test_a_device_sold_since_the_message_is_no_longer_shown(api, home, conn):
    make_device(conn, "other", customer_id="cust-b")
    conn.execute("UPDATE devices SET customer_id = 'cust-b' WHERE id = 'thermo-1'")
    assert open_page(api, home["token"]).json()["subjects"] == []
    assert act(api, home["token"], "snooze_24h").status_code == 404
