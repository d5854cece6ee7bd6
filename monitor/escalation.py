"""Open critical incidents: remind the owner while one lasts, escalate to staff when nobody acks.

escalation_due / reminder_due   pure decisions on one incident and `now`
review_critical                 the periodic job: reads the few open critical
                                incidents (a partial index), acts on each once
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg

from alerts.context import device_context, duration_text
from alerts.outbox import (
    CustomerNotice,
    enqueue_customer_notices,
    enqueue_staff_notice,
    load_recipients,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EscalationPolicy:
    # A critical incident nobody acknowledged within this goes to staff channels.
    escalate_after_s: int = 900
    # While a critical device incident stays open its owner is reminded, a few times.
    remind_every_s: int = 4 * 3600
    max_reminders: int = 3


@dataclass(frozen=True)
class OpenCritical:
    id: int
    scope: str
    device_id: str | None
    status: str
    opened_at: datetime
    escalated_at: datetime | None
    reminded_at: datetime | None
    reminders: int
    summary: str
    details: dict
    # Part of a fleet outage: its owner hears about the outage, not reminders.
    in_outage: bool
    # Whether the owner was told of it at all.
    told: bool


def escalation_due(incident: OpenCritical, now: datetime, policy: EscalationPolicy) -> bool:
    """Not acknowledged, not yet escalated, and open longer than the policy allows."""
    return (
        incident.status == "open"
        and incident.escalated_at is None
        and now - incident.opened_at >= timedelta(seconds=policy.escalate_after_s)
    )


def reminder_due(incident: OpenCritical, now: datetime, policy: EscalationPolicy) -> bool:
    """A device incident its owner knows of, still open a reminder period after the last word."""
    if incident.scope != "device" or incident.in_outage or not incident.told:
        return False
    if incident.reminders >= policy.max_reminders:
        return False
    last = incident.reminded_at or incident.opened_at
    return now - last >= timedelta(seconds=policy.remind_every_s)


_OPEN_CRITICAL = """
SELECT i.id, i.scope, i.device_id, i.status, i.opened_at, i.escalated_at, i.reminded_at,
       i.reminders, i.summary, i.details, i.fleet_incident_id IS NOT NULL,
       EXISTS (SELECT 1 FROM notifications n
               WHERE n.incident_id = i.id AND n.status = 'sent' AND n.customer_id IS NOT NULL)
FROM incidents i
WHERE i.severity = 'critical' AND i.status <> 'resolved'
ORDER BY i.opened_at
"""

# Guarded: of several monitors, one escalates and one reminds.
_ESCALATE = """
UPDATE incidents SET escalated_at = %(now)s
WHERE id = %(id)s AND status = 'open' AND escalated_at IS NULL
"""
_REMIND = """
UPDATE incidents SET reminded_at = %(now)s, reminders = reminders + 1
WHERE id = %(id)s AND reminders = %(reminders)s AND status <> 'resolved'
"""
_EVENT = "INSERT INTO incident_events (incident_id, at, kind, detail) VALUES (%s, %s, %s, %s)"


@dataclass
class CriticalReview:
    escalated: int = 0
    reminded: int = 0


def review_critical(
    conn: psycopg.Connection, now: datetime, policy: EscalationPolicy
) -> CriticalReview:
    """Escalate and remind where due; return how many of each."""
    result = CriticalReview()
    with conn.transaction():
        incidents = [OpenCritical(*row) for row in conn.execute(_OPEN_CRITICAL).fetchall()]
        remind = []
        for incident in incidents:
            if (
                escalation_due(incident, now, policy)
                and conn.execute(_ESCALATE, {"now": now, "id": incident.id}).rowcount
            ):
                waited = duration_text(now - incident.opened_at)
                conn.execute(
                    _EVENT, (incident.id, now, "escalated", json.dumps({"waited": waited}))
                )
                context = {
                    "summary": incident.summary,
                    "waited": waited,
                    "incident_id": incident.id,
                    "opened": incident.opened_at.isoformat(),
                }
                enqueue_staff_notice(
                    conn, incident.id, "incident_escalated", "critical", context, now
                )
                result.escalated += 1
                log.warning(
                    "incident %d (device %s) escalated: not acknowledged after %s",
                    incident.id,
                    incident.device_id or "-",
                    waited,
                )
            if (
                reminder_due(incident, now, policy)
                and conn.execute(
                    _REMIND, {"now": now, "id": incident.id, "reminders": incident.reminders}
                ).rowcount
            ):
                remind.append(incident)
        if remind:
            result.reminded = _remind(conn, remind, now)
    return result


def _remind(conn: psycopg.Connection, incidents: list[OpenCritical], now: datetime) -> int:
    recipients = load_recipients(conn, [i.device_id for i in incidents])
    notices = []
    for incident in incidents:
        device = recipients.devices.get(incident.device_id)
        if device is None:
            continue
        since = incident.opened_at
        if "since" in incident.details:
            since = datetime.fromisoformat(incident.details["since"])
        context = device_context(device, since=since)
        context["for"] = duration_text(now - since)
        notices.append(
            CustomerNotice(incident.id, device, "device_offline_reminder", "critical", context)
        )
        conn.execute(
            _EVENT,
            (incident.id, now, "reminded", json.dumps({"reminder": incident.reminders + 1})),
        )
        log.info(
            "device %s: still offline after %s, owner reminded", device.device_id, context["for"]
        )
    enqueue_customer_notices(conn, notices, recipients, now)
    return len(notices)


_ACK = """
UPDATE incidents SET status = 'acknowledged', acknowledged_at = %(now)s, acknowledged_by = %(by)s
WHERE id = %(id)s AND status = 'open'
"""


def acknowledge(conn: psycopg.Connection, incident_id: int, by: str, now: datetime) -> bool:
    """Mark an open incident acknowledged (stops its escalation); False if it was not open."""
    with conn.transaction():
        if not conn.execute(_ACK, {"now": now, "by": by, "id": incident_id}).rowcount:
            return False
        conn.execute(_EVENT, (incident_id, now, "acknowledged", json.dumps({"by": by})))
    log.info("incident %d acknowledged by %s", incident_id, by)
    return True
