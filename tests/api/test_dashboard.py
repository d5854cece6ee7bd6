"""The staff dashboard in a real browser: Debian's Chromium driven by Playwright, against the
real app served by uvicorn on the test database.

    test ──SQL──► test database ◄── app (uvicorn thread) ◄──HTTP/SSE── Chromium ◄── Playwright

Skipped, saying why, where /usr/bin/chromium is missing or will not start.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from psycopg.types.json import Jsonb
from support import make_device

from api.app import create_app
from campaigns.notices import notify_owners
from campaigns.readings import CAMPAIGN_BY_ID, campaign_from_row
from campaigns.store import CampaignCreate, create_campaign
from devices.registry import import_devices
from harness.apiserver import ApiServer

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
STATUSES = ("provisioned", "never_seen", "online", "degraded", "offline", "retired")
# Typed by a customer: must be shown as text, never become markup.
HOSTILE_NAME = "Hallway <b>thermostat</b> & <script>alert(1)</script>"
# id: (model, status, how long ago last seen)
FLEET = {
    "therm-1": ("thermostat-v2", "online", timedelta(minutes=1)),
    "therm-2": ("thermostat-v2", "online", timedelta(minutes=1)),
    "cam-1": ("camera-v1", "offline", timedelta(hours=3)),
    "cam-2": ("camera-v1", "degraded", timedelta(minutes=2)),
    "panel-1": ("alarm-panel-v3", "provisioned", None),
    "car-1": ("car-telematics-v1", "never_seen", None),
}
TIMEOUT_MS = 10_000

# Typed by the firmware team: text too.
UPDATE_NAME = "Thermostat 2.6.0 <b>rollout</b> & fixes"
HALT_REASON = "3 of 9 finished updates failed (33 %), above the 20 % limit"
# The update's devices in id order, by state (the rest pending), and its failures' reasons.
UPDATE_STATES = (
    ["succeeded"] * 6
    + ["failed"] * 3
    + ["downloading"] * 2
    + [
        "installing",
        "sent",
        "rebooting",
    ]
)
FAILURE_REASONS = {6: "checksum_mismatch", 7: "checksum_mismatch", 8: "battery_low"}
IN_FLIGHT = ("sent", "accepted", "downloading", "installing", "rebooting")
# What the campaigns panel counts in each row, by kind: {data-count: states}.
PANEL_COUNTS = {
    "ota_update": {
        "succeeded": ("succeeded",),
        "failed": ("failed",),
        "in_flight": IN_FLIGHT,
        "pending": ("pending",),
    },
    "recall_notice": {
        "acknowledged": ("acknowledged",),
        "notified": ("notified",),
        "pending": ("pending",),
    },
}

if not CHROMIUM.exists():
    pytest.skip(f"needs Debian's Chromium at {CHROMIUM}", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright package")
expect = sync_api.expect

pytestmark = pytest.mark.chromium


@pytest.fixture(scope="module")
def browser():
    try:
        playwright = sync_api.sync_playwright().start()
    except Exception as exc:
        pytest.skip(f"playwright does not start: {exc}")
    try:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
    except Exception as exc:
        playwright.stop()
        pytest.skip(f"playwright cannot launch {CHROMIUM}: {exc}")
    yield chromium
    chromium.close()
    playwright.stop()


def add_heartbeats(conn, device_id: str, times: list[datetime], metrics) -> None:
    """Heartbeats as the ingest stores them; `metrics(i)` gives the i-th one's metrics."""
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO heartbeats (device_id, ts, seq, received_at, fw, uptime_s, metrics) "
            "VALUES (%s, %s, %s, %s, '2.1.0', %s, %s)",
            [(device_id, t, i + 1, t, 60 * i, Jsonb(metrics(i))) for i, t in enumerate(times)],
        )


@pytest.fixture
def fleet(conn):
    """Six devices in five statuses, heartbeats for two of them, one open incident."""
    now = datetime.now(UTC)
    for device_id, (model, _, _) in FLEET.items():
        name = HOSTILE_NAME if device_id == "therm-1" else f"Device {device_id}"
        make_device(conn, device_id, model_id=model, name=name, region="eu-west")
    for device_id, (_, status, ago) in FLEET.items():
        conn.execute(
            "UPDATE device_state SET status = %s, status_changed_at = %s, last_seen_at = %s "
            "WHERE device_id = %s",
            (status, now - timedelta(hours=4), now - ago if ago else None, device_id),
        )
    conn.execute(
        "SELECT fleetwatch_ensure_heartbeat_partitions(%s, %s)",
        (now.date() - timedelta(days=1), now.date() + timedelta(days=1)),
    )
    # therm-1: every minute for two hours (24 or 25 five-minute buckets); no RSSI reported.
    minutes = [now - timedelta(minutes=m) for m in range(120, 0, -1)]
    add_heartbeats(conn, "therm-1", minutes, lambda i: {"battery_pct": 90 - i / 10, "temp_c": 21})
    # therm-2: three heartbeats a minute apart, too few buckets: charted raw.
    recent = [now - timedelta(minutes=m, seconds=30) for m in (3, 2, 1)]
    add_heartbeats(
        conn, "therm-2", recent, lambda i: {"battery_pct": 50 + i, "temp_c": 20, "rssi_dbm": -60}
    )
    conn.execute(
        "INSERT INTO incidents (scope, device_id, kind, severity, opened_at, summary) "
        "VALUES ('device', 'cam-1', 'offline', 'warning', %s, 'Camera cam-1 is offline')",
        (now - timedelta(hours=3),),
    )
    return FLEET


@pytest.fixture
def site(fleet, make_settings, dsn):
    """The real app on a free port, in a background thread; its base URL."""
    app = create_app(make_settings(api_summary_refresh_s=0.5), dsn)
    # The page's live stream stays open: shutting down does not wait for it.
    server = ApiServer(app, name="dashboard-api", timeout_graceful_shutdown=2).start()
    yield server.url
    server.stop()


@pytest.fixture
def page(browser, site):
    """A page in a fresh browser context (its own localStorage); fails on any script error
    and on anything the Content-Security-Policy refused."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(TIMEOUT_MS)
    tab = context.new_page()
    script_errors: list[str] = []
    tab.on("pageerror", lambda error: script_errors.append(str(error)))
    tab.on(
        "console",
        lambda message: (
            "Content Security Policy" in message.text and script_errors.append(message.text)
        ),
    )
    yield tab
    context.close()
    assert not script_errors, script_errors


def make_campaigns(conn, now: datetime) -> SimpleNamespace:
    """An update of the 22 thermostats in its second wave, and a recall of the two cameras.

    The update: 6 succeeded, 3 failed, 5 in flight, 8 pending. The recall: one notified, one
    acknowledged. Both running, with the timeline the runner would have written.
    """
    assert import_devices(
        conn, [{"id": f"th-{n:02}", "model_id": "thermostat-v2"} for n in range(20)]
    ).ok
    update, _ = create_campaign(
        conn,
        CampaignCreate.model_validate(
            {
                "name": UPDATE_NAME,
                "kind": "ota_update",
                "target": {"models": ["thermostat-v2"]},
                "target_version": "2.6.0",
                "artifact_url": "https://updates.example.com/th/2.6.0.bin",
                "artifact_sha256": "ab" * 32,
                "waves": [10, 100],
            }
        ),
        created_by="fw",
        now=now - timedelta(hours=2),
    )
    recall, _ = create_campaign(
        conn,
        CampaignCreate.model_validate(
            {
                "name": "Camera v1 power supply recall",
                "kind": "recall_notice",
                "target": {"models": ["camera-v1"]},
                "safe_to_use": False,
                "instructions": "Unplug the power supply and wait for a replacement.",
            }
        ),
        created_by="fw",
        now=now - timedelta(hours=1),
    )
    opened = [(update, 1, now - timedelta(minutes=110)), (update, 2, now - timedelta(minutes=50))]
    opened.append((recall, 1, now - timedelta(minutes=55)))
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO campaign_events (campaign_id, at, kind, detail) "
            "SELECT %(campaign)s, %(at)s, 'wave_opened', jsonb_build_object('wave', %(wave)s::int, "
            "'devices', count(*)) FROM campaign_devices "
            "WHERE campaign_id = %(campaign)s AND wave = %(wave)s",
            [{"campaign": campaign, "at": at, "wave": wave} for campaign, wave, at in opened],
        )
        cur.execute(
            "UPDATE campaigns SET status = 'running', current_wave = CASE id WHEN %s THEN 2 "
            "ELSE 1 END, wave_opened_at = %s WHERE id IN (%s, %s)",
            (update, now - timedelta(minutes=50), update, recall),
        )
    set_device_states(conn, update, UPDATE_STATES, FAILURE_REASONS)
    set_device_states(conn, recall, ["acknowledged", "notified"])
    return SimpleNamespace(update=update, recall=recall)


def set_device_states(conn, campaign_id: int, states: list[str], reasons=None) -> None:
    """The campaign's first devices (in id order) to `states`, the i-th failing for reasons[i]."""
    devices = conn.execute(
        "SELECT device_id FROM campaign_devices WHERE campaign_id = %s ORDER BY device_id",
        (campaign_id,),
    ).fetchall()
    reasons = reasons or {}
    with conn.cursor() as cur:
        cur.executemany(
            "UPDATE campaign_devices SET state = %(state)s, state_at = now(), attempt = 1, "
            "failure_reason = %(reason)s, finished_at = CASE WHEN %(state)s IN "
            "('succeeded', 'failed') THEN now() END "
            "WHERE campaign_id = %(campaign)s AND device_id = %(device)s",
            [
                {"state": state, "reason": reasons.get(i), "campaign": campaign_id, "device": d}
                for i, ((d,), state) in enumerate(zip(devices, states, strict=False))
            ],
        )


def add_campaign_event(conn, campaign_id: int, kind: str, detail: dict) -> None:
    conn.execute(
        "INSERT INTO campaign_events (campaign_id, at, kind, detail) VALUES (%s, now(), %s, %s)",
        (campaign_id, kind, Jsonb(detail)),
    )


@pytest.fixture
def campaigns(conn, fleet):
    return make_campaigns(conn, datetime.now(UTC))


def panel_counts(campaign: dict) -> dict[str, int]:
    """The counts the campaigns panel should show for this campaign as the API lists it."""
    by_state = campaign["progress"]["by_state"]
    counts = {
        name: sum(by_state.get(s, 0) for s in states)
        for name, states in PANEL_COUNTS[campaign["kind"]].items()
    }
    return {**counts, "devices": campaign["progress"]["devices"]}


def open_dashboard(page, site: str, key: str) -> None:
    page.goto(f"{site}/#key={key}")
    expect(page.locator("#app")).to_be_visible()


def chart_points(page, series: str) -> int:
    """How many points the chart of `series` draws (its path: M or L, then x,y)."""
    path = page.locator(f'svg.chart[data-series="{series}"] path')
    expect(path).to_have_count(1)
    return len(re.findall(r"[ML]-?[\d.]+,-?[\d.]+", path.get_attribute("d")))


def get(site: str, path: str, key: str):
    response = httpx.get(f"{site}/api/v1{path}", headers={"Authorization": f"Bearer {key}"})
    response.raise_for_status()
    return response.json()


def test_fleet_counts_equal_the_summary_api(page, site, keys):
    open_dashboard(page, site, keys.staff)

    summary = get(site, "/fleet/summary", keys.staff)
    assert summary["total"] == len(FLEET)
    expect(page.locator("[data-count=total]")).to_have_text(str(summary["total"]))
    for status in STATUSES:
        expected = str(summary["by_status"].get(status, 0))
        expect(page.locator(f'[data-status="{status}"]')).to_have_text(expected)
    expect(page.locator('[data-severity="warning"]')).to_have_text("1")
    expect(page.locator("#by-model tbody tr")).to_have_count(len(summary["by_model"]))
    expect(page.locator("#online-chart path, #online-chart circle").first).to_be_attached()
    # The key left the address bar (and history) for localStorage.
    assert page.url.endswith("/dashboard/")
    assert page.evaluate("localStorage.getItem('fleetwatch.apiKey')") == keys.staff


def test_device_list_filters_by_status_and_pages_on(page, site, keys, conn):
    extra = [
        {"id": f"bulk-{n:03}", "model_id": "camera-v1", "customer_id": "c2"} for n in range(50)
    ]
    assert import_devices(conn, extra).ok
    open_dashboard(page, site, keys.staff)
    rows = page.locator("#devices tbody tr[data-device-id]")

    def ids() -> list[str]:
        return rows.evaluate_all("rows => rows.map(r => r.dataset.deviceId)")

    expect(rows).to_have_count(50)
    first = ids()
    page.click("#next-page")
    expect(rows).to_have_count(len(FLEET) + len(extra) - 50)
    assert sorted(first + ids()) == sorted({d["id"] for d in extra} | set(FLEET))
    page.click("#first-page")
    expect(rows).to_have_count(50)

    page.select_option("#status-filter", "online")
    expect(rows).to_have_count(2)
    assert sorted(ids()) == ["therm-1", "therm-2"]
    page.fill("#search", "therm-2")
    expect(rows).to_have_count(1)
    rows.first.click()
    expect(page.locator("#device-name")).to_have_text("Device therm-2")
    assert page.url.endswith("#device=therm-2")


def test_device_page_shows_its_name_and_history_charts(page, site, keys):
    open_dashboard(page, site, keys.staff)
    page.goto("about:blank")
    page.goto(f"{site}/dashboard/#device=therm-1")  # a fresh load: the key from localStorage

    expect(page.locator("#device-name")).to_have_text(HOSTILE_NAME)
    expect(page.locator("#device-body b, #device-body script")).to_have_count(0)
    expect(page.locator("#device-body dl")).to_contain_text("Thermostat v2 (thermostat-v2)")
    history = get(site, "/devices/therm-1/history?resolution=5m", keys.staff)
    assert len(history["points"]) >= 24
    for series in ("heartbeats", "battery_pct", "temp_c"):
        assert chart_points(page, series) == len(history["points"]), series
    expect(page.locator('svg.chart[data-series="rssi_dbm"]')).to_have_text("no data")

    # Few buckets: the metrics are charted from the raw heartbeats.
    page.goto(f"{site}/dashboard/#device=therm-2")
    expect(page.locator("#device-name")).to_have_text("Device therm-2")
    assert chart_points(page, "rssi_dbm") == 3


def test_live_incident_appears_and_counts_update_without_reload(page, site, keys, conn):
    open_dashboard(page, site, keys.staff)
    expect(page.locator("#live-status")).to_have_text("live")
    expect(page.locator('[data-severity="warning"]')).to_have_text("1")
    expect(page.locator('[data-status="offline"]')).to_have_text("1")
    page.evaluate("window.notReloaded = true")

    # What the monitor does when therm-2 goes silent.
    conn.execute(
        "UPDATE device_state SET status = 'offline', status_changed_at = now() "
        "WHERE device_id = 'therm-2'"
    )
    incident_id = conn.execute(
        "INSERT INTO incidents (scope, device_id, kind, severity, opened_at, summary) "
        "VALUES ('device', 'therm-2', 'offline', 'warning', now(), 'Thermostat went offline') "
        "RETURNING id"
    ).fetchone()[0]
    conn.execute(
        "INSERT INTO incident_events (incident_id, at, kind) VALUES (%s, now(), 'opened')",
        (incident_id,),
    )

    events = page.locator("#live-events li")
    expect(events).to_have_count(1)
    expect(events.first).to_contain_text("opened offline")
    expect(events.first).to_contain_text("therm-2")
    expect(page.locator('[data-severity="warning"]')).to_have_text("2")
    expect(page.locator('[data-status="offline"]')).to_have_text("2")
    expect(page.locator(f'#incidents tr[data-incident-id="{incident_id}"]')).to_have_count(1)
    assert page.evaluate("window.notReloaded") is True


def test_missing_or_wrong_key_asks_for_one(page, site, keys):
    page.goto(f"{site}/dashboard/")
    expect(page.locator("#key-form")).to_be_visible()
    expect(page.locator("#key-error")).to_be_hidden()

    page.goto(f"{site}/dashboard/#key=fwk_not-a-real-key")
    expect(page.locator("#key-error")).to_contain_text("refused")
    expect(page.locator("#key-form")).to_be_visible()
    expect(page.locator("#app")).to_be_hidden()
    assert page.evaluate("localStorage.getItem('fleetwatch.apiKey')") is None

    page.fill("#key-input", keys.staff)
    page.click("#key-form button[type=submit]")
    expect(page.locator("[data-count=total]")).to_have_text(str(len(FLEET)))
    expect(page.locator("#key-form")).to_be_hidden()


def test_campaign_panel_counts_equal_the_campaigns_api(page, site, keys, campaigns):
    open_dashboard(page, site, keys.staff)

    listed = get(site, "/campaigns?limit=20", keys.staff)
    assert [c["id"] for c in listed] == [campaigns.recall, campaigns.update]  # newest first
    update = panel_counts(listed[1])
    assert update == {"succeeded": 6, "failed": 3, "in_flight": 5, "pending": 8, "devices": 22}
    rows = page.locator("#campaigns tbody tr[data-campaign-id]")
    expect(rows).to_have_count(len(listed))
    assert rows.evaluate_all("rows => rows.map(r => Number(r.dataset.campaignId))") == [
        c["id"] for c in listed
    ]
    for campaign in listed:
        row = page.locator(f'#campaigns tr[data-campaign-id="{campaign["id"]}"]')
        expect(row.locator("td").first).to_have_text(campaign["name"])
        expect(row.locator(".badge")).to_have_text(campaign["status"])
        waves = f"{campaign['current_wave']} / {len(campaign['waves'])}"
        expect(row.locator("[data-wave]")).to_have_text(waves)
        for name, n in panel_counts(campaign).items():
            expect(row.locator(f'[data-count="{name}"]')).to_have_text(str(n))
    expect(page.locator("#campaigns b")).to_have_count(0)


def test_halted_campaign_shows_live_with_its_reason(page, site, keys, conn, campaigns):
    open_dashboard(page, site, keys.staff)
    expect(page.locator("#live-status")).to_have_text("live")
    row = page.locator(f'#campaigns tr[data-campaign-id="{campaigns.update}"]')
    expect(row.locator(".badge")).to_have_text("running")
    page.evaluate("window.notReloaded = true")

    # What the runner does when the failure rate passes the gate.
    conn.execute(
        "UPDATE campaigns SET status = 'halted', halted_reason = %s WHERE id = %s",
        (HALT_REASON, campaigns.update),
    )
    add_campaign_event(conn, campaigns.update, "halted", {"reason": HALT_REASON, "wave": 2})

    expect(row.locator(".badge")).to_have_text("halted")
    expect(row.locator(".badge")).to_have_css("background-color", "rgb(220, 38, 38)")
    expect(row.locator(".halted-reason")).to_have_text(HALT_REASON)
    event = page.locator(f'#live-events li[data-campaign-id="{campaigns.update}"]')
    expect(event).to_contain_text(f"campaign {campaigns.update} halted: {HALT_REASON}")

    # With its view open, the next event (someone resumes it elsewhere) re-renders it.
    row.locator("td").nth(1).click()
    expect(page.locator("#campaign-halted")).to_have_text(f"Halted: {HALT_REASON}")
    conn.execute(
        "UPDATE campaigns SET status = 'running', halted_reason = NULL WHERE id = %s",
        (campaigns.update,),
    )
    add_campaign_event(conn, campaigns.update, "resume", {"by": "fw-oncall"})
    expect(page.locator("#campaign-head .badge")).to_have_text("running")
    expect(page.locator("#campaign-halted")).to_have_count(0)
    expect(page.locator("#campaign-timeline li").first).to_contain_text("resumed by fw-oncall")
    assert page.evaluate("window.notReloaded") is True


def test_campaign_view_lists_waves_failures_and_failed_devices(page, site, keys, campaigns):
    open_dashboard(page, site, keys.staff)
    page.locator(f'#campaigns tr[data-campaign-id="{campaigns.update}"] td').nth(2).click()
    expect(page.locator("#campaign-name")).to_have_text(UPDATE_NAME)
    assert page.url.endswith(f"#campaign={campaigns.update}")

    campaign = get(site, f"/campaigns/{campaigns.update}", keys.staff)
    progress = campaign["progress"]
    expect(page.locator("#campaign-waves tbody tr")).to_have_count(len(campaign["waves"]))
    assert len(progress["by_wave"]) == 2
    for wave, counts in progress["by_wave"].items():
        row = page.locator(f'#campaign-waves tbody tr[data-wave="{wave}"]')
        for state, n in counts.items():
            expect(row.locator(f'[data-state="{state}"]')).to_have_text(str(n))
        expect(row.locator('[data-state="devices"]')).to_have_text(str(sum(counts.values())))
    total = page.locator("#campaign-waves tfoot")
    for state, n in progress["by_state"].items():
        expect(total.locator(f'[data-state="{state}"]')).to_have_text(str(n))

    assert progress["failures"] == {"checksum_mismatch": 2, "battery_low": 1}
    expect(page.locator("#campaign-failures tbody tr")).to_have_count(2)
    for reason, n in progress["failures"].items():
        expect(page.locator(f'#campaign-failures tr[data-reason="{reason}"]')).to_have_text(
            re.compile(rf"{reason}\s*{n}")
        )
    failed = get(site, f"/campaigns/{campaigns.update}/devices?state=failed&limit=100", keys.staff)
    links = page.locator("#campaign-failed tbody a")
    expect(links).to_have_count(3)
    assert links.evaluate_all("links => links.map(a => a.getAttribute('href'))") == [
        f"#device={d['device_id']}" for d in failed
    ]
    kinds = page.locator("#campaign-timeline li").evaluate_all(
        "items => items.map(li => li.dataset.kind)"
    )
    assert kinds == [e["kind"] for e in reversed(campaign["timeline"])]
    assert kinds[-1] == "created"
    expect(page.locator("#campaign-view b")).to_have_count(0)

    links.first.click()
    expect(page.locator("#device-name")).to_have_text(failed[0]["device_id"])


def test_pause_needs_an_admin_or_firmware_key_and_shows_refusals(page, site, keys, conn, campaigns):
    def status_in_db() -> str:
        return conn.execute(
            "SELECT status FROM campaigns WHERE id = %s", (campaigns.update,)
        ).fetchone()[0]

    status = page.locator("#campaign-head .badge")
    message = page.locator("#campaign-message")
    open_dashboard(page, site, keys.staff)
    page.goto(f"{site}/dashboard/#campaign={campaigns.update}")
    expect(status).to_have_text("running")
    page.click("#campaign-pause")
    expect(message).to_contain_text("needs an admin or firmware key")
    expect(status).to_have_text("running")
    expect(page.locator("#campaign-pause")).to_be_enabled()
    assert status_in_db() == "running"

    page.goto(f"{site}/#key={keys.admin}")
    page.click("#key-use")  # another key than the one held: the page asks first
    expect(page.locator("#app")).to_be_visible()
    page.goto(f"{site}/dashboard/#campaign={campaigns.update}")
    expect(message).to_be_hidden()
    page.click("#campaign-pause")
    expect(status).to_have_text("paused")
    expect(message).to_have_text("Paused.")
    expect(page.locator("#campaign-pause")).to_be_disabled()
    expect(page.locator("#campaign-resume")).to_be_enabled()
    expect(page.locator("#campaign-timeline li").first).to_contain_text("paused by")
    assert status_in_db() == "paused"

    # Completed behind the page's back: the API refuses (409), and the page says why.
    conn.execute("UPDATE campaigns SET status = 'completed' WHERE id = %s", (campaigns.update,))
    page.click("#campaign-resume")
    expect(message).to_have_text("Resume refused: a completed campaign cannot resume")
    expect(status).to_have_text("completed")
    for move in ("pause", "resume", "cancel"):
        expect(page.locator(f"#campaign-{move}")).to_be_disabled()

    page.click("#campaign-view >> text=← Fleet")
    row = page.locator(f'#campaigns tr[data-campaign-id="{campaigns.update}"]')
    expect(row.locator(".badge")).to_have_text("completed")


def test_a_link_with_another_key_asks_before_replacing_the_one_held(page, site, keys):
    stored = "localStorage.getItem('fleetwatch.apiKey')"
    open_dashboard(page, site, keys.staff)
    expect(page.locator("[data-count=total]")).to_have_text(str(len(FLEET)))

    # A link someone sent, carrying their own key: the page asks, and keeps ours meanwhile.
    page.goto(f"{site}/dashboard/#key={keys.admin}")
    expect(page.locator("#key-replace")).to_be_visible()
    expect(page.locator("#app")).to_be_hidden()
    expect(page.locator("#key-replace-held")).to_have_text(keys.staff[:10] + "…")
    expect(page.locator("#key-replace-offered")).to_have_text(keys.admin[:10] + "…")
    assert page.evaluate(stored) == keys.staff
    assert "key=" not in page.url  # out of the address bar whatever the answer
    page.click("#key-keep")
    expect(page.locator("#key-replace")).to_be_hidden()
    expect(page.locator("#app")).to_be_visible()
    expect(page.locator("[data-count=total]")).to_have_text(str(len(FLEET)))
    assert page.evaluate(stored) == keys.staff

    page.goto(f"{site}/dashboard/#key={keys.admin}")
    page.click("#key-use")
    expect(page.locator("[data-count=total]")).to_have_text(str(len(FLEET)))
    assert page.evaluate(stored) == keys.admin

    # The key already held: nothing to ask.
    page.goto("about:blank")
    page.goto(f"{site}/dashboard/#key={keys.admin}")
    expect(page.locator("[data-count=total]")).to_have_text(str(len(FLEET)))
    expect(page.locator("#key-replace")).to_be_hidden()


def recall_link(conn, site: str, device_id: str) -> str:
    """The link a recall notice gives the owner of `device_id`, as the runner records it."""
    now = datetime.now(UTC)
    campaign_id, _ = create_campaign(
        conn,
        CampaignCreate.model_validate(
            {
                "name": "Recall",
                "kind": "recall_notice",
                "target": {"device_ids": [device_id]},
                "safe_to_use": False,
                "instructions": "Unplug it.",
            }
        ),
        created_by="fw",
        now=now,
    )
    campaign = campaign_from_row(conn.execute(CAMPAIGN_BY_ID, (campaign_id,)).fetchone())
    notify_owners(conn, campaign, [device_id], "recall_notice", now, public_url=site)
    return conn.execute(
        "SELECT context->>'ack_url' FROM notices WHERE campaign_id = %s", (campaign_id,)
    ).fetchone()[0]


def test_dashboard_and_recall_page_answers_carry_security_headers(site, conn):
    for path in ("/dashboard/", "/dashboard/dashboard.js", "/dashboard/campaigns.js"):
        answer = httpx.get(f"{site}{path}")
        assert answer.status_code == 200, path
        policy = answer.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in policy and "script-src 'self'" in policy, path
        assert "'unsafe-inline'" not in policy and "'unsafe-eval'" not in policy, path
        assert answer.headers["referrer-policy"] == "no-referrer", path
        assert answer.headers["x-content-type-options"] == "nosniff", path
        assert answer.headers["x-frame-options"] == "DENY", path

    link = recall_link(conn, site, "cam-1")
    assert link.startswith(f"{site}/recall/")
    page = httpx.get(link)
    assert "I have read this notice" in page.text
    confirmed = httpx.post(link)  # the page again (the runner has not marked it notified)
    assert confirmed.status_code == 200
    unknown = httpx.get(f"{site}/recall/{'x' * 32}")
    assert unknown.status_code == 404
    for answer in (page, confirmed, unknown):
        policy = answer.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in policy and "default-src 'none'" in policy
        assert "form-action 'self'" in policy
        assert answer.headers["cache-control"] == "no-store"
        assert answer.headers["referrer-policy"] == "no-referrer"
        assert answer.headers["x-frame-options"] == "DENY"


_RELEASE_DAY = """
INSERT INTO release_daily (model_id, firmware, day, device_days, heartbeats, expected,
                           reboots, update_reboots, offline_s, battery_drop, battery_days,
                           incidents)
VALUES ('camera-v1', %s, %s, 400, 57600, 57600, %s, 0, 0, 0, 0, %s)
"""


def test_release_health_page_draws_a_bar_per_version_and_says_which_is_worse(
    page, site, conn, keys
):
    today = datetime.now(UTC).date()
    conn.execute(_RELEASE_DAY, ("2.4.1", today, 40, Jsonb({})))
    conn.execute(_RELEASE_DAY, ("2.5.0", today, 80, Jsonb({"offline": 2})))
    conn.execute(_RELEASE_DAY, ("<b>9.9</b>", today, 1, Jsonb({})))  # typed by someone: text
    open_dashboard(page, site, keys.firmware)
    page.click("#releases-link")
    page.select_option("#release-model", "camera-v1")
    expect(page.locator("#release-view")).to_be_visible()
    expect(page.locator("#fleet-view")).to_be_hidden()
    assert page.url.endswith("#releases=camera-v1")
    bars = page.locator('svg.bars[data-vital="reboots"] rect.bar')
    expect(bars).to_have_count(3)
    # Newest first (numbers, not text); 2.5.0 reboots twice as often as 2.4.1: worse.
    labels = page.locator('svg.bars[data-vital="reboots"] text')
    expect(labels.nth(0)).to_have_text("<b>9.9</b>")
    expect(labels.nth(2)).to_have_text("2.5.0")
    expect(labels.nth(3)).to_contain_text("\u00d72.00")  # the multiplication sign
    expect(labels.nth(3)).to_contain_text("vs 2.4.1: worse")
    expect(bars.nth(1)).to_have_class(re.compile("verdict-worse"))
    expect(page.locator('svg.bars[data-vital="incidents:offline"]')).to_have_count(1)
    expect(page.locator("#release-view b")).to_have_count(0)
    # Another window asks again and draws again.
    page.select_option("#release-window", "7")
    expect(page.locator('svg.bars[data-vital="reboots"] rect.bar')).to_have_count(3)
