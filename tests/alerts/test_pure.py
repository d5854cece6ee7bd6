"""Routing, templates, redaction and backoff: pure functions, plain data."""

from datetime import UTC, datetime, time, timedelta

import pytest

from alerts.context import DeviceInfo, device_context, duration_text
from alerts.dispatcher import backoff
from alerts.redact import redact_url, scrub
from alerts.routing import Channel, CustomerPrefs, IncidentView, notice_fate, quiet_hours_end, route
from alerts.templates import render, render_digest

BERLIN_NIGHT = datetime(2026, 11, 25, 22, 30, tzinfo=UTC)  # 23:30 in Berlin
BERLIN_DAY = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
QUIET = CustomerPrefs("Europe/Berlin", time(22, 0), time(7, 0))
EMAIL = Channel(1, "email", "info")
SMS = Channel(2, "sms", "critical")


@pytest.mark.parametrize(
    ("now", "prefs", "expected_end"),
    [
        (BERLIN_DAY, QUIET, None),
        (BERLIN_NIGHT, QUIET, datetime(2026, 11, 26, 6, 0, tzinfo=UTC)),  # 07:00 Berlin
        (datetime(2026, 11, 26, 5, 0, tzinfo=UTC), QUIET, datetime(2026, 11, 26, 6, 0, tzinfo=UTC)),
        (BERLIN_NIGHT, CustomerPrefs("Europe/Berlin"), None),
        # Same-day window, in New York.
        (
            datetime(2026, 11, 25, 18, 0, tzinfo=UTC),
            CustomerPrefs("America/New_York", time(12), time(14)),
            datetime(2026, 11, 25, 19, 0, tzinfo=UTC),
        ),
    ],
)
def test_quiet_hours_in_the_customers_timezone(now, prefs, expected_end):
    assert quiet_hours_end(prefs, now) == expected_end


def test_route_respects_severity_and_quiet_hours_with_critical_override():
    day = route(
        severity="warning",
        urgent=False,
        prefs=QUIET,
        channels=[EMAIL, SMS],
        now=BERLIN_DAY,
    )
    assert [(d.channel_id, d.due_at) for d in day] == [(1, BERLIN_DAY)]

    night = route(severity="warning", urgent=False, prefs=QUIET, channels=[EMAIL], now=BERLIN_NIGHT)
    assert night[0].due_at == datetime(2026, 11, 26, 6, 0, tzinfo=UTC)

    alarm = route(
        severity="critical",
        urgent=True,
        prefs=QUIET,
        channels=[EMAIL, SMS],
        now=BERLIN_NIGHT,
    )
    assert [(d.channel_id, d.due_at) for d in alarm] == [(1, BERLIN_NIGHT), (2, BERLIN_NIGHT)]

    off = route(
        severity="critical",
        urgent=True,
        prefs=QUIET,
        channels=[Channel(3, "push", "info", enabled=False)],
        now=BERLIN_DAY,
    )
    assert off == []


PANEL = DeviceInfo(
    "ap-7",
    "Hallway",
    "SN-77",
    None,
    "alarm_panel",
    "Alarm panel v3",
    True,
    "cust-1",
    "Ann",
    "Europe/Berlin",
)
CAR = DeviceInfo(
    "car-1",
    None,
    None,
    "1HGCM82633A004352",
    "car",
    "Car telematics unit v1",
    False,
    "cust-1",
    "Ann",
    "Europe/Berlin",
)


def test_offline_message_names_exactly_this_device():
    ctx = device_context(PANEL, since=datetime(2026, 11, 25, 13, 2, tzinfo=UTC))
    title, body = render("device_offline", ctx)
    assert title == "Your alarm panel Hallway went offline"
    assert "Alarm panel v3, serial SN-77" in body
    assert "14:02 on 25 Nov 2026 (Europe/Berlin)" in body
    assert "Your home may not be protected" in body
    assert "Hello Ann" in body


def test_back_online_message_gives_the_downtime_and_car_by_vin():
    since = datetime(2026, 11, 25, 13, 2, tzinfo=UTC)
    ctx = device_context(CAR, since=since, back=since + timedelta(hours=2, minutes=5))
    title, body = render("device_back_online", ctx)
    assert title == "Your car car-1 is back online"
    assert "VIN 1HGCM82633A004352" in body and "offline for 2 h 5 min" in body


def test_digest_lists_every_device_once():
    since = datetime(2026, 11, 25, 13, 2, tzinfo=UTC)
    items = [("device_offline", device_context(d, since=since)) for d in (PANEL, CAR)]
    title, body = render_digest(items)
    assert title == "2 of your devices are offline"
    assert body.count("- Hallway") == 1 and body.count("- car-1") == 1
    assert "What to do:" in body


@pytest.mark.parametrize(
    ("span", "text"),
    [
        (timedelta(seconds=30), "under a minute"),
        (timedelta(minutes=4), "4 min"),
        (timedelta(hours=2, minutes=5), "2 h 5 min"),
        (timedelta(days=1, minutes=1), "1 d 1 min"),
    ],
)
def test_duration_text(span, text):
    assert duration_text(span) == text


SECRET_URLS = [
    ("twilio://ACabc123:tok3nSecret@+15551234567/+15557654321", ["tok3nSecret", "ACabc123"]),
    ("mailto://user:hunter22@mail.example.com?to=a@example.com", ["hunter22", "a@example.com"]),
    ("ntfy://ntfy.example.com/secret-topic-123", ["secret-topic-123"]),
    ("tgram://123456789:ABCdefGHIjkl/98765", ["ABCdefGHIjkl", "123456789"]),
]


@pytest.mark.parametrize(("url", "secrets"), SECRET_URLS)
def test_secrets_never_survive_redaction(url, secrets):
    shown = redact_url(url)
    message = scrub(f"connection to {url} failed; token {secrets[0]} refused", url)
    for secret in secrets:
        assert secret not in shown
        assert secret not in message


def test_backoff_grows_and_is_capped():
    waits = [backoff(n, 5, 900).total_seconds() for n in range(1, 10)]
    assert waits[:4] == [5, 10, 20, 40] and waits[-1] == 900


@pytest.mark.parametrize(
    ("template", "incident", "critical", "expected"),
    [
        ("device_offline", None, False, ("device_offline", False)),
        ("device_offline", IncidentView("open"), False, ("device_offline", False)),
        # A problem that is over is never sent; a recovery only to an owner who was told.
        ("device_offline", IncidentView("resolved"), False, (None, False)),
        ("device_back_online", IncidentView("resolved"), False, (None, False)),
        (
            "device_back_online",
            IncidentView("resolved", owner_told=True),
            False,
            ("device_back_online", False),
        ),
        # An outage holds the alert, then turns it into "we know" once owners are told...
        ("device_offline", IncidentView("open", in_outage=True), False, ("device_offline", True)),
        (
            "device_offline",
            IncidentView("open", in_outage=True, outage_told=True),
            False,
            ("device_offline_known_outage", False),
        ),
        # ...but never holds a critical device: it goes at once, with the outage in it.
        (
            "device_offline",
            IncidentView("open", in_outage=True),
            True,
            ("device_offline_during_outage", False),
        ),
        (
            "device_offline",
            IncidentView("open", in_outage=True, outage_told=True),
            True,
            ("device_offline_during_outage", False),
        ),
        # A health problem is not held by an outage.
        (
            "device_low_battery",
            IncidentView("open", in_outage=True),
            False,
            ("device_low_battery", False),
        ),
        # A site or hub names the device in its own message: held, a critical one too.
        (
            "device_offline",
            IncidentView("open", in_outage=True, covered=True),
            True,
            ("device_offline", True),
        ),
    ],
)
def test_notice_fate(template, incident, critical, expected):
    fate = notice_fate(template, "owner", incident, critical=critical)
    assert (fate.template, fate.held) == expected


def test_staff_notices_always_go():
    assert notice_fate("fleet_outage_resolved", "staff", IncidentView("resolved")).template == (
        "fleet_outage_resolved"
    )
