"""Release health as pure functions: versions, baselines, verdicts, the digest's decision."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from releases.digest import compose_digest, digest_days, digest_due
from releases.health import DailyRow, baselines, release_health, version_key, window
from releases.rollup import SETTLE, next_step


def day_row(firmware, day, device_days, reboots, incidents=None, **over):
    fields = dict(
        heartbeats=device_days * 144,
        expected=device_days * 144,
        update_reboots=0,
        offline_s=0.0,
        battery_drop=0.0,
        battery_days=0,
    )
    fields.update(over)
    return DailyRow(
        firmware, day, device_days, reboots=reboots, incidents=incidents or {}, **fields
    )


def vital(version, name):
    return next(v for v in version.vitals if v.name == name)


def test_versions_order_by_their_numbers_not_their_text():
    assert sorted(["2.10.0", "2.9.1", "2.9.0-rc1", "10.0"], key=version_key) == [
        "2.9.0-rc1",
        "2.9.1",
        "2.10.0",
        "10.0",
    ]
    assert baselines(["2.10.0", "2.9.1", "1.0"]) == {"1.0": None, "2.9.1": "1.0", "2.10.0": "2.9.1"}


def test_a_version_rebooting_twice_as_often_is_worse_with_an_interval_excluding_one():
    rows = [day_row("1.0.0", date(2026, 11, d), 100, 10) for d in range(1, 31)] + [
        day_row("1.1.0", date(2026, 11, d), 100, 20) for d in range(1, 31)
    ]
    newest, oldest = release_health(rows)
    assert (newest.firmware, newest.baseline, oldest.baseline) == ("1.1.0", "1.0.0", None)
    reboots = vital(newest, "reboots")
    assert reboots.rate == pytest.approx(0.2) and newest.device_days == 3000
    assert reboots.ratio.estimate == pytest.approx(2.0)
    assert reboots.ratio.low > 1.0 and reboots.verdict == "worse"
    assert vital(oldest, "reboots").verdict == "no baseline"


def test_an_equal_version_reads_unclear():
    rows = [
        day_row("1.0.0", date(2026, 11, 1), 300, 30),
        day_row("1.1.0", date(2026, 11, 1), 300, 31),
    ]
    reboots = vital(release_health(rows)[0], "reboots")
    assert reboots.ratio.low < 1.0 < reboots.ratio.high and reboots.verdict == "unclear"


def test_more_heartbeats_received_is_better_and_incidents_are_per_kind():
    rows = [
        day_row("1.0.0", date(2026, 11, 1), 1000, 0, heartbeats=100_000, expected=144_000),
        day_row(
            "1.1.0",
            date(2026, 11, 1),
            1000,
            0,
            {"offline": 40},
            heartbeats=140_000,
            expected=144_000,
        ),
    ]
    newest = release_health(rows)[0]
    assert vital(newest, "heartbeats").verdict == "better"
    offline = vital(newest, "incidents:offline")
    assert offline.rate == pytest.approx(40.0)  # per 1,000 device-days
    assert offline.ratio.estimate is None and offline.verdict == "worse"
    # No reboots on either side: nothing to compare.
    assert vital(newest, "reboots").verdict == "no events"


def test_the_window_ends_today():
    assert window(datetime(2026, 12, 6, 17, tzinfo=UTC), 30) == (
        date(2026, 11, 7),
        date(2026, 12, 6),
    )


MONDAY_8 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("now", "last_week", "expected"),
    [
        (MONDAY_8.replace(hour=7, minute=59), None, None),  # not yet
        (MONDAY_8, None, date(2026, 11, 30)),  # due
        (MONDAY_8, date(2026, 11, 30), None),  # sent already
        (datetime(2026, 12, 3, 12, tzinfo=UTC), date(2026, 11, 23), date(2026, 11, 30)),  # late
        (datetime(2026, 12, 6, 23, tzinfo=UTC), date(2026, 11, 30), None),  # once a week
    ],
)
def test_the_digest_is_due_weekly_once(now, last_week, expected):
    assert digest_due(now, last_week, weekday=1, hour=8) == expected


def test_the_digest_says_what_is_worse_and_warns():
    rows = [day_row("1.0.0", date(2026, 11, d), 100, 10) for d in range(23, 30)] + [
        day_row("1.1.0", date(2026, 11, d), 100, 20) for d in range(23, 30)
    ]
    first, last = digest_days(MONDAY_8)
    assert (first, last) == (date(2026, 11, 23), date(2026, 11, 29))
    severity, context = compose_digest({"camera-v1": release_health(rows)}, first, last)
    assert severity == "warning"
    assert context["release_summary"].startswith("1 vitals worse, 0 better")
    assert (
        "camera-v1 1.1.0 vs 1.0.0 (700 device-days): unexpected reboots"
        in context["release_report"]
    )
    assert "x2.00" in context["release_report"]
    quiet = compose_digest({}, first, last)
    assert quiet[0] == "info" and quiet[1]["release_summary"] == "no firmware data in the week"


NOON = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("rolled_to", "horizon", "expected"),
    [
        # A fresh database starts at the day's start a week back, one 15-minute step...
        (
            None,
            NOON,
            (datetime(2026, 11, 29, tzinfo=UTC), datetime(2026, 11, 29, 0, 15, tzinfo=UTC), True),
        ),
        # Caught up: the last step stops SETTLE short of now.
        (NOON - timedelta(minutes=5), NOON, (NOON - timedelta(minutes=5), NOON - SETTLE, False)),
        # The ingests have proven less than now: the step stops short of their watermark.
        (
            NOON - timedelta(hours=1),
            NOON - timedelta(minutes=50),
            (NOON - timedelta(hours=1), NOON - timedelta(minutes=52), False),
        ),
        # Nothing settled since the last step.
        (NOON - SETTLE, NOON, None),
    ],
)
def test_next_step_reads_settled_heartbeats_in_short_steps(rolled_to, horizon, expected):
    # (heartbeats since long before the backfill window)
    step = next_step(rolled_to, horizon, NOON, earliest=NOON - timedelta(days=30))
    assert (step and (step.start, step.end, step.more)) == expected


def test_a_fresh_install_starts_at_its_first_heartbeat_or_not_at_all():
    # ...from the day of the first heartbeat when that is later...
    step = next_step(None, NOON, NOON, earliest=NOON - timedelta(hours=3))
    assert (step.start, step.end) == (
        datetime(2026, 12, 6, tzinfo=UTC),
        datetime(2026, 12, 6, 0, 15, tzinfo=UTC),
    )
    # ...and with no heartbeat at all, no step: nothing to walk through.
    assert next_step(None, NOON, NOON, earliest=None) is None
