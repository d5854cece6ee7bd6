"""The customer's page in a real browser: Debian's Chromium driven by Playwright, against the
real app served by uvicorn on the test database, signed in through a real sign-in link.

    test ──SQL──► test database ◄── app (uvicorn thread) ◄──HTTP── Chromium ◄── Playwright

Skipped, saying why, where /usr/bin/chromium is missing or will not start.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from support import make_device

from alerts.templates import HEALTH_WHAT_TO_DO, WHAT_TO_DO
from api.app import create_app
from harness.apiserver import ApiServer
from harness.browser import CHROMIUM, DESKTOP, PHONE
from harness.customer_home import (
    CUSTOMER,
    PUSH_ERROR,
    RECALL,
    STAFF_NOTE,
    STAFF_ONLY,
    TIMEZONE,
    make_home,
)
from portal.sessions import SESSION_COOKIE, mint_signin_link

if not CHROMIUM.exists():
    pytest.skip(f"needs Debian's Chromium at {CHROMIUM}", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright package")
expect = sync_api.expect

pytestmark = pytest.mark.chromium
TIMEOUT_MS = 10_000
# Another customer's device, named so that its showing up anywhere would be seen.
NEIGHBOUR = "Neighbour's camera"


@pytest.fixture
def home(conn):
    make_device(conn, "nb-cam", customer_id="cust-neighbour", model_id="camera-v1", name=NEIGHBOUR)
    return make_home(conn, datetime.now(UTC))


@pytest.fixture
def site(home, make_settings, dsn):
    app = create_app(make_settings(api_summary_refresh_s=3600), dsn)
    server = ApiServer(app, name="customer-page", timeout_graceful_shutdown=2).start()
    yield server.url
    server.stop()


@pytest.fixture
def new_page(browser):
    """A page factory: a fresh browser context of that viewport; fails the test on any
    script error and on anything the Content-Security-Policy refused."""
    contexts, errors = [], []

    def make(viewport=DESKTOP):
        context = browser.new_context(viewport=viewport)
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        tab = context.new_page()
        tab.on("pageerror", lambda error: errors.append(str(error)))
        tab.on(
            "console",
            lambda m: "Content Security Policy" in m.text and errors.append(m.text),
        )
        return tab

    yield make
    for context in contexts:
        context.close()
    assert not errors, errors


def link(conn, customer_id: str = CUSTOMER) -> str:
    return mint_signin_link(
        conn,
        customer_id,
        channel_id=None,
        requested_by="test",
        now=datetime.now(UTC),
        ttl=timedelta(minutes=15),
    )


def signed_in(new_page, site, conn, viewport=DESKTOP):
    page = new_page(viewport)
    page.goto(f"{site}/my/#signin={link(conn)}")
    expect(page.locator("#view[data-view=devices] h1")).to_have_text("Hello Maria Jensen")
    return page


def local_hm(at: datetime) -> str:
    return f"{at.astimezone(ZoneInfo(TIMEZONE)):%H:%M}"


def session_get(page, site: str, path: str) -> httpx.Response:
    """GET an API route with the page's own session cookie."""
    cookie = next(c for c in page.context.cookies() if c["name"] == SESSION_COOKIE)
    return httpx.get(f"{site}/api/v1{path}", cookies={SESSION_COOKIE: cookie["value"]})


def test_a_sign_in_link_opens_my_devices_in_words_and_no_one_elses(new_page, site, conn, home):
    token = link(conn)
    page = new_page()
    page.goto(f"{site}/my/#signin={token}")
    expect(page.locator("#view[data-view=devices] h1")).to_have_text("Hello Maria Jensen")
    assert page.url.endswith("/my/#devices")  # the token left the address bar
    assert token not in page.evaluate("history.state + location.href")

    cards = page.locator("article.card[data-device-id]")
    expect(cards).to_have_count(4)
    # One group (no places yet), problems first.
    expect(page.locator("section.place")).to_have_count(1)
    assert cards.evaluate_all("cs => cs.map(c => c.dataset.deviceId)")[:2] == ["hm-panel", "hm-cam"]
    went = conn.execute(
        "SELECT status_changed_at FROM device_state WHERE device_id = 'hm-panel'"
    ).fetchone()[0]
    panel = page.locator("[data-device-id=hm-panel]")
    expect(panel.locator(".status")).to_have_text(f"Offline since {local_hm(went)}")
    expect(panel.locator(".todo")).to_have_text(f"What to do now: {WHAT_TO_DO['alarm_panel']}")
    expect(panel.locator(".facts")).to_contain_text("Firmware3.4.1")
    expect(panel.locator(".facts dt")).to_have_text(["Battery", "Signal", "Firmware"])
    camera = page.locator("[data-device-id=hm-cam]")
    expect(camera.locator(".status")).to_contain_text("Battery low since")
    expect(camera.locator(".facts")).to_contain_text("Battery9 % (low)")
    expect(camera.locator(".facts")).to_contain_text("Signalfair (-77 dBm)")
    expect(camera.locator(".todo")).to_contain_text(HEALTH_WHAT_TO_DO["device_low_battery"])
    expect(page.locator("[data-device-id=hm-therm] .status")).to_have_text("Online")
    expect(page.locator("[data-device-id=hm-therm] .todo")).to_have_count(0)
    expect(page.locator("#open-incidents li")).to_have_count(2)
    expect(page.locator("#view")).not_to_contain_text(NEIGHBOUR)

    # The link is spent: opening it again asks to sign in.
    again = new_page()
    again.goto(f"{site}/my/#signin={token}")
    expect(again.locator("#signin-form")).to_be_visible()
    expect(again.locator("#banner")).to_contain_text("expired or was already used")


def test_an_incident_shows_the_customer_timeline_in_their_timezone(new_page, site, conn, home):
    page = signed_in(new_page, site, conn)
    page.locator("[data-device-id=hm-panel] a", has_text="See what happened").click()
    expect(page.locator("#view[data-view=incident]")).to_be_visible()
    assert page.url.endswith(f"#incident/{home.panel_incident}")

    answer = session_get(page, site, f"/incidents/{home.panel_incident}").json()
    lines = page.locator("#timeline li")
    expect(lines).to_have_count(len(answer["timeline"]))
    assert lines.locator(".text").all_text_contents() == [e["text"] for e in answer["timeline"]]
    shown_times = lines.locator("time").all_text_contents()
    for event, shown in zip(answer["timeline"], shown_times, strict=True):
        assert local_hm(datetime.fromisoformat(event["at"])) in shown, (event, shown)
    expect(page.locator("#timeline")).to_contain_text(f"Note: {STAFF_NOTE}")
    expect(page.locator("#timeline")).to_contain_text(PUSH_ERROR)
    expect(page.locator("#view")).not_to_contain_text(STAFF_ONLY)
    expect(page.locator("#view .facts")).to_contain_text(TIMEZONE)


def test_messages_are_grouped_per_channel_with_their_delivery_state(new_page, site, conn, home):
    page = signed_in(new_page, site, conn)
    page.click("[data-nav=messages]")
    email = page.locator(f"section[data-channel-id='{home.email_channel}']")
    push = page.locator(f"section[data-channel-id='{home.push_channel}']")
    expect(email.locator("h2")).to_contain_text("Email")
    expect(email.locator("li[data-state=sent]")).to_have_count(2)
    expect(email.locator("li[data-state=sent]").first).to_contain_text("Sent ")
    expect(push.locator("li[data-state=failed] .delivery")).to_have_text(f"Failed: {PUSH_ERROR}")
    expect(push.locator("li[data-state=pending] .delivery")).to_contain_text("Waiting until")
    expect(page.locator("li.message")).to_have_count(4)
    # Every message under its channel's heading: none outside a channel's section.
    assert page.locator("section[data-channel-id] li.message").count() == 4


def test_a_recall_is_acknowledged_from_the_page(new_page, site, conn, home):
    page = signed_in(new_page, site, conn)
    expect(page.locator("#view a[href='#recalls']")).to_have_text("A recall notice to read")
    page.click("[data-nav=recalls]")
    recall = page.locator(f"article[data-campaign-id='{home.recall}']")
    expect(recall.locator("h2")).to_have_text(RECALL)
    expect(recall.locator("[data-device-id=hm-car]")).to_contain_text("Family car: Waiting")
    recall.get_by_role("button", name="I have read this").click()
    expect(recall.locator("[data-device-id=hm-car]")).to_contain_text("Family car: Read on")
    expect(recall.get_by_role("button")).to_have_count(0)
    state = conn.execute(
        "SELECT state FROM campaign_devices WHERE campaign_id = %s", (home.recall,)
    ).fetchone()[0]
    assert state == "acknowledged"


def test_preferences_are_saved_and_shown_after_a_reload(new_page, site, conn, home):
    page = signed_in(new_page, site, conn)
    page.click("[data-nav=preferences]")
    expect(page.locator("#pref-limit + .hint")).to_have_text(
        "At most 20, the operator's limit; empty: that limit."
    )
    page.fill("#pref-name", "Maria J.")
    page.select_option("#pref-timezone", "America/New_York")
    page.fill("#pref-quiet-start", "22:00")
    page.fill("#pref-quiet-end", "07:00")
    page.fill("#pref-limit", "5")
    page.click("#preferences-form button[type=submit]")
    expect(page.locator("#preferences-status")).to_have_text("Saved.")

    page.reload()
    expect(page.locator("#pref-name")).to_have_value("Maria J.")
    expect(page.locator("#pref-timezone")).to_have_value("America/New_York")
    expect(page.locator("#pref-quiet-start")).to_have_value("22:00")
    expect(page.locator("#pref-quiet-end")).to_have_value("07:00")
    expect(page.locator("#pref-limit")).to_have_value("5")
    row = conn.execute(
        "SELECT timezone, quiet_hours_start::text, max_messages_per_hour FROM customers "
        "WHERE id = %s",
        (CUSTOMER,),
    ).fetchone()
    assert row == ("America/New_York", "22:00:00", 5)

    # Above the operator's ceiling: refused, said, nothing changed.
    page.fill("#pref-limit", "50")
    page.evaluate("document.querySelector('#pref-limit').removeAttribute('max')")
    page.click("#preferences-form button[type=submit]")
    expect(page.locator("#preferences-status")).to_contain_text("at most 20")
    assert conn.execute(
        "SELECT max_messages_per_hour FROM customers WHERE id = %s", (CUSTOMER,)
    ).fetchone() == (5,)


def test_channels_are_listed_added_and_removed(new_page, site, conn, home):
    page = signed_in(new_page, site, conn)
    page.click("[data-nav=preferences]")
    channels = page.locator("#channels li.channel")
    expect(channels).to_have_count(2)
    expect(page.locator("#view")).not_to_contain_text("maria-home-4471")  # secrets hidden
    page.select_option("#channel-kind", "webhook")
    page.fill("#channel-url", "json://127.0.0.1:9/maria-hook")
    page.fill("#channel-label", "Home server")
    page.click("#channel-form button[type=submit]")
    expect(page.locator("#channel-status")).to_contain_text("Added")
    expect(channels).to_have_count(3)
    added = channels.filter(has_text="Home server")
    added.get_by_role("button", name="Remove").click()
    added.get_by_role("button", name="Really remove?").click()
    expect(channels).to_have_count(2)
    assert conn.execute(
        "SELECT count(*) FROM contact_channels WHERE customer_id = %s", (CUSTOMER,)
    ).fetchone() == (2,)


@pytest.mark.parametrize("view", ["devices", "incident", "messages", "recalls", "preferences"])
def test_every_view_fits_a_phone_without_sideways_scrolling(new_page, site, conn, home, view):
    page = signed_in(new_page, site, conn, viewport=PHONE)
    target = f"incident/{home.panel_incident}" if view == "incident" else view
    page.goto(f"{site}/my/#{target}")
    expect(page.locator(f"#view[data-view={view}] h1")).to_be_visible()
    expect(page.locator("#view > *").nth(1)).to_be_visible()
    assert page.evaluate("document.scrollingElement.scrollWidth") <= PHONE["width"]


def test_sign_out_returns_to_sign_in_and_the_cookie_no_longer_works(new_page, site, conn, home):
    page = signed_in(new_page, site, conn)
    cookie = next(c for c in page.context.cookies() if c["name"] == SESSION_COOKIE)["value"]
    assert session_get(page, site, "/me").status_code == 200
    page.click("#sign-out")
    expect(page.locator("#signin-form")).to_be_visible()
    expect(page.locator("#nav")).to_be_hidden()
    answer = httpx.get(f"{site}/api/v1/me", cookies={SESSION_COOKIE: cookie})
    assert answer.status_code == 401
    page.goto(f"{site}/my/#devices")
    expect(page.locator("#signin-form")).to_be_visible()


def test_an_unknown_message_link_says_so_and_offers_sign_in(new_page, site):
    page = new_page(PHONE)
    page.goto(f"{site}/my/#link=nosuchtoken0123456789abcdef")
    expect(page.locator("#view[data-view=message] h1")).to_have_text("This link cannot be opened")
    assert page.url.endswith("/my/#message")  # the token left the address bar
    page.click("#view a[href='#signin']")
    expect(page.locator("#signin-form")).to_be_visible()


def test_a_device_view_shows_its_incidents_and_what_can_be_done(new_page, site, conn, home):
    page = signed_in(new_page, site, conn, viewport=PHONE)
    page.click("[data-device-id=hm-cam] h3 a")
    expect(page.locator("#view[data-view=device] h1")).to_have_text("Garden camera")
    expect(page.locator("#device-incidents li")).to_have_count(1)
    expect(page.locator("#device-incidents a")).to_have_attribute(
        "href", f"#incident/{home.camera_incident}"
    )
    actions = page.locator("#device-actions button")
    expect(actions).to_have_text(
        [
            "Pause alerts for 24 hours",
            "Pause alerts for 7 days",
            "It is off on purpose: stop watching it",
        ]
    )
    expect(page.locator("#view")).not_to_contain_text(NEIGHBOUR)
    assert page.locator("#device-actions button").count() == 3
