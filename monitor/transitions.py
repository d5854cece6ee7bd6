"""Applying status transitions: state, incidents, timeline and outbox in one transaction.

Safe with several monitors: each status change is guarded by the status it was decided
from (`WHERE status = old`), so only the monitor whose update lands goes on to open or
resolve the incident and queue its notifications; the others see no row.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import psycopg

from alerts.context import device_context, duration_text
from alerts.outbox import CustomerNotice, enqueue_customer_notices, load_recipients
from monitor.flapping import FlapPolicy, is_unstable
from monitor.status import Transition

log = logging.getLogger(__name__)

# Big arrays go as binary parameters (%(x)b): dumping 10,000 timestamps or strings as
# text costs psycopg tens of milliseconds per array.
_GUARDED_UPDATE = """
UPDATE device_state s SET status = t.new, status_changed_at = %(now)s
FROM unnest(%(ids)b::text[], %(old)b::text[], %(new)b::text[]) AS t(device_id, old, new)
WHERE s.device_id = t.device_id AND s.status = t.old
RETURNING s.device_id
"""

_OPEN_INCIDENTS = """
INSERT INTO incidents (scope, device_id, kind, severity, opened_at, summary, details)
SELECT 'device', t.device_id, t.kind, t.severity, %(now)s, t.summary,
       jsonb_build_object('reason', t.reason, 'since', t.since)
FROM unnest(%(ids)b::text[], %(kinds)b::text[], %(severities)b::text[], %(reasons)b::text[],
            %(since)b::timestamptz[], %(summaries)b::text[])
     AS t(device_id, kind, severity, reason, since, summary)
ON CONFLICT DO NOTHING
RETURNING id, device_id, kind, severity
"""

_RESOLVE_INCIDENTS = """
UPDATE incidents SET status = 'resolved', resolved_at = %(now)s
WHERE scope = 'device' AND device_id = ANY(%(ids)s) AND kind IN ('offline', 'never_seen')
  AND status <> 'resolved'
RETURNING id, device_id, kind, severity, (details ->> 'since')::timestamptz
"""

# An owner who was never told their device was down is not told it is back.
_CANCEL_UNSENT = """
UPDATE notifications SET status = 'cancelled'
WHERE incident_id = ANY(%(ids)s) AND status = 'pending'
"""

_TOLD = """
SELECT DISTINCT incident_id FROM notifications
WHERE incident_id = ANY(%(ids)s) AND status IN ('sent', 'sending')
"""

# Offline spells within the flapping window, this one included.
_SPELLS = """
SELECT device_id, count(*) FROM incidents
WHERE scope = 'device' AND kind = 'offline' AND device_id = ANY(%(ids)b)
  AND opened_at > %(since)s
GROUP BY device_id
"""

_OPEN_UNSTABLE = """
INSERT INTO incidents (scope, device_id, kind, severity, opened_at, summary, details)
SELECT 'device', t.device_id, 'unstable_connection', 'warning', %(now)s,
       'Connection keeps dropping', jsonb_build_object('spells', t.spells)
FROM unnest(%(ids)s::text[], %(spells)s::int[]) AS t(device_id, spells)
ON CONFLICT DO NOTHING
RETURNING id, device_id
"""

_UNSTABLE = """
SELECT device_id FROM incidents
WHERE scope = 'device' AND kind = 'unstable_connection' AND status <> 'resolved'
  AND device_id = ANY(%(ids)s)
"""

# Online for a whole stable period: the unstable connection is over.
_RESOLVE_STABLE = """
WITH stable AS (
    UPDATE incidents i SET status = 'resolved', resolved_at = %(now)s
    FROM device_state s
    WHERE i.scope = 'device' AND i.kind = 'unstable_connection' AND i.status <> 'resolved'
      AND s.device_id = i.device_id AND s.status = 'online'
      AND s.status_changed_at < %(stable_since)s
    RETURNING i.id
)
INSERT INTO incident_events (incident_id, at, kind, detail)
SELECT id, %(now)s, 'resolved', '{"reason": "stable"}' FROM stable
"""

_EVENTS = """
INSERT INTO incident_events (incident_id, at, kind, detail)
SELECT id, %(now)s, %(kind)s, detail::jsonb
FROM unnest(%(ids)b::bigint[], %(details)b::text[]) AS t(id, detail)
"""


@dataclass
class Applied:
    """What one batch of transitions did."""

    changed: Counter = field(default_factory=Counter)
    opened: int = 0
    resolved: int = 0
    notifications: int = 0


def apply_transitions(
    conn: psycopg.Connection,
    transitions: list[Transition],
    now: datetime,
    flap: FlapPolicy = FlapPolicy(),  # noqa: B008 - frozen
) -> Applied:
    """Apply transitions in one transaction; return what changed."""
    applied = Applied()
    if not transitions:
        return applied
    with conn.transaction():
        won = {
            row[0]
            for row in conn.execute(
                _GUARDED_UPDATE,
                {
                    "now": now,
                    "ids": [t.device_id for t in transitions],
                    "old": [t.old for t in transitions],
                    "new": [t.new for t in transitions],
                },
            )
        }
        mine = [t for t in transitions if t.device_id in won]
        down = [t for t in mine if t.new in ("offline", "never_seen")]
        up = [t for t in mine if t.new == "online"]
        for t in mine:
            applied.changed[t.new] += 1
        recipients = load_recipients(conn, [t.device_id for t in mine])
        notices: list[CustomerNotice] = []
        if down:
            notices += _open(conn, down, recipients, now, applied, flap)
        if up:
            notices += _resolve(conn, up, recipients, now, applied)
        applied.notifications = enqueue_customer_notices(conn, notices, recipients, now)
    for t in mine:
        log.info("device %s: %s -> %s (%s)", t.device_id, t.old, t.new, t.reason)
    return applied


def incident_severity(kind: str, critical_device: bool) -> str:
    """An offline critical device (an alarm panel) is critical; anything else a warning."""
    return "critical" if kind == "offline" and critical_device else "warning"


def _open(conn, down: list[Transition], recipients, now, applied, flap) -> list[CustomerNotice]:
    # Only devices the registry still holds (a device deleted meanwhile has no row).
    down = [t for t in down if t.device_id in recipients.devices]
    by_id = {t.device_id: t for t in down}
    summaries = [
        f"{_label(recipients, t.device_id)} "
        + ("went offline" if t.new == "offline" else "never connected")
        + (" (Last Will)" if t.reason == "last_will" else "")
        for t in down
    ]
    opened = conn.execute(
        _OPEN_INCIDENTS,
        {
            "now": now,
            "ids": [t.device_id for t in down],
            "kinds": [t.new for t in down],
            "severities": [
                incident_severity(t.new, recipients.devices[t.device_id].critical) for t in down
            ],
            "reasons": [t.reason for t in down],
            "since": [t.since for t in down],
            "summaries": summaries,
        },
    ).fetchall()
    applied.opened += len(opened)
    _events(conn, now, "opened", [(i, {"reason": by_id[d].reason}) for i, d, _, _ in opened])
    flapping, notices = _flapping(conn, opened, by_id, recipients, now, flap)
    _events(
        conn,
        now,
        "suppressed",
        [(i, {"reason": "unstable connection"}) for i, d, _, _ in opened if d in flapping],
    )
    for incident_id, device_id, kind, severity in opened:
        if device_id in flapping:
            continue
        device = recipients.devices[device_id]
        template = "device_offline" if kind == "offline" else "device_never_seen"
        context = device_context(device, since=by_id[device_id].since)
        notices.append(CustomerNotice(incident_id, device, template, severity, context))
    return notices


def _flapping(conn, opened, by_id, recipients, now, flap: FlapPolicy):
    """Devices whose offline spells say 'unstable', and the one notice for newly unstable ones."""
    offline_ids = [d for _, d, kind, _ in opened if kind == "offline"]
    if not offline_ids:
        return set(), []
    since = now - timedelta(seconds=flap.window_s)
    spells = dict(conn.execute(_SPELLS, {"ids": offline_ids, "since": since}).fetchall())
    unstable = {d for d in offline_ids if is_unstable(spells.get(d, 0), flap)}
    if not unstable:
        return set(), []
    ids = sorted(unstable)
    newly = conn.execute(
        _OPEN_UNSTABLE, {"now": now, "ids": ids, "spells": [spells[d] for d in ids]}
    ).fetchall()
    _events(conn, now, "opened", [(i, {"reason": "flapping"}) for i, _ in newly])
    notices = []
    for incident_id, device_id in newly:
        device = recipients.devices[device_id]
        context = device_context(device, since=by_id[device_id].since)
        context["spells"] = spells[device_id]
        context["window"] = duration_text(timedelta(seconds=flap.window_s))
        notices.append(CustomerNotice(incident_id, device, "device_unstable", "warning", context))
    return unstable, notices


def resolve_stable(conn: psycopg.Connection, now: datetime, flap: FlapPolicy) -> int:
    """Close unstable-connection incidents of devices online for a whole stable period."""
    stable_since = now - timedelta(seconds=flap.stable_after_s)
    return conn.execute(_RESOLVE_STABLE, {"now": now, "stable_since": stable_since}).rowcount


def _resolve(conn, up: list[Transition], recipients, now, applied) -> list[CustomerNotice]:
    by_id = {t.device_id: t for t in up}
    unstable = {r[0] for r in conn.execute(_UNSTABLE, {"ids": [t.device_id for t in up]})}
    resolved = conn.execute(
        _RESOLVE_INCIDENTS, {"now": now, "ids": [t.device_id for t in up]}
    ).fetchall()
    applied.resolved += len(resolved)
    _events(conn, now, "resolved", [(r[0], {"reason": "heartbeat"}) for r in resolved])
    incident_ids = [r[0] for r in resolved]
    conn.execute(_CANCEL_UNSENT, {"ids": incident_ids})
    told = {r[0] for r in conn.execute(_TOLD, {"ids": incident_ids})}
    notices = []
    for incident_id, device_id, kind, severity, since in resolved:
        if incident_id not in told or kind != "offline" or device_id in unstable:
            continue
        device = recipients.devices[device_id]
        context = device_context(device, since=since, back=by_id[device_id].since)
        notices.append(CustomerNotice(incident_id, device, "device_back_online", severity, context))
    return notices


def _events(conn, now, kind: str, items: list[tuple[int, dict]]) -> None:
    if items:
        conn.execute(
            _EVENTS,
            {
                "now": now,
                "kind": kind,
                "ids": [i for i, _ in items],
                "details": [json.dumps(d) for _, d in items],
            },
        )


def _label(recipients, device_id: str) -> str:
    device = recipients.devices.get(device_id)
    if device is None:
        return device_id
    return f"{device.model_name} {device.name or device.device_id} ({device.device_id})"
