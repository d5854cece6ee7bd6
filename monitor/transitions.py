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

from alerts.context import duration_text
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

# Label and severity come from the registry in the same statement; a device deleted
# meanwhile has no row and so no incident.
_OPEN_INCIDENTS = """
INSERT INTO incidents (scope, device_id, kind, severity, opened_at, summary, details)
SELECT 'device', t.device_id, t.kind,
       CASE WHEN t.kind = 'offline' AND m.critical THEN 'critical' ELSE 'warning' END,
       %(now)s,
       m.name || ' ' || coalesce(d.name, d.id) || ' (' || d.id || ') '
           || CASE t.kind WHEN 'offline' THEN 'went offline' ELSE 'never connected' END
           || CASE WHEN t.reason = 'last_will' THEN ' (Last Will)' ELSE '' END,
       jsonb_build_object('reason', t.reason, 'since', t.since)
FROM unnest(%(ids)b::text[], %(kinds)b::text[], %(reasons)b::text[], %(since)b::timestamptz[])
     AS t(device_id, kind, reason, since)
JOIN devices d ON d.id = t.device_id
JOIN device_models m ON m.id = d.model_id
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
WHERE incident_id = ANY(%(ids)s) AND status IN ('pending', 'held')
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
      AND s.device_id = i.device_id AND s.status IN ('online', 'degraded')
      AND s.status_changed_at < %(stable_since)s
    RETURNING i.id
)
INSERT INTO incident_events (incident_id, at, kind, detail)
SELECT id, %(now)s, 'resolved', '{"reason": "stable"}' FROM stable
"""

# `notify` names the template owed to the device's owner; the fan-out sends it.
_EVENTS = """
INSERT INTO incident_events (incident_id, at, kind, detail, notify)
SELECT id, %(now)s, %(kind)s, detail::jsonb, notify
FROM unnest(%(ids)b::bigint[], %(details)b::text[], %(notify)b::text[]) AS t(id, detail, notify)
"""


@dataclass
class Applied:
    """What one batch of transitions did."""

    changed: Counter = field(default_factory=Counter)
    opened: int = 0
    resolved: int = 0
    # Events that owe a customer a message, for the fan-out.
    notices: int = 0
    # Offline incidents opened: the fleet correlation's input.
    offline: list[int] = field(default_factory=list)
    fleet_opened: int = 0


def apply_transitions(
    conn: psycopg.Connection,
    transitions: list[Transition],
    now: datetime,
    flap: FlapPolicy = FlapPolicy(),  # noqa: B008 - frozen
    then=None,
) -> Applied:
    """Apply transitions in one transaction; return what changed.

    `then(conn, applied)` runs inside the same transaction, after the incidents exist.
    """
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
        if down:
            _open(conn, down, now, applied, flap)
        if up:
            _resolve(conn, up, now, applied)
        if then is not None:
            then(conn, applied)
    for t in mine:
        log.info("device %s: %s -> %s (%s)", t.device_id, t.old, t.new, t.reason)
    return applied


def incident_severity(kind: str, critical_device: bool) -> str:
    """An offline critical device (an alarm panel) is critical; anything else a warning."""
    return "critical" if kind == "offline" and critical_device else "warning"


def _open(conn, down: list[Transition], now, applied, flap) -> None:
    by_id = {t.device_id: t for t in down}
    opened = conn.execute(
        _OPEN_INCIDENTS,
        {
            "now": now,
            "ids": [t.device_id for t in down],
            "kinds": [t.new for t in down],
            "reasons": [t.reason for t in down],
            "since": [t.since for t in down],
        },
    ).fetchall()
    applied.opened += len(opened)
    applied.offline = [i for i, _, kind, _ in opened if kind == "offline"]
    flapping = _flapping(conn, opened, by_id, now, flap, applied)
    events = []
    for incident_id, device_id, kind, _ in opened:
        detail = {"reason": by_id[device_id].reason, "since": by_id[device_id].since.isoformat()}
        if device_id in flapping:
            events.append((incident_id, detail, None))
        else:
            template = "device_offline" if kind == "offline" else "device_never_seen"
            events.append((incident_id, detail, template))
    applied.notices += _events(conn, now, "opened", events)
    _events(
        conn,
        now,
        "suppressed",
        [(i, {"reason": "unstable connection"}, None) for i, d, _, _ in opened if d in flapping],
    )


def _flapping(conn, opened, by_id, now, flap: FlapPolicy, applied) -> set[str]:
    """Devices whose offline spells say 'unstable'; newly unstable ones get one notice."""
    offline_ids = [d for _, d, kind, _ in opened if kind == "offline"]
    if not offline_ids:
        return set()
    since = now - timedelta(seconds=flap.window_s)
    spells = dict(conn.execute(_SPELLS, {"ids": offline_ids, "since": since}).fetchall())
    unstable = {d for d in offline_ids if is_unstable(spells.get(d, 0), flap)}
    if not unstable:
        return set()
    ids = sorted(unstable)
    newly = conn.execute(
        _OPEN_UNSTABLE, {"now": now, "ids": ids, "spells": [spells[d] for d in ids]}
    ).fetchall()
    window = duration_text(timedelta(seconds=flap.window_s))
    events = [
        (
            incident_id,
            {
                "reason": "flapping",
                "since": by_id[device_id].since.isoformat(),
                "spells": spells[device_id],
                "window": window,
            },
            "device_unstable",
        )
        for incident_id, device_id in newly
    ]
    applied.notices += _events(conn, now, "opened", events)
    return unstable


def resolve_stable(conn: psycopg.Connection, now: datetime, flap: FlapPolicy) -> int:
    """Close unstable-connection incidents of devices online for a whole stable period."""
    stable_since = now - timedelta(seconds=flap.stable_after_s)
    return conn.execute(_RESOLVE_STABLE, {"now": now, "stable_since": stable_since}).rowcount


def _resolve(conn, up: list[Transition], now, applied) -> None:
    by_id = {t.device_id: t for t in up}
    unstable = {r[0] for r in conn.execute(_UNSTABLE, {"ids": [t.device_id for t in up]})}
    resolved = conn.execute(
        _RESOLVE_INCIDENTS, {"now": now, "ids": [t.device_id for t in up]}
    ).fetchall()
    applied.resolved += len(resolved)
    # An owner who was never told their device was down is not told it is back: the
    # unsent notice is cancelled here, and the fan-out checks what was sent.
    conn.execute(_CANCEL_UNSENT, {"ids": [r[0] for r in resolved]})
    events = []
    for incident_id, device_id, kind, _, since in resolved:
        back = by_id[device_id].since
        detail = {"reason": "heartbeat", "since": since.isoformat(), "back": back.isoformat()}
        notify = "device_back_online" if kind == "offline" and device_id not in unstable else None
        events.append((incident_id, detail, notify))
    applied.notices += _events(conn, now, "resolved", events)


def _events(conn, now, kind: str, items: list[tuple[int, dict, str | None]]) -> int:
    """Write timeline events; return how many owe a customer a message."""
    if items:
        conn.execute(
            _EVENTS,
            {
                "now": now,
                "kind": kind,
                "ids": [i for i, _, _ in items],
                "details": [json.dumps(d) for _, d, _ in items],
                "notify": [n for _, _, n in items],
            },
        )
    return sum(1 for _, _, n in items if n)
