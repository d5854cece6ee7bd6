"""The router: the one component that turns notices into outbox rows.

Producers record notices in the transaction of what happened (alerts/notices.py) and go on;
detection never waits for routing. This claims a batch with FOR UPDATE SKIP LOCKED and, in
one transaction, decides each notice's fate (alerts.routing.notice_fate: moot, never told,
held by an outage), routes it to the owner's channels (severity, quiet hours, one channel of
a recall) or to every staff channel, holds it while a silence lasts, writes the rows and
marks the notices routed with what became of them. Every notice is routed exactly once, by
whichever process gets it; a process killed half-way leaves the batch to the next.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime

import psycopg

from alerts.context import device_context, devices_context, local_time
from alerts.outbox import (
    CustomerRow,
    Recipients,
    Silenced,
    load_recipients,
    silenced_until,
    write_customer_rows,
    write_staff_rows,
)
from alerts.routing import Channel, IncidentView, is_urgent, notice_fate, route
from incidents import record_events

log = logging.getLogger(__name__)

# Staff's words to customers (alerts/updates.py), about several devices at once: not held
# by one device's silence, which holds the monitor's alerts.
NOT_SILENCED = frozenset({"incident_update", "outage_reminder"})

# With what the router needs of the incident and of the group incident holding it.
_CLAIM = """
SELECT n.id, n.created_at, n.audience, n.template, n.severity, n.device_id, n.incident_id,
       n.campaign_id, n.channels, n.context,
       i.status, f.id IS NOT NULL, coalesce(f.details ? 'customers_told_at', false),
       f.details ->> 'down', f.details ->> 'group', coalesce(f.scope = 'site', false)
FROM notices n
LEFT JOIN incidents i ON i.id = n.incident_id
LEFT JOIN incidents f ON f.id = i.fleet_incident_id AND f.status <> 'resolved'
WHERE n.routed_at IS NULL
ORDER BY n.id
LIMIT %(limit)s
FOR UPDATE OF n SKIP LOCKED
"""

# Was the owner told of the problem (or is a message on its way)?
_TOLD = """
SELECT DISTINCT incident_id FROM notifications
WHERE incident_id = ANY(%(ids)s) AND status IN ('sent', 'sending') AND customer_id IS NOT NULL
"""

_DONE = """
UPDATE notices n SET routed_at = %(now)s, outcome = t.outcome
FROM unnest(%(ids)b::bigint[], %(outcomes)b::text[]) AS t(id, outcome)
WHERE n.id = t.id
"""


@dataclass(frozen=True, slots=True)
class Claimed:
    id: int
    created_at: datetime
    audience: str
    template: str
    severity: str
    device_id: str | None
    incident_id: int | None
    campaign_id: int | None
    channels: str
    context: dict
    incident: IncidentView | None


@dataclass
class Routed:
    notices: int = 0
    notifications: int = 0
    skipped: int = 0
    held: int = 0


def route_notices(conn: psycopg.Connection, now: datetime, *, limit: int) -> Routed:
    """Route one batch of notices at `now`; return what it did."""
    result = Routed()
    with conn.transaction():
        rows = conn.execute(_CLAIM, {"limit": limit}).fetchall()
        if not rows:
            return result
        result.notices = len(rows)
        recovering = [r[6] for r in rows if r[6] is not None and r[2] == "owner"]
        told = {r[0] for r in conn.execute(_TOLD, {"ids": recovering})} if recovering else set()
        claimed = [_claimed(r, told) for r in rows]
        owners = [c for c in claimed if c.audience == "owner"]
        # A notice about several of one owner's devices names them from their rows too.
        listed = {d for c in owners for d in c.context.get("device_ids", ())}
        recipients = load_recipients(conn, sorted({c.device_id for c in owners} | listed))
        silenced = silenced_until(conn, sorted({c.device_id for c in owners}), now)
        outcomes: dict[int, str] = {}
        customer_rows: list[CustomerRow] = []
        silence_events = []
        for notice in claimed:
            if notice.incident_id is not None and notice.incident is None:
                outcomes[notice.id] = "incident gone"  # deleted with its device
                result.skipped += 1
                continue
            if notice.audience == "staff":
                queued = write_staff_rows(
                    conn,
                    incident_id=notice.incident_id,
                    campaign_id=notice.campaign_id,
                    template=notice.template,
                    severity=notice.severity,
                    context=notice.context,
                    now=now,
                )
                result.notifications += queued
                outcomes[notice.id] = f"queued {queued}"
                continue
            outcome, rows_for, silence = _owner_rows(notice, recipients, silenced, now)
            outcomes[notice.id] = outcome
            if not rows_for:
                result.skipped += outcome != "queued 0"
                continue
            result.held += rows_for[0].held
            customer_rows += rows_for
            if silence is not None and notice.incident_id is not None:
                detail = {"until": silence[0].isoformat(), "silence_id": silence[1]}
                if silence[2]:
                    detail["owner"] = True
                silence_events.append((notice.incident_id, "silenced", detail))
        result.notifications += write_customer_rows(conn, customer_rows)
        record_events(conn, list({e[0]: e for e in silence_events}.values()), now)
        ids = sorted(outcomes)
        conn.execute(_DONE, {"now": now, "ids": ids, "outcomes": [outcomes[i] for i in ids]})
    log.info(
        "router: %d notices, %d notifications queued, %d dropped, %d held by an outage",
        result.notices,
        result.notifications,
        result.skipped,
        result.held,
    )
    return result


def _claimed(row: tuple, told: set[int]) -> Claimed:
    (nid, created, audience, template, severity, device, incident_id, campaign, channels) = row[:9]
    context, status, in_outage, outage_told, down, group, covered = row[9:]
    incident = None
    if incident_id is not None and status is not None:
        outage = f"{down} devices in {group} went offline at once" if in_outage else None
        incident = IncidentView(
            status,
            in_outage=in_outage,
            outage_told=outage_told,
            outage=outage,
            owner_told=incident_id in told,
            covered=covered,
        )
    return Claimed(
        nid, created, audience, template, severity, device, incident_id, campaign, channels,
        context, incident,
    )  # fmt: skip


def _owner_rows(
    notice: Claimed,
    recipients: Recipients,
    silenced: dict[str, Silenced],
    now: datetime,
) -> tuple[str, list[CustomerRow], tuple[datetime, int, bool] | None]:
    """(outcome, outbox rows, the silence holding them) for one notice to a device's owner."""
    device = recipients.devices.get(notice.device_id)
    if device is None or device.customer_id is None:
        return "device has no owner", [], None
    critical = device.critical and notice.severity == "critical"
    fate = notice_fate(notice.template, "owner", notice.incident, critical=critical)
    if fate.template is None:
        return fate.reason, [], None
    channels = _channels(notice.channels, recipients.channels.get(device.customer_id, []))
    urgent = is_urgent(
        severity=notice.severity,
        critical_device=device.critical,
        campaign_notice=notice.campaign_id is not None,
    )
    deliveries = route(
        severity=notice.severity,
        urgent=urgent,
        prefs=recipients.prefs[device.customer_id],
        channels=channels,
        now=now,
    )
    if not deliveries:
        return "queued 0", [], None
    # Staff silences hold incident alerts: not a campaign's notices (a recall is not an
    # alert), nor staff's own words to customers (alerts/updates.py).
    silence = holding_silence(
        silenced.get(device.device_id, Silenced()),
        campaign=notice.campaign_id is not None or notice.template in NOT_SILENCED,
        urgent=urgent,
    )
    context = message_context(device, notice)
    if "device_ids" in notice.context:
        context.update(devices_context(_owned(notice.context["device_ids"], device, recipients)))
    if notice.incident is not None and notice.incident.outage:
        context["outage"] = notice.incident.outage
    if urgent:
        # Decided once, here; the dispatcher's rendering marks it (alerts/render.py).
        context["urgent"] = True
    rows = [
        CustomerRow(
            incident_id=notice.incident_id,
            device_id=device.device_id,
            customer_id=device.customer_id,
            channel_id=d.channel_id,
            template=fate.template,
            severity=notice.severity,
            context=context,
            created_at=now,
            due_at=max(d.due_at, silence[0]) if silence else d.due_at,
            held=fate.held,
            campaign_id=notice.campaign_id,
        )
        for d in deliveries
    ]
    outcome = f"queued {len(rows)}" + (f" ({fate.reason})" if fate.held else "")
    return outcome, rows, silence


def _owned(device_ids: list[str], device, recipients: Recipients) -> list:
    """The listed devices that belong to the recipient now: a device given to someone else
    since the notice was recorded is not named to its former owner, nor theirs to them."""
    owned = [
        recipients.devices[d]
        for d in device_ids
        if d in recipients.devices and recipients.devices[d].customer_id == device.customer_id
    ]
    return owned or [device]


def holding_silence(
    silenced: Silenced, *, campaign: bool, urgent: bool
) -> tuple[datetime, int, bool] | None:
    """(until, silence id, the owner's?) of what holds a notice, or None: it goes now.

    Staff silences hold incident alerts, not a campaign's notices (a recall is not an
    alert). The owner's snooze holds both, except what is urgent: a critical alert of a
    critical device (an alarm panel offline) or a critical campaign notice (a safety
    recall) reaches them snoozed or not.
    """
    held = []
    if silenced.staff is not None and not campaign:
        held.append((*silenced.staff, False))
    if silenced.owner is not None and not urgent:
        held.append((*silenced.owner, True))
    return max(held) if held else None


def _channels(policy: str, channels: list[Channel]) -> list[Channel]:
    """The owner's channels a notice may use: all (routed by severity), or one by position."""
    if policy.startswith("position:"):
        if not channels:
            return []
        chosen = channels[min(int(policy.partition(":")[2]), len(channels) - 1)]
        return [replace(chosen, min_severity="info")]
    return channels


def message_context(device, notice: Claimed) -> dict:
    """The template fields: the device's own (from its registry row now), then the
    producer's facts, then each `*_at` time in the owner's local time as `*_local`."""
    facts = notice.context
    since = datetime.fromisoformat(facts["since"]) if "since" in facts else notice.created_at
    back = datetime.fromisoformat(facts["back"]) if "back" in facts else None
    context = device_context(device, since=since, back=back)
    context.update({k: v for k, v in facts.items() if k not in ("since", "back")})
    for key, value in facts.items():
        if key.endswith("_at") and isinstance(value, str):
            context[f"{key[:-3]}_local"] = local_time(
                datetime.fromisoformat(value), device.timezone
            )
    return context
