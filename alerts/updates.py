"""Staff's updates to customers, and what keeps support from going mute while an outage lasts.

    update_notices     one notice per owner an update concerns (a device incident's owner;
                       the owners of a fleet outage's members still open), each naming the
                       owner's devices in it: one message, however many devices they have
    outage_reminders   the same shape for a lasting outage's reminder: staff's latest update,
                       or that we are still on it (when: alerts/escalation.py)
    nudge_due          pure: the next update staff promised did not come in time
    review_promises    the escalation job's pass: nudge staff once for each broken promise

The timeline lines are the incident lifecycle's (incidents/updates.py); the router routes
these notices like any other (quiet hours, channels by severity, the hourly limit), names
the devices from their registry rows, and cancels them once the incident is over.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg

import incidents
from alerts.context import duration_text, local_time
from alerts.notices import Notice, record_notices, to_owner, to_staff

log = logging.getLogger(__name__)

# Each owner's devices the incident concerns: the device incident's own, or a fleet
# outage's members still open (a device back already heard "back online"). One row per
# owner: an outage of 10,000 devices over 4,000 owners is 4,000 notices.
_AFFECTED = """
SELECT d.customer_id, array_agg(d.id ORDER BY d.id), array_agg(i.id ORDER BY d.id),
       coalesce(c.timezone, (array_agg(d.timezone ORDER BY d.id))[1])
FROM incidents i
JOIN devices d ON d.id = i.device_id
LEFT JOIN customers c ON c.id = d.customer_id
WHERE i.status <> 'resolved' AND d.customer_id IS NOT NULL
  AND ((i.id = %(id)s AND i.scope = 'device') OR i.fleet_incident_id = %(id)s)
GROUP BY d.customer_id, c.timezone
ORDER BY d.customer_id
"""

# Open incidents with a promise not yet checked (a partial index keeps these few).
_PROMISED = """
SELECT id, device_id, status, summary, next_update_at, last_update_at, update_nudged_at
FROM incidents
WHERE next_update_at IS NOT NULL AND update_nudged_at IS NULL AND status <> 'resolved'
ORDER BY next_update_at
"""

STILL_ON_IT = (
    "Our engineers are working on it. It is not your equipment, and there is nothing you "
    "need to do."
)
KEEP_POSTED = "We will keep you posted, and tell you when your devices are back online."


@dataclass(frozen=True, slots=True)
class Affected:
    """One owner an incident concerns, with their devices in it (sorted), those devices'
    incidents (in the same order) and the owner's timezone."""

    customer_id: str
    device_ids: list[str]
    incident_ids: list[int]
    timezone: str


def affected_owners(conn: psycopg.Connection, incident_id: int) -> list[Affected]:
    return [Affected(*row) for row in conn.execute(_AFFECTED, {"id": incident_id})]


def message_severity(incident_severity: str) -> str:
    """Staff's words are never an alarm: info or warning, so they keep to quiet hours."""
    return "info" if incident_severity == "info" else "warning"


def next_update_text(next_update_at: datetime | None, timezone: str, now: datetime) -> str:
    """The promise in the owner's words and timezone; a promise already past is not repeated."""
    if next_update_at is None or next_update_at <= now:
        return KEEP_POSTED
    return f"Our next update will come by {local_time(next_update_at, timezone)}."


def update_notices(
    conn: psycopg.Connection, posted: incidents.PostedUpdate, now: datetime
) -> list[Notice]:
    """One notice per owner the update concerns, about their first device's own incident:
    what became of the message is on the owner's incident page (not ten thousand lines on
    the outage's), and it is cancelled if that device is back before it can go out."""
    severity = message_severity(posted.severity)
    return [
        to_owner(
            "incident_update",
            severity,
            owner.device_ids[0],
            incident_id=owner.incident_ids[0],
            context={
                "update_text": posted.text,
                "next_update_text": next_update_text(posted.next_update_at, owner.timezone, now),
                # The router names these from their rows, those still the recipient's only.
                "device_ids": owner.device_ids,
            },
        )
        for owner in affected_owners(conn, posted.incident_id)
    ]


def outage_reminders(
    conn: psycopg.Connection,
    outage_id: int,
    *,
    opened_at: datetime,
    last_update_at: datetime | None,
    last_update_text: str | None,
    next_update_at: datetime | None,
    now: datetime,
) -> list[Notice]:
    """A lasting outage's reminder, one notice per owner of its members still down: staff's
    latest update when there is one, else that we are still on it."""
    notices = []
    for owner in affected_owners(conn, outage_id):
        if last_update_text and last_update_at is not None:
            posted = local_time(last_update_at, owner.timezone)
            latest = f"The latest from our team ({posted}): {last_update_text}"
        else:
            latest = STILL_ON_IT
        context = {
            "for": duration_text(now - opened_at),
            "latest_text": latest,
            "next_update_text": next_update_text(next_update_at, owner.timezone, now),
            "device_ids": owner.device_ids,
        }
        notices.append(
            to_owner(
                "outage_reminder",
                "warning",
                owner.device_ids[0],
                incident_id=owner.incident_ids[0],
                context=context,
            )
        )
    return notices


@dataclass(frozen=True, slots=True)
class Promise:
    """An incident whose staff promised customers the next update by `next_update_at`."""

    id: int
    device_id: str | None
    status: str
    summary: str
    next_update_at: datetime | None
    last_update_at: datetime | None
    nudged_at: datetime | None = None


def nudge_due(promise: Promise, now: datetime) -> bool:
    """The promised time has passed without a new update (which would have made a new
    promise), the incident is still open, and staff were not nudged about it yet."""
    return (
        promise.status != "resolved"
        and promise.next_update_at is not None
        and promise.nudged_at is None
        and now > promise.next_update_at
    )


def utc_text(at: datetime | None) -> str:
    """'15:00 UTC on 6 Dec 2026', for staff."""
    if at is None:
        return "never"
    at = at.astimezone(UTC)
    return f"{at:%H:%M} UTC on {at.day} {at:%b %Y}"


def review_promises(conn: psycopg.Connection, now: datetime) -> int:
    """Nudge staff once for each promise that passed at `now`; return how many."""
    notices = []
    with conn.transaction():
        for promise in [Promise(*row) for row in conn.execute(_PROMISED).fetchall()]:
            if not nudge_due(promise, now):
                continue
            if not incidents.mark_promise_missed(conn, promise.id, promise.next_update_at, now):
                continue
            context = {
                "incident_id": promise.id,
                "summary": promise.summary,
                "promised_utc": utc_text(promise.next_update_at),
                "last_update_utc": utc_text(promise.last_update_at),
            }
            notices.append(
                to_staff(
                    "update_promise_missed", "warning", incident_id=promise.id, context=context
                )
            )
            log.warning(
                "incident %d (device %s): update promised by %s not posted, staff nudged",
                promise.id,
                promise.device_id or "-",
                context["promised_utc"],
            )
        record_notices(conn, notices, now)
    return len(notices)
