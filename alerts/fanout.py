"""The fan-out: incident events that owe a customer a message become outbox rows.

The monitor's tick writes each event (the "flip") in the same transaction as the state
change, and goes on; detection never waits for routing. This claims a batch of such events
with FOR UPDATE SKIP LOCKED, routes each to its owner's channels, writes the notifications
and marks the events done, all in one transaction: every event is fanned out exactly once,
by whichever process gets it, and a process killed half-way leaves the batch to the next.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

import psycopg

from alerts.context import device_context
from alerts.outbox import CustomerNotice, enqueue_customer_notices, load_recipients

log = logging.getLogger(__name__)

# The fleet incident, when one holds this device's alerts (a group outage).
_CLAIM = """
SELECT e.id, e.incident_id, e.notify, e.detail, i.device_id, i.severity, i.status,
       f.id IS NOT NULL, f.details ? 'customers_told_at'
FROM incident_events e
JOIN incidents i ON i.id = e.incident_id
LEFT JOIN incidents f ON f.id = i.fleet_incident_id AND f.status <> 'resolved'
WHERE e.notify IS NOT NULL AND e.fanned_out_at IS NULL
ORDER BY e.id
LIMIT %(limit)s
FOR UPDATE OF e SKIP LOCKED
"""

_DONE = "UPDATE incident_events SET fanned_out_at = %(now)s WHERE id = ANY(%(ids)b::bigint[])"

# Was the owner told of the outage (or is a message on its way)?
_TOLD = """
SELECT DISTINCT incident_id FROM notifications
WHERE incident_id = ANY(%(ids)s) AND status IN ('sent', 'sending')
"""

# Messages about a problem: pointless once the incident is resolved.
PROBLEM_TEMPLATES = frozenset({"device_offline", "device_never_seen", "device_unstable"})
# What a group outage holds back.
HELD_BY_FLEET = frozenset({"device_offline", "device_never_seen"})


@dataclass
class FanOut:
    events: int = 0
    notifications: int = 0
    skipped: int = 0
    held: int = 0


def fan_out(conn: psycopg.Connection, now: datetime, *, limit: int) -> FanOut:
    """Fan out one batch of events; return what it did."""
    result = FanOut()
    with conn.transaction():
        rows = conn.execute(_CLAIM, {"limit": limit}).fetchall()
        if not rows:
            return result
        result.events = len(rows)
        back = [r[1] for r in rows if r[2] == "device_back_online"]
        told = {r[0] for r in conn.execute(_TOLD, {"ids": back})} if back else set()
        recipients = load_recipients(conn, sorted({r[4] for r in rows}))
        notices = []
        for row in rows:
            _, incident_id, template, detail, device_id, severity, status, fleet, told_of = row
            device = recipients.devices.get(device_id)
            stale = template in PROBLEM_TEMPLATES and status == "resolved"
            untold = template == "device_back_online" and incident_id not in told
            if device is None or stale or untold:
                result.skipped += 1
                continue
            context = device_context(
                device,
                since=datetime.fromisoformat(detail["since"]),
                back=datetime.fromisoformat(detail["back"]) if "back" in detail else None,
            )
            context.update({k: detail[k] for k in ("spells", "window") if k in detail})
            held = False
            if fleet and template in HELD_BY_FLEET:
                # Part of a known outage: held, or, once owners are being told of the
                # outage, that message instead of the plain one.
                if told_of:
                    template = "device_offline_known_outage"
                else:
                    held = True
                    result.held += 1
            notices.append(CustomerNotice(incident_id, device, template, severity, context, held))
        result.notifications = enqueue_customer_notices(conn, notices, recipients, now)
        conn.execute(_DONE, {"now": now, "ids": [r[0] for r in rows]})
    log.info(
        "fan-out: %d events, %d notifications queued, %d skipped, %d held by a fleet incident",
        result.events,
        result.notifications,
        result.skipped,
        result.held,
    )
    return result
