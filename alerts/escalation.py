"""Open critical incidents: remind the owner while one lasts, escalate to staff when nobody acks.

Who is told when is the alerts side's policy; the incident only records that it was done.

escalation_due / reminder_due   pure decisions on one incident and `now`
review_critical                 the periodic job of the alerts process: reads the few open
                                critical incidents (a partial index), acts on each once

A fleet outage's owners hear no device reminders: the outage reminds them, one message per
owner, with staff's latest update (alerts/updates.py), a reminder period after the last
word they heard (told of the outage, an update, or the last reminder).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg

import incidents
from alerts.context import duration_text
from alerts.notices import Notice, record_notices, to_owner, to_staff
from alerts.updates import outage_reminders

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
    # Staff's latest update to customers, and the next one they promised (a fleet outage's
    # reminders carry them).
    last_update_at: datetime | None = None
    last_update_text: str | None = None
    next_update_at: datetime | None = None
    # The owner said "I know" (portal/actions.py): no more reminders. Staff acknowledging
    # does not stop them: the owner still wants to know their device is still down.
    owner_acknowledged: bool = False


def escalation_due(incident: OpenCritical, now: datetime, policy: EscalationPolicy) -> bool:
    """Not acknowledged, not yet escalated, and open longer than the policy allows."""
    return (
        incident.status == "open"
        and incident.escalated_at is None
        and now - incident.opened_at >= timedelta(seconds=policy.escalate_after_s)
    )


def reminder_due(incident: OpenCritical, now: datetime, policy: EscalationPolicy) -> bool:
    """A device incident its owner knows of, still open a reminder period after the last word.
    A fleet outage: see outage_reminder_due."""
    if incident.scope == "fleet":
        return outage_reminder_due(incident, now, policy)
    if incident.scope != "device" or incident.in_outage or not incident.told:
        return False
    if incident.owner_acknowledged:
        return False
    if incident.reminders >= policy.max_reminders:
        return False
    last = incident.reminded_at or incident.opened_at
    return now - last >= timedelta(seconds=policy.remind_every_s)


def outage_reminder_due(incident: OpenCritical, now: datetime, policy: EscalationPolicy) -> bool:
    """A fleet outage whose owners heard of it (told once it lasted, or a staff update),
    still open a reminder period after the last word they heard; a few times at most."""
    if incident.scope != "fleet" or incident.reminders >= policy.max_reminders:
        return False
    told = incident.details.get("customers_told_at")
    heard = [
        at
        for at in (
            datetime.fromisoformat(told) if told else None,
            incident.last_update_at,
            incident.reminded_at,
        )
        if at is not None
    ]
    return bool(heard) and now - max(heard) >= timedelta(seconds=policy.remind_every_s)


_OPEN_CRITICAL = """
SELECT i.id, i.scope, i.device_id, i.status, i.opened_at, i.escalated_at, i.reminded_at,
       i.reminders, i.summary, i.details, i.fleet_incident_id IS NOT NULL,
       EXISTS (SELECT 1 FROM notifications n
               WHERE n.incident_id = i.id AND n.status = 'sent' AND n.customer_id IS NOT NULL),
       i.last_update_at, i.last_update_text, i.next_update_at,
       i.owner_acknowledged_at IS NOT NULL
FROM incidents i
WHERE i.severity = 'critical' AND i.status <> 'resolved'
ORDER BY i.opened_at
"""


@dataclass
class CriticalReview:
    escalated: int = 0
    reminded: int = 0
    # Owners of a lasting outage's devices reminded (one notice each).
    outage_reminded: int = 0
    # Broken promises of an update that staff were nudged about (alerts/updates.py).
    nudged: int = 0


def review_critical(
    conn: psycopg.Connection, now: datetime, policy: EscalationPolicy
) -> CriticalReview:
    """Escalate and remind where due; return how many of each."""
    result = CriticalReview()
    with conn.transaction():
        notices: list[Notice] = []
        for incident in [OpenCritical(*row) for row in conn.execute(_OPEN_CRITICAL).fetchall()]:
            if escalation_due(incident, now, policy):
                waited = duration_text(now - incident.opened_at)
                if incidents.mark_escalated(conn, incident.id, waited, now):
                    context = {
                        "summary": incident.summary,
                        "waited": waited,
                        "incident_id": incident.id,
                        "opened": incident.opened_at.isoformat(),
                    }
                    notices.append(
                        to_staff(
                            "incident_escalated",
                            "critical",
                            incident_id=incident.id,
                            context=context,
                        )
                    )
                    result.escalated += 1
                    log.warning(
                        "incident %d (device %s) escalated: not acknowledged after %s",
                        incident.id,
                        incident.device_id or "-",
                        waited,
                    )
            if not (
                reminder_due(incident, now, policy)
                and incidents.mark_reminded(conn, incident.id, incident.reminders, now)
            ):
                continue
            if incident.scope == "fleet":
                told = outage_reminders(
                    conn,
                    incident.id,
                    opened_at=incident.opened_at,
                    last_update_at=incident.last_update_at,
                    last_update_text=incident.last_update_text,
                    next_update_at=incident.next_update_at,
                    now=now,
                )
                notices += told
                result.outage_reminded += len(told)
                log.info("fleet incident %d lasts: %d owners reminded", incident.id, len(told))
            else:
                since = incident.opened_at
                if "since" in incident.details:
                    since = datetime.fromisoformat(incident.details["since"])
                context = {"since": since.isoformat(), "for": duration_text(now - since)}
                notices.append(
                    to_owner(
                        "device_offline_reminder",
                        "critical",
                        incident.device_id,
                        incident_id=incident.id,
                        context=context,
                    )
                )
                result.reminded += 1
                log.info(
                    "device %s: still offline after %s, owner reminded",
                    incident.device_id,
                    context["for"],
                )
        record_notices(conn, notices, now)
    return result
