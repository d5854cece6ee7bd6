"""Opening, acknowledging, resolving, commenting on and grouping incidents, in SQL.

Every function runs inside the caller's transaction (or autocommits one statement), so a
status change, its incident, its timeline and the notices it owes commit together. Each
write is guarded so that several processes racing apply it once: opening by the unique
open-incident indexes (ON CONFLICT DO NOTHING), the rest by `WHERE status ...`; only the
caller whose write landed gets the incident back, and only it goes on to record notices.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from datetime import datetime

import psycopg

from alerts import outbox
from incidents.model import DeviceProblem, GroupProblem, Opened, Resolved
from incidents.timeline import record_events

log = logging.getLogger(__name__)

# Label and severity from the registry in the same statement; a device deleted meanwhile
# has no row and so no incident. `{device}` in a summary reads "Model Name (id)". Each
# incident's 'opened' line of its timeline is written by the same statement, from what
# it inserted: a fleet-wide burst's ten thousand lines cost no round trip and no row
# formatting in Python (they were a COPY of their own).
_OPEN_DEVICE = """
WITH opened AS (
INSERT INTO incidents (scope, device_id, kind, severity, opened_at, summary, details)
SELECT 'device', t.device_id, t.kind,
       CASE WHEN m.critical AND t.critical_severity IS NOT NULL THEN t.critical_severity
            ELSE t.severity END,
       %(now)s,
       replace(t.summary, '{device}',
               m.name || ' ' || coalesce(d.name, d.id) || ' (' || d.id || ')'),
       t.details::jsonb
FROM unnest(%(ids)b::text[], %(kinds)b::text[], %(severities)b::text[],
            %(critical)b::text[], %(summaries)b::text[], %(details)b::text[])
     AS t(device_id, kind, severity, critical_severity, summary, details)
JOIN devices d ON d.id = t.device_id
JOIN device_models m ON m.id = d.model_id
ON CONFLICT DO NOTHING
RETURNING id, device_id, kind, severity, details
), timeline AS (
    INSERT INTO incident_events (incident_id, at, kind, detail)
    SELECT id, %(now)s, 'opened', details FROM opened
)
SELECT id, device_id, kind, severity, NULL::text FROM opened
"""

_OPEN_GROUP = """
INSERT INTO incidents (scope, kind, severity, opened_at, summary, group_key, details)
SELECT t.scope, t.kind, t.severity, %(now)s, t.summary, t.group_key, t.details::jsonb
FROM unnest(%(scopes)s::text[], %(kinds)s::text[], %(severities)s::text[],
            %(summaries)s::text[], %(keys)s::text[], %(details)s::text[])
     AS t(scope, kind, severity, summary, group_key, details)
ON CONFLICT DO NOTHING
RETURNING id, NULL::text, kind, severity, group_key
"""

_RESOLVE = """
UPDATE incidents SET status = 'resolved', resolved_at = %(now)s
WHERE id = ANY(%(ids)b::bigint[]) AND status <> 'resolved'
RETURNING id, scope, device_id, kind, severity, opened_at, details
"""

_FIND_OPEN = """
SELECT id, device_id FROM incidents
WHERE scope = 'device' AND device_id = ANY(%(ids)b::text[]) AND kind = ANY(%(kinds)s)
  AND status <> 'resolved'
"""

_FIND_OPEN_GROUP = """
SELECT id FROM incidents
WHERE scope <> 'device' AND group_key = %(key)s AND kind = %(kind)s AND status <> 'resolved'
"""

_ACK = """
UPDATE incidents SET status = 'acknowledged', acknowledged_at = %(now)s, acknowledged_by = %(by)s
WHERE id = %(id)s AND status = 'open'
"""

# The owner's "I know": no more reminders (owner_acknowledged_at), and, if nobody had yet,
# acknowledged as staff's would be (no escalation). Once per incident.
_OWNER_ACK = """
UPDATE incidents
SET owner_acknowledged_at = %(now)s,
    status = CASE WHEN status = 'open' THEN 'acknowledged' ELSE status END,
    acknowledged_at = coalesce(acknowledged_at, %(now)s),
    acknowledged_by = coalesce(acknowledged_by, %(by)s)
WHERE id = %(id)s AND status <> 'resolved' AND owner_acknowledged_at IS NULL
"""

_ATTACH = """
UPDATE incidents SET fleet_incident_id = %(group)s
WHERE id = ANY(%(ids)b::bigint[]) AND fleet_incident_id IS NULL AND status <> 'resolved'
  AND scope = 'device'
RETURNING id
"""

_DETACH = """
UPDATE incidents i SET fleet_incident_id = NULL
FROM (SELECT id, fleet_incident_id FROM incidents
      WHERE id = ANY(%(ids)b::bigint[]) AND fleet_incident_id IS NOT NULL FOR UPDATE) old
WHERE i.id = old.id
RETURNING i.id, old.fleet_incident_id
"""

_MARK_TOLD = """
UPDATE incidents SET details = details || jsonb_build_object('customers_told_at', %(now)s::text)
WHERE id = %(id)s AND NOT details ? 'customers_told_at' AND status <> 'resolved'
"""

# Guarded: of several processes, one escalates and one reminds.
_ESCALATE = """
UPDATE incidents SET escalated_at = %(now)s
WHERE id = %(id)s AND status = 'open' AND escalated_at IS NULL
"""
_REMIND = """
UPDATE incidents SET reminded_at = %(now)s, reminders = reminders + 1
WHERE id = %(id)s AND reminders = %(reminders)s AND status <> 'resolved'
"""


def open_device_incidents(
    conn: psycopg.Connection, problems: list[DeviceProblem], now: datetime
) -> list[Opened]:
    """Open an incident per problem unless one of its kind is open; each on its timeline."""
    if not problems:
        return []
    rows = conn.execute(
        _OPEN_DEVICE,
        {
            "now": now,
            "ids": [p.device_id for p in problems],
            "kinds": [p.kind for p in problems],
            "severities": [p.severity for p in problems],
            "critical": [p.critical_severity for p in problems],
            "summaries": [p.summary for p in problems],
            "details": [json.dumps(p.details) for p in problems],
        },
    ).fetchall()
    return [Opened(*row) for row in rows]


def open_group_incident(
    conn: psycopg.Connection, problem: GroupProblem, now: datetime
) -> Opened | None:
    """Open a fleet, site, system or campaign incident unless one is open for its group."""
    opened = open_group_incidents(conn, [problem], now)
    return opened[0] if opened else None


def open_group_incidents(
    conn: psycopg.Connection, problems: list[GroupProblem], now: datetime
) -> list[Opened]:
    if not problems:
        return []
    details = {(p.group_key, p.kind): json.dumps(p.details) for p in problems}
    opened = [
        Opened(*row)
        for row in conn.execute(
            _OPEN_GROUP,
            {
                "now": now,
                "scopes": [p.scope for p in problems],
                "kinds": [p.kind for p in problems],
                "severities": [p.severity for p in problems],
                "summaries": [p.summary for p in problems],
                "keys": [p.group_key for p in problems],
                "details": [details[(p.group_key, p.kind)] for p in problems],
            },
        ).fetchall()
    ]
    record_events(conn, [(o.id, "opened", details[(o.group_key, o.kind)]) for o in opened], now)
    for o in opened:
        log.info("incident %d opened: %s %s", o.id, o.kind, o.group_key)
    return opened


def find_open(
    conn: psycopg.Connection, device_ids: list[str], kinds: Iterable[str]
) -> dict[int, str]:
    """The open incidents of these kinds on these devices: {incident id: device id}."""
    if not device_ids:
        return {}
    return dict(conn.execute(_FIND_OPEN, {"ids": device_ids, "kinds": list(kinds)}).fetchall())


def find_open_group(conn: psycopg.Connection, group_key: str, kind: str) -> list[int]:
    return [r[0] for r in conn.execute(_FIND_OPEN_GROUP, {"key": group_key, "kind": kind})]


def resolve(
    conn: psycopg.Connection,
    incident_ids: list[int],
    now: datetime,
    *,
    by: str | None = None,
    reason: str | None = None,
    note: str | None = None,
    details: Mapping[int, dict] | None = None,
) -> list[Resolved]:
    """Resolve these incidents (those still open), with one behaviour whoever asks.

    - The owner's messages about the problem still waiting are cancelled: moot now.
    - A group incident releases what it held for its members still open (their own
      alerts go out now) and cancels it for the members already resolved.
    - Each gets a `resolved` line: who, why, the note, what was cancelled or released.
    """
    if not incident_ids:
        return []
    rows = conn.execute(_RESOLVE, {"now": now, "ids": list(incident_ids)}).fetchall()
    if not rows:
        return []
    ids = [r[0] for r in rows]
    cancelled = outbox.cancel_moot(conn, ids)
    groups = [r[0] for r in rows if r[1] != "device"]
    released = outbox.release_members(conn, groups, now) if groups else {}
    resolved, events = [], []
    common = {k: v for k, v in (("by", by), ("reason", reason), ("note", note)) if v}
    for incident_id, scope, device_id, kind, severity, opened_at, stored in rows:
        item = Resolved(
            incident_id,
            scope,
            device_id,
            kind,
            severity,
            opened_at,
            stored,
            cancelled.get(incident_id, 0),
            released.get(incident_id, 0),
        )
        resolved.append(item)
        detail = {**common, **(details or {}).get(incident_id, {})}
        if item.cancelled:
            detail["cancelled"] = item.cancelled
        if item.released:
            detail["released"] = item.released
        events.append((incident_id, "resolved", json.dumps(detail)))
    record_events(conn, events, now)
    return resolved


def acknowledge(conn: psycopg.Connection, incident_id: int, by: str, now: datetime) -> bool:
    """Someone is on it (no escalation from now on); False if it was not open."""
    with conn.transaction():
        if not conn.execute(_ACK, {"now": now, "by": by, "id": incident_id}).rowcount:
            return False
        record_events(conn, [(incident_id, "acknowledged", json.dumps({"by": by}))], now)
    log.info("incident %d acknowledged by %s", incident_id, by)
    return True


def acknowledge_by_owner(
    conn: psycopg.Connection, incident_id: int, by: str, now: datetime
) -> bool:
    """The device's owner knows (no reminders from now on, no escalation); False if it is
    resolved or they had said so already. `by` says who and from where."""
    with conn.transaction():
        if not conn.execute(_OWNER_ACK, {"now": now, "by": by, "id": incident_id}).rowcount:
            return False
        detail = json.dumps({"by": by, "owner": True})
        record_events(conn, [(incident_id, "acknowledged", detail)], now)
    log.info("incident %d acknowledged by %s", incident_id, by)
    return True


def comment(
    conn: psycopg.Connection,
    incident_id: int,
    by: str,
    text: str,
    now: datetime,
    *,
    for_customer: bool = False,
) -> None:
    """A note on the incident's timeline; staff's own unless `for_customer` (then the owner
    reads it too: incidents/visibility.py)."""
    detail = {"by": by, "text": text, "for_customer": for_customer}
    record_events(conn, [(incident_id, "comment", json.dumps(detail))], now)


def attach(
    conn: psycopg.Connection, group_id: int, incident_ids: list[int], now: datetime
) -> tuple[int, int]:
    """Make these open device incidents members of a group incident; hold their owners'
    alerts. Returns (attached, notifications held)."""
    if not incident_ids:
        return 0, 0
    attached = [r[0] for r in conn.execute(_ATTACH, {"group": group_id, "ids": incident_ids})]
    if not attached:
        return 0, 0
    detail = json.dumps({"group_incident_id": group_id})
    record_events(conn, [(i, "attached", detail) for i in attached], now)
    return len(attached), outbox.hold(conn, attached)


def detach(conn: psycopg.Connection, incident_ids: list[int], now: datetime) -> int:
    """Take these incidents out of their group: what was held for them goes out now."""
    if not incident_ids:
        return 0
    detached = conn.execute(_DETACH, {"ids": incident_ids}).fetchall()
    if not detached:
        return 0
    ids = [r[0] for r in detached]
    outbox.release(conn, ids, now)
    record_events(
        conn, [(i, "detached", json.dumps({"group_incident_id": g})) for i, g in detached], now
    )
    return len(ids)


def tell_members(conn: psycopg.Connection, group_id: int, outage: str, now: datetime) -> int:
    """A group incident lasts: what it holds becomes one "we know about it" per owner.
    Returns how many notifications were turned; 0 if its owners were already told."""
    if not conn.execute(_MARK_TOLD, {"now": now, "id": group_id}).rowcount:
        return 0
    told = outbox.tell_held(conn, group_id, outage, now)
    record_events(conn, [(group_id, "customers_told", json.dumps({"notices": told}))], now)
    return told


def mark_escalated(conn: psycopg.Connection, incident_id: int, waited: str, now: datetime) -> bool:
    """Note that an unacknowledged incident went to staff; False if it already had."""
    if not conn.execute(_ESCALATE, {"now": now, "id": incident_id}).rowcount:
        return False
    record_events(conn, [(incident_id, "escalated", json.dumps({"waited": waited}))], now)
    return True


def mark_reminded(
    conn: psycopg.Connection, incident_id: int, reminders: int, now: datetime
) -> bool:
    """Note one more reminder to the owner; False if another process just did."""
    params = {"now": now, "id": incident_id, "reminders": reminders}
    if not conn.execute(_REMIND, params).rowcount:
        return False
    record_events(conn, [(incident_id, "reminded", json.dumps({"reminder": reminders + 1}))], now)
    return True
