"""Which channels a notification goes to, and when: a pure function of data and `now`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}


@dataclass(frozen=True)
class Channel:
    id: int
    kind: str
    min_severity: str
    enabled: bool = True


@dataclass(frozen=True)
class CustomerPrefs:
    timezone: str
    quiet_hours_start: time | None = None
    quiet_hours_end: time | None = None


@dataclass(frozen=True)
class Delivery:
    channel_id: int
    due_at: datetime


def quiet_hours_end(prefs: CustomerPrefs, now: datetime) -> datetime | None:
    """When the customer's quiet hours end, if `now` falls inside them; else None."""
    start, end = prefs.quiet_hours_start, prefs.quiet_hours_end
    if start is None or end is None or start == end:
        return None
    local = now.astimezone(ZoneInfo(prefs.timezone))
    t = local.time()
    inside = start <= t < end if start < end else (t >= start or t < end)
    if not inside:
        return None
    end_day = local.date() if t < end else local.date() + timedelta(days=1)
    return datetime.combine(end_day, end, tzinfo=local.tzinfo)


def route(
    *,
    severity: str,
    critical_device: bool,
    prefs: CustomerPrefs,
    channels: list[Channel],
    now: datetime,
) -> list[Delivery]:
    """The deliveries for one customer notification.

    Channels below their minimum severity are skipped. Quiet hours hold a notification
    until they end, except a critical incident on a critical device (an alarm panel).
    """
    hold_until = None
    if not (critical_device and severity == "critical"):
        hold_until = quiet_hours_end(prefs, now)
    due = hold_until or now
    return [
        Delivery(ch.id, due)
        for ch in channels
        if ch.enabled and SEVERITY_RANK[severity] >= SEVERITY_RANK[ch.min_severity]
    ]
