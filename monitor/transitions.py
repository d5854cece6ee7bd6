"""Applying status transitions: state, incidents, timeline and notices in one transaction.

Safe with several monitors: each status change is guarded by the status it was decided
from (`WHERE status = old`), so only the monitor whose update lands goes on to open or
resolve the incident and queue its notifications; the others see no row.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from operator import attrgetter

import psycopg

import incidents
from alerts.context import duration_text
from alerts.notices import Notice, record_incident_notices, record_notices, to_owner
from incidents import DeviceProblem
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

# Offline spells within the flapping window, this one included.
_SPELLS = """
SELECT device_id, count(*) FROM incidents
WHERE scope = 'device' AND kind = 'offline' AND device_id = ANY(%(ids)b)
  AND opened_at > %(since)s
GROUP BY device_id
"""

_UNSTABLE = """
SELECT device_id FROM incidents
WHERE scope = 'device' AND kind = 'unstable_connection' AND status <> 'resolved'
  AND device_id = ANY(%(ids)s)
"""

# Online for a whole stable period: the unstable connection is over.
_STABLE = """
SELECT i.id FROM incidents i JOIN device_state s ON s.device_id = i.device_id
WHERE i.scope = 'device' AND i.kind = 'unstable_connection' AND i.status <> 'resolved'
  AND s.status IN ('online', 'degraded') AND s.status_changed_at < %(stable_since)s
"""

_SUMMARY = {
    "offline": "{device} went offline",
    "never_seen": "{device} never connected",
}
_SUMMARY_REASON = {
    "last_will": " (Last Will)",
    "missed_checkin": " (did not wake up when it said it would)",
}
# The owner's message, by the transition's reason, else by the incident's kind.
_TEMPLATE = {
    "offline": "device_offline",
    "never_seen": "device_never_seen",
    "missed_checkin": "device_missed_checkin",
}


def _facts(t: Transition) -> dict:
    """The incident's details and the notice's facts: `expected_at` is shown to the owner
    in their local time (the router's `expected_local`)."""
    facts = {"reason": t.reason, "since": t.since.isoformat()}
    if t.expected_at is not None:
        facts["expected_at"] = t.expected_at.isoformat()
    return facts


@dataclass
class Applied:
    """What one batch of transitions did."""

    changed: Counter = field(default_factory=Counter)
    opened: int = 0
    resolved: int = 0
    # Notices recorded for the router (messages owed to owners).
    notices: int = 0
    # Offline incidents opened: the fleet correlation's input.
    offline: list[int] = field(default_factory=list)
    # The same by device.
    offline_devices: dict[int, str] = field(default_factory=dict)
    fleet_opened: int = 0
    # Devices that went offline and came back in this batch: the site correlation's input.
    down_ids: list[str] = field(default_factory=list)
    back_ids: list[str] = field(default_factory=list)
    sites_opened: int = 0


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
    # In device id order: every statement below looks its rows up by device id, and in
    # key order consecutive lookups share their index pages (ten thousand transitions in
    # bench/monitor.py: the status update and the incident insert about a sixth faster); every
    # monitor then locks a batch's rows in the same order, so two racing monitors wait for
    # each other instead of deadlocking (the due query hands them over by deadline).
    transitions = sorted(transitions, key=attrgetter("device_id"))
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
        applied.down_ids = [t.device_id for t in down if t.new == "offline"]
        applied.back_ids = [t.device_id for t in up]
        if down:
            _open(conn, down, now, applied, flap)
        if up:
            _resolve(conn, up, now, applied)
        if then is not None:
            then(conn, applied)
    for t in mine:
        if t.old == "paused":
            log.info(
                "device %s: reported again after its owner paused it: watched again", t.device_id
            )
        log.info("device %s: %s -> %s (%s)", t.device_id, t.old, t.new, t.reason)
    return applied


def _open(conn, down: list[Transition], now, applied, flap) -> None:
    by_id = {t.device_id: t for t in down}
    problems = [
        DeviceProblem(
            t.device_id,
            t.new,
            "warning",
            _SUMMARY[t.new] + _SUMMARY_REASON.get(t.reason, ""),
            _facts(t),
            # An offline critical device (an alarm panel) is critical.
            critical_severity="critical" if t.new == "offline" else None,
        )
        for t in down
    ]
    opened = incidents.open_device_incidents(conn, problems, now)
    applied.opened += len(opened)
    applied.offline = [o.id for o in opened if o.kind == "offline"]
    applied.offline_devices = {o.id: o.device_id for o in opened if o.kind == "offline"}
    flapping = _flapping(conn, opened, by_id, now, flap, applied)
    # The owner's message of each, its facts the incident's details (those same facts).
    owed = [
        (o.id, _TEMPLATE.get(by_id[o.device_id].reason, _TEMPLATE[o.kind]))
        for o in opened
        if o.device_id not in flapping
    ]
    applied.notices += record_incident_notices(conn, owed, now)
    incidents.record_events(
        conn,
        [
            (o.id, "suppressed", {"reason": "unstable connection"})
            for o in opened
            if o.device_id in flapping
        ],
        now,
    )


def _flapping(conn, opened, by_id, now, flap: FlapPolicy, applied) -> set[str]:
    """Devices whose offline spells say 'unstable'; newly unstable ones get one notice."""
    offline_ids = [o.device_id for o in opened if o.kind == "offline"]
    if not offline_ids:
        return set()
    since = now - timedelta(seconds=flap.window_s)
    spells = dict(conn.execute(_SPELLS, {"ids": offline_ids, "since": since}).fetchall())
    unstable = {d for d in offline_ids if is_unstable(spells.get(d, 0), flap)}
    if not unstable:
        return set()
    window = duration_text(timedelta(seconds=flap.window_s))
    newly = incidents.open_device_incidents(
        conn,
        [
            DeviceProblem(
                d,
                "unstable_connection",
                "warning",
                "{device}: connection keeps dropping",
                {"spells": spells[d]},
            )
            for d in sorted(unstable)
        ],
        now,
    )
    notices = [
        to_owner(
            "device_unstable",
            o.severity,
            o.device_id,
            incident_id=o.id,
            context={
                "reason": "flapping",
                "since": by_id[o.device_id].since.isoformat(),
                "spells": spells[o.device_id],
                "window": window,
            },
        )
        for o in newly
    ]
    applied.notices += record_notices(conn, notices, now)
    return unstable


def resolve_stable(conn: psycopg.Connection, now: datetime, flap: FlapPolicy) -> int:
    """Close unstable-connection incidents of devices online for a whole stable period."""
    stable_since = now - timedelta(seconds=flap.stable_after_s)
    with conn.transaction():
        ids = [r[0] for r in conn.execute(_STABLE, {"stable_since": stable_since})]
        return len(incidents.resolve(conn, ids, now, reason="stable"))


def _resolve(conn, up: list[Transition], now, applied) -> None:
    by_id = {t.device_id: t for t in up}
    device_ids = [t.device_id for t in up]
    unstable = {r[0] for r in conn.execute(_UNSTABLE, {"ids": device_ids})}
    open_ids = incidents.find_open(conn, device_ids, ("offline", "never_seen"))
    resolved = incidents.resolve(
        conn,
        list(open_ids),
        now,
        reason="heartbeat",
        details={i: {"back": by_id[d].since.isoformat()} for i, d in open_ids.items()},
    )
    applied.resolved += len(resolved)
    notices: list[Notice] = []
    for r in resolved:
        back = by_id[r.device_id].since
        # An owner who was never told their device was down is not told it is back: the
        # router checks what was sent.
        if r.kind == "offline" and r.device_id not in unstable:
            notices.append(
                to_owner(
                    "device_back_online",
                    r.severity,
                    r.device_id,
                    incident_id=r.id,
                    context={
                        "reason": "heartbeat",
                        "since": r.details["since"],
                        "back": back.isoformat(),
                    },
                )
            )
    applied.notices += record_notices(conn, notices, now)
