"""Staff's updates to customers, on the timelines: one `update` line per incident it reaches.

    post_update          the line on the incident, and on a group incident (a fleet outage)
                         the same line on every member still open, so each owner's own
                         incident page shows it; the incident keeps the latest update and
                         the promise of the next (`next_update_at`)
    mark_promise_missed  the promise passed without a new update: staff were nudged, once

Whom the update is sent to is the alerts side's (alerts/updates.py); this only records.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import psycopg

from incidents.timeline import record_events

# Guarded: a resolved incident takes no update. A new update is a new promise (or none).
_POST = """
UPDATE incidents
SET last_update_at = %(now)s, last_update_text = %(text)s, next_update_at = %(next)s,
    update_nudged_at = NULL
WHERE id = %(id)s AND status <> 'resolved'
RETURNING scope, device_id, severity, summary
"""

# Members still open: a device back already heard "back online", the update is not for it.
_OPEN_MEMBERS = """
SELECT id FROM incidents WHERE fleet_incident_id = %(id)s AND status <> 'resolved' ORDER BY id
"""

# Guarded by the promise itself: an update posted meanwhile made a new one.
_MISSED = """
UPDATE incidents SET update_nudged_at = %(now)s
WHERE id = %(id)s AND next_update_at = %(promised)s AND update_nudged_at IS NULL
  AND status <> 'resolved'
"""


@dataclass(frozen=True, slots=True)
class PostedUpdate:
    incident_id: int
    scope: str
    device_id: str | None
    severity: str
    summary: str
    text: str
    next_update_at: datetime | None
    # The incidents that got the line besides this one (a fleet outage's open members).
    members: int = 0


def post_update(
    conn: psycopg.Connection,
    incident_id: int,
    by: str,
    text: str,
    now: datetime,
    *,
    next_update_at: datetime | None = None,
) -> PostedUpdate | None:
    """Put staff's update on the incident's timeline (and its open members'); None if the
    incident is resolved. Runs in the caller's transaction, with the notices it owes."""
    params = {"now": now, "text": text, "next": next_update_at, "id": incident_id}
    row = conn.execute(_POST, params).fetchone()
    if row is None:
        return None
    scope, device_id, severity, summary = row
    detail = {"by": by, "text": text}
    if next_update_at is not None:
        detail["next_update_at"] = next_update_at.isoformat()
    members = []
    if scope != "device":
        members = [r[0] for r in conn.execute(_OPEN_MEMBERS, {"id": incident_id})]
    member_detail = json.dumps({**detail, "group_incident_id": incident_id})
    events = [(incident_id, "update", json.dumps(detail))]
    events += [(m, "update", member_detail) for m in members]
    record_events(conn, events, now)
    return PostedUpdate(
        incident_id, scope, device_id, severity, summary, text, next_update_at, len(members)
    )


def mark_promise_missed(
    conn: psycopg.Connection, incident_id: int, promised: datetime, now: datetime
) -> bool:
    """Note that the promised update did not come and staff were nudged; False if another
    process already did, or an update came meanwhile."""
    params = {"now": now, "id": incident_id, "promised": promised}
    if not conn.execute(_MISSED, params).rowcount:
        return False
    detail = {"promised": promised.isoformat()}
    record_events(conn, [(incident_id, "update_promise_missed", json.dumps(detail))], now)
    return True
