"""A device's card in words (portal/cards.py): pure, with plain datetimes."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from alerts.templates import HEALTH_WHAT_TO_DO, WHAT_TO_DO
from portal.cards import (
    NOT_WATCHED,
    DeviceRow,
    OpenIncident,
    device_card,
    group_by_place,
    local_time,
    signal_words,
)

# Friday 4 Dec 2026, 15:00 in Berlin.
NOW = datetime(2026, 12, 4, 14, 0, tzinfo=UTC)
BERLIN = "Europe/Berlin"
PANEL = DeviceRow(
    id="panel-1",
    name="Alarm panel",
    device_type="alarm_panel",
    model_name="Alarm panel v3",
    status="online",
    status_changed_at=NOW - timedelta(hours=2),
    last_seen_at=NOW - timedelta(minutes=1),
    firmware="3.1.0",
    last_metrics={"battery_pct": 81.6, "rssi_dbm": -58.2},
)


@pytest.mark.parametrize(
    ("at", "timezone", "expected"),
    [
        (NOW - timedelta(minutes=58), BERLIN, "14:02"),
        (NOW - timedelta(minutes=58), "America/New_York", "08:02"),
        (NOW - timedelta(days=1), BERLIN, "Thu 15:00"),
        (NOW - timedelta(days=20), BERLIN, "14 Nov 15:00"),
        (NOW - timedelta(days=400), BERLIN, "30 Oct 2025"),
        # Just past midnight in Berlin is yesterday evening in UTC: the customer's day counts.
        (datetime(2026, 12, 3, 23, 30, tzinfo=UTC), BERLIN, "00:30"),
    ],
)
def test_times_are_said_in_the_customers_timezone(at, timezone, expected):
    assert local_time(at, timezone, NOW) == expected


@pytest.mark.parametrize(
    ("rssi", "expected"),
    [(None, None), (-50, "good (-50 dBm)"), (-75.4, "fair (-75 dBm)"), (-91, "weak (-91 dBm)")],
)
def test_signal_in_words(rssi, expected):
    assert signal_words(rssi) == expected


# (status, open incident kinds, status text, what to do)
STATUS_ROWS = [
    ("online", (), "Online", None),
    ("offline", ("offline",), "Offline since 14:02", WHAT_TO_DO["alarm_panel"]),
    ("never_seen", ("never_seen",), "Has not connected yet", WHAT_TO_DO["alarm_panel"]),
    ("provisioned", (), "Waiting for its first connection", None),
    (
        "degraded",
        ("low_battery",),
        "Battery low since 14:02",
        HEALTH_WHAT_TO_DO["device_low_battery"],
    ),
    # A health rule without advice of its own: the device kind's.
    (
        "degraded",
        ("flaky_link",),
        "Connection keeps dropping since 14:02",
        WHAT_TO_DO["alarm_panel"],
    ),
    ("degraded", (), "Needs attention since 14:02", WHAT_TO_DO["alarm_panel"]),
]


@pytest.mark.parametrize(("status", "kinds", "text", "what_to_do"), STATUS_ROWS)
def test_status_in_words_and_what_to_do(status, kinds, text, what_to_do):
    incidents = tuple(
        OpenIncident(n + 1, kind, "warning", NOW - timedelta(minutes=58))
        for n, kind in enumerate(kinds)
    )
    row = replace(
        PANEL,
        status=status,
        status_changed_at=NOW - timedelta(minutes=58),
        open_incidents=incidents,
    )
    card = device_card(row, BERLIN, NOW)
    assert card["status_text"] == text
    assert card["what_to_do"] == what_to_do
    assert card["problem"] is (what_to_do is not None)
    assert card["incident_id"] == (1 if kinds else None)


def test_card_shows_battery_signal_firmware_and_kind():
    card = device_card(PANEL, BERLIN, NOW)
    assert card["battery_pct"] == 82 and card["battery_low"] is False
    assert card["signal"] == "good (-58 dBm)"
    assert card["firmware"] == "3.1.0" and card["kind_name"] == "alarm panel"
    bare = device_card(replace(PANEL, last_metrics={"battery_pct": True}), BERLIN, NOW)
    assert bare["battery_pct"] is None and bare["signal"] is None


def test_the_most_serious_open_incident_is_the_one_linked():
    incidents = (
        OpenIncident(7, "low_battery", "warning", NOW),
        OpenIncident(9, "offline", "critical", NOW),
    )
    card = device_card(replace(PANEL, status="offline", open_incidents=incidents), BERLIN, NOW)
    assert card["incident_id"] == 9 and card["battery_low"] is True


def test_a_device_off_on_purpose_is_no_problem():
    row = replace(PANEL, status="offline", watching=False)
    card = device_card(row, BERLIN, NOW)
    assert card["status_text"] == NOT_WATCHED
    assert card["problem"] is False and card["what_to_do"] is None


def test_a_snooze_shows_until_it_is_over():
    row = replace(PANEL, snoozed_until=NOW + timedelta(hours=3))
    assert device_card(row, BERLIN, NOW)["snooze_text"] == "Alerts paused until 18:00"
    assert device_card(row, BERLIN, NOW + timedelta(hours=4))["snooze_text"] is None


def test_groups_by_place_named_first_problems_first():
    def card(device_id, place, problem):
        return {"id": device_id, "name": device_id, "place": place, "problem": problem}

    groups = group_by_place(
        [
            card("b", None, False),
            card("a", None, False),
            card("z", None, True),
            card("cabin-1", "cabin", False),
            card("flat-1", "Attic flat", False),
        ]
    )
    assert [g["place"] for g in groups] == ["Attic flat", "cabin", None]
    assert [c["id"] for c in groups[-1]["devices"]] == ["z", "a", "b"]
