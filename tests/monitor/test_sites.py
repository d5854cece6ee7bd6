"""Site and parent decisions (monitor/sites.py): pure, with plain datetimes."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from monitor.sites import (
    Member,
    SitePolicy,
    group_back,
    lead_device,
    parent_silent,
    settled,
    silent_together,
    site_silent,
)

T = datetime(2026, 12, 6, 14, 2, tzinfo=UTC)
S = timedelta(seconds=1)
POLICY = SitePolicy()


def member(device_id, ago, interval=60, **kw) -> Member:
    heard = None if ago is None else T - ago * S
    return Member(device_id, device_id, kw.pop("status", "online"), heard, interval, **kw)


# (the other member's last heard, seconds before T; its interval; now, seconds after T;
#  expected) with the trigger last heard at T - 10 s, interval 30 s.
@pytest.mark.parametrize(
    ("ago", "interval", "after", "expected"),
    [
        (20, 60, 110, True),  # quiet since before the trigger's window, missed a beat
        (45, 60, 110, True),
        (-100, 60, 110, False),  # heard 100 s after T: beating
        (400, 60, 110, None),  # down long before: not part of this event
        (20, 300, 110, False),  # not yet due a beat: not silent (in doubt, no)
        (None, 60, 110, None),  # never heard
    ],
)
def test_silent_together_reads_the_silence_windows(ago, interval, after, expected):
    trigger = member("panel", 10, 30)
    other = member("other", ago, interval)
    assert silent_together(other, trigger, T + after * S, POLICY) == expected


def test_a_standing_last_will_is_a_missed_beat_before_the_next_was_due():
    trigger = member("panel", 10, 30)
    other = member("other", 5, 60, will_at=T + 2 * S)
    assert silent_together(other, trigger, T + 20 * S, POLICY) is True
    assert silent_together(replace(other, will_at=None), trigger, T + 20 * S, POLICY) is False


def test_an_announced_sleep_is_not_a_missed_beat():
    trigger = member("panel", 10, 30)
    car = member("car", 20, 60, expected_at=T + 3600 * S)
    assert silent_together(car, trigger, T + 110 * S, POLICY) is False


HOME = ["panel", "thermo", "cam", "charger"]


@pytest.mark.parametrize(
    ("beating", "silent"),
    [
        ((), HOME),  # the router died: all four
        (("panel",), ["thermo", "cam", "charger"]),  # panel on its own mobile link: 3 of 4
        (("panel", "cam"), []),  # half the home beats: the internet works
        (("panel", "thermo", "charger"), []),  # only the camera died: its own alert
    ],
)
def test_a_site_is_silent_when_most_of_its_devices_stopped_together(beating, silent):
    members = [member(d, -100 if d in beating else 20) for d in HOME]
    trigger = member("x", 10, 30)
    now = T + 110 * S
    assert site_silent(members, trigger, now, POLICY) == silent


def test_devices_behind_a_hub_follow_it_and_do_not_count_for_the_site():
    # Hub and its two devices silent; camera and charger beat: a hub, not the internet.
    members = [
        member("hub", 10),
        member("a", 20, parent_id="hub"),
        member("b", 20, parent_id="hub"),
        member("cam", -100),
        member("charger", -100),
    ]
    assert site_silent(members, members[1], T + 250 * S, POLICY) == []
    # All top-level devices silent: the site, with the hub's devices named too.
    quiet = [member(m.device_id, 10, parent_id=m.parent_id) for m in members]
    assert site_silent(quiet, quiet[0], T + 250 * S, POLICY) == [m.device_id for m in quiet]


def test_a_hub_is_silent_when_it_missed_a_beat_with_its_device():
    child = member("a", 30)
    assert parent_silent(member("hub", 10), child, T + 210 * S, POLICY)
    assert not parent_silent(member("hub", -150), child, T + 210 * S, POLICY)
    assert parent_silent(member("hub", 10), member("hub", 10), T, POLICY)


def test_the_message_goes_as_a_critical_device_when_one_is_named():
    members = {"a": member("a", 1), "p": member("p", 1, critical=True)}
    assert lead_device(["a", "p"], members, "a") == "p"
    assert lead_device(["a"], members, "a") == "a"


def test_back_when_every_named_device_was_heard_since_and_settled_after_a_while():
    opened = T + 100 * S
    named = [member("a", -200), member("b", -300)]
    assert group_back(named, opened)
    stuck = [member("a", -200), member("b", 10, status="offline")]
    assert not group_back(stuck, opened)
    assert not settled(stuck, opened, T + 400 * S, POLICY)
    assert settled(stuck, opened, T + 500 * S, POLICY)
