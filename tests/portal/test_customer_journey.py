"""A customer's whole journey, end to end, in a real browser: their thermostat goes offline,
the e-mail reaches a real SMTP server, its link opens the device's page without signing in,
"snooze 24 h" lands on the incident staff read at once, the device comes back, and the page
shows the same timeline staff see of it, word for word. Another customer's link and session
open nothing of the first's.

    monitor tick ─► outbox ─► dispatcher ─SMTP─► aiosmtpd ─► link ─► Chromium ─► app (uvicorn)
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from support import add_channel, auth, make_device, make_overdue

from api.app import create_app
from contract.messages import heartbeat_payload, parse_message
from contract.topics import heartbeat_topic
from harness.apiserver import ApiServer
from harness.browser import CHROMIUM, PHONE
from ingest.writer import record_progress, write_batch
from portal.sessions import SESSION_COOKIE, mint_signin_link

if not CHROMIUM.exists():
    pytest.skip(f"needs Debian's Chromium at {CHROMIUM}", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright package")
expect = sync_api.expect

pytestmark = pytest.mark.chromium
LINK = re.compile(r"http://127\.0\.0\.1:\d+/my/#link=[\w-]+")


@pytest.fixture
def site(make_settings, dsn, conn):
    app = create_app(make_settings(api_summary_refresh_s=3600), dsn)
    server = ApiServer(app, name="customer-journey", timeout_graceful_shutdown=2).start()
    yield server.url
    server.stop()


def heartbeat(device_id: str, at: datetime):
    payload = heartbeat_payload(seq=1, ts=at, fw="2.4.1", uptime_s=60)
    return parse_message(
        heartbeat_topic("fleet", device_id), payload, prefix="fleet", received_at=at
    )


def mailed_link(smtp, to: str) -> str:
    [message] = [m for m in smtp.latest(20) if m.path == to]
    [link] = LINK.findall(message.message)
    return link


def test_offline_mail_link_snooze_back_online_and_the_same_timeline_as_staff(
    browser, site, conn, smtp, tick, make_dispatcher, keys
):
    now = datetime.now(UTC).replace(microsecond=0)
    make_device(conn, "th-1", name="Hall thermostat", serial="TH-1", customer_id="ann")
    conn.execute(
        "UPDATE customers SET name = %s, timezone = %s WHERE id = %s",
        ("Ann Example", "Europe/Berlin", "ann"),
    )
    add_channel(conn, "ann", smtp.url("ann@example.com"), kind="email")
    make_device(conn, "cam-9", name="Bob's camera", model_id="camera-v1", customer_id="bob")
    conn.execute("UPDATE customers SET name = %s WHERE id = %s", ("Bob Byrne", "bob"))
    add_channel(conn, "bob", smtp.url("bob@example.com"), kind="email")
    dispatcher = make_dispatcher(public_url=site)

    # Both devices go quiet; each owner is told by e-mail, with a link to their page.
    make_overdue(conn, ["th-1", "cam-9"], now)
    tick(now)
    assert dispatcher.run_once(now) == 2
    ann_link, bob_link = mailed_link(smtp, "ann@example.com"), mailed_link(smtp, "bob@example.com")
    incident = conn.execute(
        "SELECT id FROM incidents WHERE device_id = 'th-1' AND status = 'open'"
    ).fetchone()[0]

    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.goto(ann_link)
    expect(page.locator("#view[data-view=message] h1")).to_have_text("Hello Ann")
    assert page.url.endswith("/my/#message")  # the token left the address bar
    card = page.locator("[data-device-id=th-1]")
    expect(card.locator("h2")).to_have_text("Hall thermostat")
    expect(card.locator(".status")).to_contain_text("Offline")
    # Nothing of Bob's on Ann's page.
    assert "cam-9" not in page.content() and "Bob" not in page.content()

    page.click("[data-device-id=th-1] button[data-action=snooze_24h]")
    expect(page.locator("#link-done")).to_be_visible()
    expect(card.locator(".snoozed")).to_contain_text("Alerts paused until")

    # Staff see it on the incident at once.
    staff = httpx.get(f"{site}/api/v1/incidents/{incident}", headers=auth(keys.staff)).json()
    [snoozed] = [e for e in staff["timeline"] if e["kind"] == "snoozed"]
    assert snoozed["text"].startswith("Snoozed by the owner until ")
    assert (
        conn.execute(
            "SELECT count(*) FROM silences WHERE target = 'th-1' AND owner_id = 'ann' "
            "AND ends_at > %s",
            (now + timedelta(hours=23),),
        ).fetchone()[0]
        == 1
    )

    # The thermostat comes back: the incident resolves.
    back = now + timedelta(minutes=5)
    write_batch(conn, [heartbeat("th-1", back)], [], [])
    record_progress(conn, "test-ingest", back)
    tick(back + timedelta(seconds=1))
    assert conn.execute("SELECT status FROM incidents WHERE id = %s", (incident,)).fetchone() == (
        "resolved",
    )

    # Signed in, Ann reads the incident's timeline: staff's customer-visible lines, word for
    # word, in the same order.
    token = mint_signin_link(
        conn, "ann", channel_id=None, requested_by="test", now=datetime.now(UTC),
        ttl=timedelta(minutes=15),
    )  # fmt: skip
    page.goto(f"{site}/my/#signin={token}")
    expect(page.locator("#view[data-view=devices] h1")).to_have_text("Hello Ann Example")
    page.goto(f"{site}/my/#incident/{incident}")
    expect(page.locator("#view[data-view=incident]")).to_be_visible()
    expect(page.locator("#timeline li").first).to_be_visible()
    shown = page.locator("#timeline li .text").all_inner_texts()
    staff = httpx.get(f"{site}/api/v1/incidents/{incident}", headers=auth(keys.staff)).json()
    cookie = {SESSION_COOKIE: context.cookies()[0]["value"]}
    mine = httpx.get(f"{site}/api/v1/incidents/{incident}", cookies=cookie).json()
    assert shown == [e["text"] for e in mine["timeline"]]
    # Each line the owner reads is staff's line of that event, word for word; staff may read
    # more after it, in parentheses (who did it: incidents/visibility.py describe).
    staff_by_event = {(e["at"], e["kind"]): e["text"] for e in staff["timeline"]}
    for event in mine["timeline"]:
        theirs = staff_by_event[(event["at"], event["kind"])]
        assert theirs == event["text"] or theirs.startswith(event["text"] + " ("), (event, theirs)
    kinds = [e["kind"] for e in mine["timeline"]]
    for kind in ("opened", "notified", "snoozed", "resolved"):
        assert kind in kinds, (kind, kinds)

    # Bob's link and Bob's session open nothing of Ann's.
    other = browser.new_context(viewport=PHONE)
    bob = other.new_page()
    bob.goto(bob_link)
    expect(bob.locator("#view[data-view=message] h1")).to_have_text("Hello Bob")
    assert "th-1" not in bob.content() and "Hall thermostat" not in bob.content()
    token = bob_link.rsplit("#link=", 1)[1]
    refused = httpx.post(
        f"{site}/api/v1/links/act",
        json={"token": token, "action": "snooze_7d", "device_id": "th-1"},
    )
    assert refused.status_code == 404
    bob_token = mint_signin_link(
        conn, "bob", channel_id=None, requested_by="test", now=datetime.now(UTC),
        ttl=timedelta(minutes=15),
    )  # fmt: skip
    bob.goto(f"{site}/my/#signin={bob_token}")
    expect(bob.locator("#view[data-view=devices] h1")).to_contain_text("Hello")
    bob_cookie = {SESSION_COOKIE: other.cookies()[0]["value"]}
    assert httpx.get(f"{site}/api/v1/incidents/{incident}", cookies=bob_cookie).status_code == 404
    assert httpx.get(f"{site}/api/v1/devices/th-1", cookies=bob_cookie).status_code == 404
    other.close()
    context.close()
