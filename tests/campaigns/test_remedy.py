"""A safety recall's pure decisions: who is already fixed, follow-ups due, when it settles,
what the remedy says, and completion counts. Plain data and datetimes, no database."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
from pydantic import ValidationError

from campaigns.remedy import (
    DeviceFacts,
    completion,
    completion_rows,
    follow_up_due,
    is_fixed,
    recall_settled,
    remedy_text,
)
from campaigns.store import CampaignCreate

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)
SCHEDULE = [14 * 86400, 30 * 86400]


@pytest.mark.parametrize(
    ("firmware", "fixed_in", "fixed"),
    [
        ("2.5.0", ">=2.5.0", True),
        ("2.6.1", ">=2.5.0", True),
        ("2.4.9", ">=2.5.0", False),
        ("2.5.0-rc1", ">=2.5.0", False),  # a pre-release does not carry the fix
        ("garbage", ">=2.5.0", False),
        (None, ">=2.5.0", False),
        ("2.4.7", "==2.4.7 || >=2.5", False),  # not a range we read: see the next row
        ("2.4.7", ">=2.4.7,<2.5", True),
        ("3.0.0", "^2.5.0", False),
    ],
)
def test_a_device_is_fixed_only_on_a_version_in_the_fixed_range(firmware, fixed_in, fixed):
    if "||" in fixed_in:
        with pytest.raises(ValueError, match="not a firmware range"):
            is_fixed(firmware, fixed_in)
        return
    assert is_fixed(firmware, fixed_in) is fixed


@pytest.mark.parametrize(
    ("notified_at", "sent", "now", "due"),
    [
        (None, 0, T0 + 90 * DAY, False),  # never told: nothing to follow up
        (T0, 0, T0 + 14 * DAY - timedelta(seconds=1), False),
        (T0, 0, T0 + 14 * DAY, True),
        (T0, 1, T0 + 20 * DAY, False),  # the second waits for day 30
        (T0, 1, T0 + 30 * DAY, True),
        (T0, 2, T0 + 365 * DAY, False),  # the schedule is spent
    ],
)
def test_follow_ups_fall_due_on_their_schedule_after_the_first_notice(notified_at, sent, now, due):
    assert follow_up_due(notified_at, sent, SCHEDULE, now) is due


@pytest.mark.parametrize(
    ("all_open", "in_flight", "owed", "settled"),
    [(True, 0, 0, True), (False, 0, 0, False), (True, 1, 0, False), (True, 0, 5, False)],
)
def test_a_recall_settles_once_nothing_is_under_way_or_owed(all_open, in_flight, owed, settled):
    assert (
        recall_settled(all_waves_open=all_open, in_flight=in_flight, owed_follow_ups=owed)
        is settled
    )


def test_the_remedy_says_the_window_in_the_owners_own_zone_and_day():
    # 23:30 UTC on 1 Dec is already 2 Dec in Tokyo.
    start = datetime(2026, 12, 1, 23, 30, tzinfo=UTC)
    args = {
        "target_version": "2.5.0",
        "window_start": time(2, 0),
        "window_end": time(4, 0),
        "starts_at": start,
        "instructions": "Park it where it has mobile coverage.",
    }
    full, short = remedy_text("ota_update", timezone="Asia/Tokyo", **args)
    assert full == (
        "a free software update to version 2.5.0, installed over the air between 02:00 and "
        "04:00 your local time (Asia/Tokyo), from 02 Dec 2026. Park it where it has mobile "
        "coverage."
    )
    assert short == "software 2.5.0 over the air, 02:00-04:00 your time, from 02 Dec 2026"
    assert "from 01 Dec 2026" in remedy_text("ota_update", timezone="America/New_York", **args)[0]
    visit = remedy_text("service_visit", timezone="UTC", **args)
    assert visit == (
        "a free service visit. Park it where it has mobile coverage.",
        "a free service visit",
    )


def _facts(model, region, notified=None, acked=None, remedied=None, unreachable=False):
    return DeviceFacts(model, region, notified, acked, remedied, unreachable)


def test_completion_counts_by_model_and_region_and_day_by_day():
    facts = [
        _facts("Sedan", "north", T0, T0 + DAY, T0 + 2 * DAY),
        _facts("Sedan", "north", T0, None, None),
        _facts("Sedan", "south", None, None, T0),  # already fixed: remedied, never told
        _facts("Van", "north", None, None, None, unreachable=True),
    ]
    now = T0 + 2 * DAY + timedelta(hours=1)
    result = completion(facts, T0, now)
    assert result.total.as_dict() == {
        "devices": 4,
        "notified": 2,
        "acknowledged": 1,
        "remedied": 2,
        "unreachable": 1,
        "remedied_pct": 50.0,
    }
    groups = {k: c.as_dict() for k, c in result.by_group.items()}
    assert groups[("Sedan", "north")]["remedied"] == 1
    assert groups[("Van", "north")]["unreachable"] == 1
    days = [(d, c.remedied, c.acknowledged) for d, c in result.over_time]
    assert days == [
        (date(2026, 12, 1), 1, 0),
        (date(2026, 12, 2), 1, 1),
        (date(2026, 12, 3), 2, 1),
    ]
    rows = completion_rows(result)
    assert rows[-1] == ("all", "all", 4, 2, 1, 2, 1, 50.0)
    assert sum(r[2] for r in rows[:-1]) == 4  # the groups add up to the total


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"remedy": None}, "remedy"),
        ({"safety_critical": None}, "safety_critical"),
        ({"artifact_url": None}, "artifact_url"),
        ({"fixed_in": "not a range"}, "firmware range"),
        ({"kind": "ota_update"}, "safety recall's"),
        ({"instructions": None}, "instructions"),
    ],
)
def test_a_safety_recall_spec_is_refused_with_a_clear_reason(change, error):
    body = {
        "name": "Brake software recall",
        "kind": "safety_recall",
        "remedy": "ota_update",
        "target": {"models": ["car-v1"]},
        "target_version": "2.5.0",
        "artifact_url": "https://updates.example.com/car/2.5.0.bin",
        "artifact_sha256": "ab" * 32,
        "safe_to_use": True,
        "safety_critical": True,
        "instructions": "Keep it parked in coverage overnight.",
    }
    spec = CampaignCreate.model_validate(body)
    assert spec.fixed_in == ">=2.5.0"  # the target version and later, unless told
    with pytest.raises(ValidationError, match=error):
        CampaignCreate.model_validate({**body, **change})
