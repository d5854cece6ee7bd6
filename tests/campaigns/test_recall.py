"""Recall notices: to the owner's first channel, acknowledged by API or link, else repeated
on their next channel; delivered by the real dispatcher to a real SMTP server and HTTP sink."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from support import add_channel, auth, make_device

from api.auth import create_key
from campaigns.store import CampaignCreate, create_campaign, move_campaign

T0 = datetime.now(UTC).replace(microsecond=0)
RECALL = {
    "name": "Recall of charger cables made in March",
    "kind": "recall_notice",
    "target": {"models": ["ev-charger-v1"], "serial_from": "EV-0100", "serial_to": "EV-0199"},
    "safe_to_use": False,
    "instructions": "Unplug the charger and book a free cable swap at example.com/swap.",
    "policy": {"repeat_after_s": 86400},
}


@pytest.fixture
def owners(conn, smtp, http_sink):
    """Three owners with a charger in the recalled serial range, one outside it."""
    for owner, serial in (
        ("ann", "EV-0101"),
        ("bob", "EV-0150"),
        ("cyd", "EV-0199"),
        ("dan", "EV-0300"),
    ):
        make_device(
            conn,
            f"ev-{owner}",
            model_id="ev-charger-v1",
            serial=serial,
            customer_id=owner,
            customer_name=owner.title(),
            name=f"{owner.title()}'s charger",
        )
        add_channel(conn, owner, smtp.url(f"{owner}@example.com"), kind="email")
        add_channel(conn, owner, http_sink.url(owner), kind="webhook")
    return ["ann", "bob", "cyd"]


def test_unacknowledged_recall_is_repeated_on_the_second_channel(
    conn, owners, runner, make_dispatcher, smtp, http_sink, api
):
    campaign_id, targeted = create_campaign(
        conn, CampaignCreate.model_validate(RECALL), created_by="safety", now=T0
    )
    assert targeted == 3
    from played import Devices

    # Quiet hours all day: a safety recall is urgent and goes all the same.
    conn.execute("UPDATE customers SET quiet_hours_start = '00:00', quiet_hours_end = '23:59'")
    r = runner(Devices(conn), public_url="https://fleet.example.com")
    r.tick(T0)
    dispatcher = make_dispatcher()
    assert dispatcher.run_once(T0) == 3
    emails = {m["to"]: m for _, m in smtp.messages}
    assert set(emails) == {"ann@example.com", "bob@example.com", "cyd@example.com"}
    assert (
        emails["bob@example.com"]["subject"]
        == "Urgent: Safety recall: your EV charger Bob's charger"
    )
    body = emails["bob@example.com"].get_body(("plain",)).get_content()
    assert "Sent even during quiet hours and snoozes" in body
    assert "Stop using it until this is done." in body and "cable swap" in body
    assert "EV-0150" in body and "EV-0101" not in body
    assert http_sink.received() == []  # the first notice goes to the first channel only

    # Ann acknowledges in the API, Cyd through the link in her email.
    ann = create_key(conn, "customer", customer_id="ann")[1]
    acked = api.post(f"/api/v1/me/campaigns/{campaign_id}/ack", headers=auth(ann))
    assert acked.status_code == 200 and acked.json()[0]["devices"][0]["state"] == "acknowledged"
    cyd_link = next(
        line
        for line in emails["cyd@example.com"].get_body(("plain",)).get_content().split()
        if line.startswith("https://fleet.example.com/recall/")
    )
    path = cyd_link.removeprefix("https://fleet.example.com")
    assert "I have read this notice" in api.get(path).text
    assert "Thank you" in api.post(path).text

    # A day later only Bob, who said nothing, hears again: on his other channel.
    r.tick(T0 + timedelta(hours=23))
    assert dispatcher.run_once(T0 + timedelta(hours=23)) == 0
    r.tick(T0 + timedelta(days=1, seconds=1))
    assert dispatcher.run_once(T0 + timedelta(days=1, seconds=1)) == 1
    [(title, message)] = http_sink.by_path()["/bob"]
    assert title == "Urgent: Reminder, safety recall: your EV charger Bob's charger"
    assert "have not heard back" in message
    # Never a third time, and the campaign waits for Bob.
    r.tick(T0 + timedelta(days=5))
    assert dispatcher.run_once(T0 + timedelta(days=5)) == 0
    assert conn.execute("SELECT status FROM campaigns").fetchone()[0] == "running"
    bob = create_key(conn, "customer", customer_id="bob")[1]
    api.post(f"/api/v1/me/campaigns/{campaign_id}/ack", headers=auth(bob))
    r.tick(T0 + timedelta(days=5, seconds=1))
    assert conn.execute("SELECT status FROM campaigns").fetchone()[0] == "completed"


def test_another_owners_recall_and_bad_links_are_refused(conn, owners, runner, api):
    campaign_id, _ = create_campaign(
        conn, CampaignCreate.model_validate(RECALL), created_by="safety", now=T0
    )
    from played import Devices

    runner(Devices(conn)).tick(T0)
    dan = create_key(conn, "customer", customer_id="dan")[1]  # his serial is outside the range
    assert api.post(f"/api/v1/me/campaigns/{campaign_id}/ack", headers=auth(dan)).status_code == 404
    assert api.get("/api/v1/me/campaigns", headers=auth(dan)).json() == []
    assert api.get("/recall/not-a-real-token-at-all").status_code == 404
    assert api.post("/recall/x").status_code == 422
    states = {s for (s,) in conn.execute("SELECT state FROM campaign_devices")}
    assert states == {"notified"}


def links_in(smtp, base: str) -> dict[str, str]:
    """The recall link (path) of each email received, by recipient."""
    return {
        message["to"]: next(
            word.removeprefix(base)
            for word in message.get_body(("plain",)).get_content().split()
            if word.startswith(f"{base}/recall/")
        )
        for _, message in smtp.messages
    }


def holders_of(conn, text: str) -> list[str]:
    """The tables, other than the outbox that writes the message, holding `text` anywhere."""
    tables = [
        t
        for (t,) in conn.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' "
            "AND table_name NOT IN ('notices', 'notifications')"
        )
    ]
    return [
        t
        for t in tables
        if conn.execute(
            f'SELECT EXISTS (SELECT 1 FROM "{t}" x WHERE x::text LIKE %s)', (f"%{text}%",)
        ).fetchone()[0]
    ]


def test_recall_links_are_kept_only_as_hashes_and_stop_when_the_recall_is_cancelled(
    conn, owners, runner, make_dispatcher, smtp, api
):
    campaign_id, _ = create_campaign(
        conn, CampaignCreate.model_validate(RECALL), created_by="safety", now=T0
    )
    from played import Devices

    runner(Devices(conn), public_url="https://fleet.example.com").tick(T0)
    assert make_dispatcher().run_once(T0) == 3
    links = links_in(smtp, "https://fleet.example.com")
    assert len(set(links.values())) == 3
    for path in links.values():
        assert holders_of(conn, path.rsplit("/", 1)[1]) == []
        assert api.get(path).status_code == 200
    assert "Thank you" in api.post(links["ann@example.com"]).text

    assert move_campaign(conn, campaign_id, "cancel", by="safety", now=T0 + timedelta(hours=1))
    for path in links.values():
        assert api.get(path).status_code == 404
        assert api.post(path).status_code == 404
    assert {s for (s,) in conn.execute("SELECT state FROM campaign_devices")} == {
        "acknowledged",
        "cancelled",
    }


def test_a_completed_recalls_links_show_the_thanks_for_a_grace_then_stop(
    conn, owners, runner, make_dispatcher, smtp, api
):
    create_campaign(conn, CampaignCreate.model_validate(RECALL), created_by="safety", now=T0)
    from played import Devices

    r = runner(Devices(conn), public_url="https://fleet.example.com")
    r.tick(T0)
    make_dispatcher().run_once(T0)
    links = links_in(smtp, "https://fleet.example.com")
    for path in links.values():
        api.post(path)
    r.tick(T0 + timedelta(minutes=1))
    assert conn.execute("SELECT status FROM campaigns").fetchone()[0] == "completed"
    # The last owner to confirm closed the recall: coming back to the page still thanks them.
    assert "Thank you" in api.get(links["cyd@example.com"]).text
    conn.execute("UPDATE campaigns SET finished_at = now() - interval '1 day 1 minute'")
    assert api.get(links["cyd@example.com"]).status_code == 404
