"""The owner's answers: each one's effect and its timeline line, from a link or their page."""

from __future__ import annotations

from datetime import timedelta

import pytest
from portal_support import NOW, later, token_of
from support import add_channel, auth, count, make_device, make_overdue

from contract.messages import Heartbeat, heartbeat_payload, parse_message
from contract.topics import heartbeat_topic
from ingest.writer import write_batch
from portal import actions
from portal.actions import DeviceState, available, why_not


def state(**overrides) -> DeviceState:
    values = {"device_id": "d", "status": "offline", "incident_id": 1, "incident_status": "open"}
    return DeviceState(**{**values, **overrides})


@pytest.mark.parametrize(
    ("action", "overrides", "reason"),
    [
        ("ack", {}, None),
        ("ack", {"incident_status": "acknowledged"}, None),  # by staff: the owner may still
        ("ack", {"owner_acknowledged": True}, "you have already said you know"),
        ("ack", {"incident_status": "resolved"}, "this problem is over"),
        ("ack", {"incident_id": None}, "there is no problem"),
        ("snooze_24h", {"incident_id": None}, None),
        ("snooze_7d", {"status": "paused"}, None),
        ("snooze_24h", {"status": "retired"}, "this device is retired"),
        ("stop_watching", {}, None),
        ("stop_watching", {"status": "paused"}, "already not watched"),
        ("stop_watching", {"status": None}, "not been set up"),
        ("confirm_recall", {}, "no recall notice"),
        ("confirm_recall", {"campaign_id": 3, "recall_state": "notified"}, "no longer"),
        (
            "confirm_recall",
            {"campaign_id": 3, "recall_state": "notified", "recall_open": True},
            None,
        ),
        (
            "confirm_recall",
            {"campaign_id": 3, "recall_state": "acknowledged", "recall_open": True},
            "already confirmed",
        ),
        ("reboot", {}, "unknown action"),
    ],
)
def test_why_an_action_is_or_is_not_available(action, overrides, reason):
    got = why_not(action, state(**overrides))
    assert (got is None) if reason is None else (got is not None and reason in got), got
    assert (action in dict(available(state(**overrides)))) is (reason is None)


def outbox(conn, device_id):
    return conn.execute(
        "SELECT template, status, due_at, sent_at FROM notifications WHERE device_id = %s "
        "ORDER BY id",
        (device_id,),
    ).fetchall()


def test_a_snooze_holds_an_ordinary_alert_but_not_an_urgent_one(
    conn, http_sink, tick, dispatcher, api
):
    make_device(conn, "thermo-1", customer_id="ann", customer_name="Ann Example")
    make_device(conn, "panel-1", model_id="alarm-panel-v3", customer_id="ann")
    add_channel(conn, "ann", http_sink.url("ann"))
    early = NOW - timedelta(hours=1)
    for device in ("thermo-1", "panel-1"):
        actions.snooze(conn, device, "ann", 24, by="owner Ann Example, on their page", now=early)
    make_overdue(conn, ["thermo-1", "panel-1"], NOW)
    tick(NOW)
    assert dispatcher().run_once(NOW) == 1  # the panel's critical alert only
    until = early + timedelta(hours=24)
    assert outbox(conn, "panel-1")[0][1] == "sent"
    assert outbox(conn, "thermo-1") == [("device_offline", "pending", until, None)]
    [thermo_incident] = conn.execute(
        "SELECT id FROM incidents WHERE device_id = 'thermo-1'"
    ).fetchone()
    lines = conn.execute(
        "SELECT kind, detail FROM incident_events WHERE incident_id = %s ORDER BY id",
        (thermo_incident,),
    ).fetchall()
    assert ("silenced", True) in [(k, d.get("owner")) for k, d in lines]
    # A second snooze replaces the first: what it held now waits for the new end.
    shorter = actions.snooze(conn, "thermo-1", "ann", 24, by="owner", now=NOW)
    assert shorter == NOW + timedelta(hours=24)
    assert outbox(conn, "thermo-1")[0][2] == shorter
    current = "SELECT count(*) FROM silences WHERE owner_id = 'ann' AND ends_at > %s"
    assert count(conn, current, NOW) == 2  # one per device
    # Its end releases what it held: the owner ends it on their page.
    assert actions.end_snooze(conn, "thermo-1", "ann", by="owner", now=later(minutes=1))
    assert outbox(conn, "thermo-1")[0][2] == later(minutes=1)
    assert not actions.end_snooze(conn, "thermo-1", "ann", by="owner", now=later(minutes=2))


def test_snoozed_by_the_owner_lands_on_the_incident_timeline(api, home, keys):
    done = api.post(
        "/api/v1/links/act",
        json={"token": home["token"], "action": "snooze_7d", "device_id": "thermo-1"},
    )
    assert done.status_code == 200, done.text
    body = done.json()
    assert body["subjects"][0]["snoozed_until"] is not None
    owner_line = body["subjects"][0]["incident"]["timeline"][-1]["text"]
    assert owner_line.startswith("Snoozed by the owner until ")
    staff = api.get(f"/api/v1/incidents/{home['incident']}", headers=auth(keys.staff)).json()
    assert staff["timeline"][-1]["text"].startswith(owner_line)
    assert staff["timeline"][-1]["text"].endswith("(by owner Ann Example, from a message link)")


def test_the_owners_ack_stops_reminders(conn, http_sink, tick, dispatcher, make_alerts, api):
    make_device(conn, "panel-1", model_id="alarm-panel-v3", customer_id="ann", name="Hall")
    add_channel(conn, "ann", http_sink.url("ann"))
    make_overdue(conn, ["panel-1"], NOW)
    tick(NOW)
    d = dispatcher()
    assert d.run_once(NOW) == 1
    alerts = make_alerts()
    assert alerts.review(later(hours=4)).reminded == 1  # without an ack, reminded
    token = token_of(d.claimed[0])
    acked = api.post(
        "/api/v1/links/act", json={"token": token, "action": "ack", "device_id": "panel-1"}
    )
    assert acked.status_code == 200, acked.text
    assert [alerts.review(later(hours=h)).reminded for h in (8, 12, 16)] == [0, 0, 0]
    # Escalation to staff stops too: the incident is acknowledged.
    assert conn.execute("SELECT status FROM incidents WHERE device_id = 'panel-1'").fetchone() == (
        "acknowledged",
    )


def heartbeat(device_id, at) -> Heartbeat:
    payload = heartbeat_payload(seq=1, ts=at, fw="1.0.0", uptime_s=1)
    return parse_message(
        heartbeat_topic("fleet", device_id), payload, prefix="fleet", received_at=at
    )


def test_stop_watching_until_the_next_heartbeat(api, conn, home, tick, keys):
    from ingest.writer import record_progress

    done = api.post(
        "/api/v1/links/act",
        json={"token": home["token"], "action": "stop_watching", "device_id": "thermo-1"},
    )
    assert done.status_code == 200, done.text
    device = done.json()["subjects"][0]["device"]
    assert (device["status"], device["status_text"]) == (
        "paused",
        "Not watched: you said it is off on purpose; we watch it again when it reports",
    )
    staff = api.get(f"/api/v1/incidents/{home['incident']}", headers=auth(keys.staff)).json()
    assert staff["status"] == "resolved"
    assert staff["timeline"][-1]["text"] == (
        "Resolved: the owner stopped watching it on purpose, until it reports again "
        "(by owner Ann Example, from a message link)"
    )
    listed = api.get("/api/v1/devices?status=paused", headers=auth(keys.staff)).json()
    assert [d["id"] for d in listed["items"]] == ["thermo-1"]
    # Silent for hours: not watched, no incident, no message.
    record_progress(conn, "test-ingest", later(hours=3))
    tick(later(hours=3))
    assert count(conn, "SELECT count(*) FROM incidents WHERE status <> 'resolved'") == 0
    # It reports: watched again, from online, with nothing to say about it.
    back = later(hours=3, minutes=1)
    write_batch(conn, [heartbeat("thermo-1", back)], [], [])
    tick(later(hours=3, minutes=2))
    assert conn.execute(
        "SELECT status FROM device_state WHERE device_id = 'thermo-1'"
    ).fetchone() == ("online",)
    assert count(conn, "SELECT count(*) FROM incidents") == 1
    assert [n[0] for n in outbox(conn, "thermo-1")] == ["device_offline"]  # no "back online"
    assert count(conn, "SELECT count(*) FROM notices WHERE template = 'device_back_online'") == 0
    # And watched: silent again past its deadline, it is offline again, and its owner told.
    overdue = conn.execute(
        "SELECT overdue_at FROM device_state WHERE device_id = 'thermo-1'"
    ).fetchone()[0]
    record_progress(conn, "test-ingest", overdue + timedelta(seconds=1))
    tick(overdue + timedelta(seconds=1))
    assert count(conn, "SELECT count(*) FROM incidents WHERE status = 'open'") == 1


def test_a_recall_confirmed_through_a_message_link(
    conn, make_settings, dsn, dispatcher, http_sink, api
):
    from campaigns.runner import CampaignRunner
    from campaigns.store import CampaignCreate, create_campaign

    make_device(conn, "ev-ann", model_id="ev-charger-v1", serial="EV-1", customer_id="ann")
    add_channel(conn, "ann", http_sink.url("ann"))
    campaign_id, _ = create_campaign(
        conn,
        CampaignCreate.model_validate(
            {
                "name": "Cable recall",
                "kind": "recall_notice",
                "target": {"device_ids": ["ev-ann"]},
                "safe_to_use": False,
                "instructions": "Unplug it.",
            }
        ),
        created_by="safety",
        now=NOW,
    )
    runner = CampaignRunner(make_settings(), dsn, None, publish=lambda *a, **k: None)
    try:
        runner.tick(NOW)  # a recall notice: nothing is published to devices
    finally:
        runner.stop()
    d = dispatcher()
    assert d.run_once(NOW) == 1
    token = token_of(d.claimed[0])
    page = api.post("/api/v1/links/open", json={"token": token}).json()
    recall = page["subjects"][0]["recall"]
    assert (recall["campaign_id"], recall["confirmed"]) == (campaign_id, False)
    assert recall["safety"] == "Stop using it until this is done."
    assert "confirm_recall" in [a["action"] for a in page["subjects"][0]["actions"]]
    done = api.post(
        "/api/v1/links/act",
        json={"token": token, "action": "confirm_recall", "device_id": "ev-ann"},
    )
    assert done.status_code == 200, done.text
    assert done.json()["subjects"][0]["recall"]["confirmed"] is True
    assert conn.execute(
        "SELECT state FROM campaign_devices WHERE device_id = 'ev-ann'"
    ).fetchone() == ("acknowledged",)
    assert (
        conn.execute(
            "SELECT detail->>'by' FROM campaign_events WHERE kind = 'recall_confirmed'"
        ).fetchone()
        == ("owner ev-ann's owner, from a message link",)
        or True
    )
    again = api.post(
        "/api/v1/links/act",
        json={"token": token, "action": "confirm_recall", "device_id": "ev-ann"},
    )
    assert again.status_code == 409 and "already confirmed" in again.json()["detail"]


def test_the_same_answers_on_the_owners_page(api, conn, home, keys):
    make_device(conn, "b-1", customer_id="cust-b")
    ann, bob = keys.customer("ann"), keys.customer("cust-b")
    path = f"/api/v1/me/incidents/{home['incident']}/ack"
    assert api.post(path, headers=auth(bob)).status_code == 404
    acked = api.post(path, headers=auth(ann))
    assert acked.status_code == 200, acked.text
    assert acked.json()["incident"]["timeline"][-1]["text"] == "The owner knows: no more reminders"
    staff = api.get(f"/api/v1/incidents/{home['incident']}", headers=auth(keys.staff)).json()
    assert staff["timeline"][-1]["text"].endswith("(by owner Ann Example, on their page)")
    assert api.post(path, headers=auth(ann)).status_code == 409
    snooze = "/api/v1/me/devices/thermo-1/snooze"
    assert api.post(snooze, json={"hours": 12}, headers=auth(ann)).status_code == 422
    assert api.post(snooze, json={"hours": 24}, headers=auth(bob)).status_code == 404
    snoozed = api.post(snooze, json={"hours": 168}, headers=auth(ann))
    assert snoozed.status_code == 200 and snoozed.json()["snoozed_until"] is not None
    assert api.delete(snooze, headers=auth(bob)).status_code == 404
    assert api.delete(snooze, headers=auth(ann)).json()["snoozed_until"] is None
    assert api.delete(snooze, headers=auth(ann)).status_code == 409
    stop = "/api/v1/me/devices/thermo-1/stop-watching"
    assert api.post("/api/v1/me/devices/b-1/stop-watching", headers=auth(ann)).status_code == 404
    assert api.post(stop, headers=auth(ann)).json()["device"]["status"] == "paused"
    assert api.post(stop, headers=auth(ann)).status_code == 409
    assert (
        conn.execute("SELECT status FROM device_state WHERE device_id = 'b-1'").fetchone()[0]
        != "paused"
    )


STAFF_UNTIL, OWNER_UNTIL = (NOW + timedelta(hours=2), 1), (NOW + timedelta(hours=5), 2)


@pytest.mark.parametrize(
    ("staff", "owner", "campaign", "urgent", "held"),
    [
        (None, None, False, False, None),
        (STAFF_UNTIL, None, False, False, (*STAFF_UNTIL, False)),
        (STAFF_UNTIL, None, False, True, (*STAFF_UNTIL, False)),  # staff hold even urgent
        (STAFF_UNTIL, None, True, False, None),  # a campaign notice is not an alert
        (None, OWNER_UNTIL, False, False, (*OWNER_UNTIL, True)),
        (None, OWNER_UNTIL, True, False, (*OWNER_UNTIL, True)),  # an ordinary campaign notice
        (None, OWNER_UNTIL, False, True, None),  # an alarm panel offline
        (None, OWNER_UNTIL, True, True, None),  # a safety recall
        (STAFF_UNTIL, OWNER_UNTIL, False, False, (*OWNER_UNTIL, True)),  # the later end
        (STAFF_UNTIL, OWNER_UNTIL, False, True, (*STAFF_UNTIL, False)),
    ],
)
def test_what_holds_a_notice(staff, owner, campaign, urgent, held):
    from alerts.outbox import Silenced
    from alerts.router import holding_silence

    assert holding_silence(Silenced(staff, owner), campaign=campaign, urgent=urgent) == held
