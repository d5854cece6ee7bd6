"""Which channels a notification goes to, and when: a pure function of data and `now`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from alerts.templates import TEMPLATES

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


def is_urgent(*, severity: str, critical_device: bool, campaign_notice: bool) -> bool:
    """A message its owner must have at once, whatever the hour or snooze: a critical
    incident on a critical device (an alarm panel offline), or a critical campaign notice
    (a safety recall). It is marked urgent and says so (alerts/render.py)."""
    return severity == "critical" and (critical_device or campaign_notice)


def route(
    *,
    severity: str,
    urgent: bool,
    prefs: CustomerPrefs,
    channels: list[Channel],
    now: datetime,
) -> list[Delivery]:
    """The deliveries for one customer notification.

    Channels below their minimum severity are skipped. Quiet hours hold a notification
    until they end, except an urgent one (is_urgent).
    """
    hold_until = None if urgent else quiet_hours_end(prefs, now)
    due = hold_until or now
    return [
        Delivery(ch.id, due)
        for ch in channels
        if ch.enabled and SEVERITY_RANK[severity] >= SEVERITY_RANK[ch.min_severity]
    ]


@dataclass(frozen=True)
class IncidentView:
    """What the router needs to know of the incident a notice is about."""

    status: str
    # A member of an open group incident (a fleet outage)...
    in_outage: bool = False
    # ...whose owners are being told that we know about it.
    outage_told: bool = False
    # What that outage is, in words ("30 devices in region north went offline at once").
    outage: str | None = None
    # A message about the problem reached (or is on its way to) the owner.
    owner_told: bool = False
    # ...a group whose own message names this device (a site or a hub: monitor/sites.py),
    # critical devices included: that message carries their urgency.
    covered: bool = False


@dataclass(frozen=True)
class Fate:
    """What becomes of a notice: queued (perhaps held, perhaps as another template) or not."""

    template: str | None
    held: bool = False
    # Why it was dropped or held, for the notice's record.
    reason: str = ""


def notice_fate(
    template: str, audience: str, incident: IncidentView | None, *, critical: bool = False
) -> Fate:
    """The one rule for every owner's message about an incident (templates say what each is
    about, alerts/templates.py):

    - about a problem that is over: dropped;
    - a recovery the owner never heard the problem of: dropped;
    - held back by an outage the device is part of, or, once owners are told of the
      outage, sent as that message instead;
    - but never held when `critical` (a critical incident on a critical device, an alarm
      panel): it goes at once, saying that many devices went offline together;
    - unless the group's own message names the device (a site or a hub): held always, the
      group's message is critical and goes at once in its place.
    Staff messages and notices without an incident always go.
    """
    if audience != "owner" or incident is None:
        return Fate(template)
    spec = TEMPLATES[template]
    if spec.about == "problem" and incident.status == "resolved":
        return Fate(None, reason="incident resolved")
    if spec.about == "recovery" and not incident.owner_told:
        return Fate(None, reason="owner never told of the problem")
    if spec.in_outage and incident.in_outage:
        if incident.covered:
            return Fate(template, held=True, reason="held by its site")
        if critical and spec.critical_in_outage:
            return Fate(spec.critical_in_outage)
        if incident.outage_told:
            return Fate(spec.in_outage)
        return Fate(template, held=True, reason="held by an outage")
    return Fate(template)
