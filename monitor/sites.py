"""Site and parent correlation decisions: is this silence a whole place, or a hub?

Pure functions of the members' last-heard times and `now`; the I/O is in
monitor/site_watch.py.

When a home's router dies at T, every device in it stops at T, but the monitor learns of
it device by device: each one's deadline is its last heartbeat plus its own allowance
(interval * misses + grace), so the alarm panel's comes first and the EV charger's minutes
later. We do not wait for the slowest deadline. At the first one, each other member's
*silence window* is read from what is stored:

    last heard ──── interval + slack ────┐
    |<---------- it went quiet somewhere in here --------->|

A member is silent together with the device whose deadline passed when it has missed at
least one heartbeat (now is past its window, or its Last Will stands) and the two windows
overlap: both can have
stopped at the same moment, within `slack` seconds. A member heard after the other's
window is still beating; one whose window ended before the other's began was down before
(its own problem, left out of the count); one that has not yet missed a beat (a long
interval, an announced sleep) is not counted as silent: when in doubt, no site.

The site is silent when, of its devices that are not behind a parent of the same site
(those follow their hub, they say nothing about the internet), at least `min_devices` and
`min_pct` percent are silent together. 75% by default: a home of four whose alarm panel
keeps beating over its own mobile link is still a home without internet; a home of three
with one device still beating over Wi-Fi is not.

A parent (hub, gateway) is silent when it has missed a beat: its devices behind it are
its news, whether its own deadline or a child's came first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

DOWN = ("offline", "never_seen")


@dataclass(frozen=True, slots=True)
class Member:
    """A device of a site or behind a parent, as the monitor reads it."""

    device_id: str
    name: str
    status: str
    last_heard: datetime | None
    # Its model's heartbeat interval: the longest it may be quiet while healthy.
    interval_s: int
    site_id: str | None = None
    parent_id: str | None = None
    critical: bool = False
    # An announced check-in (contract 1.1): quiet until then is not a missed beat.
    expected_at: datetime | None = None
    # Its Last Will, standing since then (the broker saw its connection die).
    will_at: datetime | None = None


@dataclass(frozen=True)
class SitePolicy:
    min_pct: float = 75.0
    min_devices: int = 2
    slack_s: int = 5
    # Some devices back, the rest not: after this long, the rest get their own alerts.
    settle_s: int = 300


def silence_window(m: Member, policy: SitePolicy) -> tuple[datetime, datetime] | None:
    """When it may have gone quiet: from its last heartbeat to when the next was due."""
    if m.last_heard is None:
        return None
    return m.last_heard, m.last_heard + timedelta(seconds=m.interval_s + policy.slack_s)


def missed_a_beat(m: Member, now: datetime, policy: SitePolicy) -> bool:
    """It should have been heard from again by `now` and was not (or its Last Will, newer
    than its last heartbeat, says its connection died)."""
    window = silence_window(m, policy)
    if window is None:
        return False
    if m.will_at is not None and m.last_heard <= m.will_at <= now:
        return True
    if now < window[1]:
        return False
    return m.expected_at is None or now >= m.expected_at


def silent_together(m: Member, trigger: Member, now: datetime, policy: SitePolicy) -> bool | None:
    """True: silent since the trigger's moment; False: still beating; None: down before
    the trigger went quiet, or never heard (not part of this event, nor counted)."""
    mine, theirs = silence_window(m, policy), silence_window(trigger, policy)
    if mine is None or theirs is None:
        return None
    if mine[1] < theirs[0]:
        return None
    if mine[0] > theirs[1]:
        return False
    if m.device_id == trigger.device_id:
        return True
    return missed_a_beat(m, now, policy)


def site_silent(
    members: list[Member], trigger: Member, now: datetime, policy: SitePolicy
) -> list[str]:
    """The devices a site's silence takes down (empty: the site is not silent).

    `members` are the site's devices; `trigger` the one whose deadline just passed.
    """
    ids = {m.device_id for m in members}
    top = [m for m in members if m.parent_id not in ids]
    verdicts = {m.device_id: silent_together(m, trigger, now, policy) for m in top}
    counted = [d for d, v in verdicts.items() if v is not None]
    silent = [d for d, v in verdicts.items() if v]
    if len(silent) < policy.min_devices or len(silent) * 100 < policy.min_pct * len(counted):
        return []
    # Behind a silent parent, or silent with it themselves.
    down = set(silent)
    for m in members:
        if m.device_id not in down and (
            m.parent_id in down or silent_together(m, trigger, now, policy)
        ):
            down.add(m.device_id)
    return [m.device_id for m in members if m.device_id in down]


def parent_silent(parent: Member, trigger: Member, now: datetime, policy: SitePolicy) -> bool:
    """Whether a hub is down with (or as) the device whose deadline just passed."""
    if parent.device_id == trigger.device_id or parent.status in DOWN:
        return True
    return bool(silent_together(parent, trigger, now, policy))


def lead_device(device_ids: list[str], members: dict[str, Member], first: str) -> str:
    """The device a group's message goes out as: a critical one if any (its urgency, an
    alarm panel's, is the message's), else `first`."""
    for d in device_ids:
        if members[d].critical:
            return d
    return first


def group_back(named: list[Member], opened_at: datetime) -> bool:
    """Every device the group named has been heard from since it opened, and none is down."""
    return all(
        m.status not in DOWN and m.last_heard is not None and m.last_heard >= opened_at
        for m in named
    )


def settled(named: list[Member], opened_at: datetime, now: datetime, policy: SitePolicy) -> bool:
    """Some are back and the rest have had `settle_s` to follow: what is still down is its
    own problem now (the group resolves and their own alerts go)."""
    back = [
        m.last_heard
        for m in named
        if m.status not in DOWN and m.last_heard is not None and m.last_heard >= opened_at
    ]
    return bool(back) and now - min(back) >= timedelta(seconds=policy.settle_s)
