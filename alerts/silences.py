"""Silences: the one writer of `silences`. Staff's silences and maintenance windows, and an
owner's snooze of their device (`owner_id`); the router reads them (alerts/outbox.py
`silenced_until`) and holds what they cover until they end.

    add_silence     staff's silence of a device, a model or a label
    end_silence     staff end one early: what it held goes out now
    snooze_device   the owner's snooze; a second replaces the first (what the first held
                    then waits for the second's end)
    end_snooze      the owner ends their snooze: what it held goes out now
    owner_snooze    the owner's current snooze of a device, if any
"""

from __future__ import annotations

from datetime import datetime

import psycopg

from alerts.outbox import release_silence

COLUMNS = "id, scope, target, starts_at, ends_at, reason, maintenance, created_by"

_ADD = f"""
INSERT INTO silences (scope, target, starts_at, ends_at, reason, maintenance, created_by,
                      owner_id)
VALUES (%(scope)s, %(target)s, %(starts)s, %(ends)s, %(reason)s, %(maintenance)s, %(by)s,
        %(owner)s)
RETURNING {COLUMNS}
"""
_CURRENT = "SELECT ends_at FROM silences WHERE id = %s AND ends_at > %s FOR UPDATE"
_END = f"""
UPDATE silences SET ends_at = greatest(starts_at + interval '1 microsecond', %(now)s)
WHERE id = %(id)s RETURNING {COLUMNS}
"""
_OWNER_SNOOZES = """
SELECT id, ends_at FROM silences
WHERE scope = 'device' AND target = %(device)s AND owner_id = %(owner)s AND ends_at > %(now)s
ORDER BY id FOR UPDATE
"""


def add_silence(
    conn: psycopg.Connection,
    *,
    scope: str,
    target: str,
    starts: datetime,
    ends: datetime,
    reason: str,
    maintenance: bool,
    created_by: str,
    owner_id: str | None = None,
) -> tuple:
    """A new silence; its row (COLUMNS)."""
    params = {
        "scope": scope,
        "target": target,
        "starts": starts,
        "ends": ends,
        "reason": reason,
        "maintenance": maintenance,
        "by": created_by,
        "owner": owner_id,
    }
    return conn.execute(_ADD, params).fetchone()


def end_silence(conn: psycopg.Connection, silence_id: int, now: datetime) -> tuple | None:
    """End a current silence at `now` (inside the caller's transaction); its row, or None if
    it was not current. Notices it held (due at its old end) are due now."""
    row = conn.execute(_CURRENT, (silence_id, now)).fetchone()
    if row is None:
        return None
    ended = conn.execute(_END, {"now": now, "id": silence_id}).fetchone()
    release_silence(conn, old_end=row[0], scope=ended[1], target=ended[2], now=now)
    return ended


def owner_snooze(
    conn: psycopg.Connection, device_id: str, owner_id: str, now: datetime
) -> datetime | None:
    """When the owner's current snooze of this device ends, or None."""
    rows = conn.execute(
        _OWNER_SNOOZES.replace(" FOR UPDATE", ""),
        {"device": device_id, "owner": owner_id, "now": now},
    ).fetchall()
    return max((r[1] for r in rows), default=None)


def _end_owner_snoozes(conn, device_id: str, owner_id: str, now: datetime, due: datetime) -> int:
    ended = 0
    for silence_id, old_end in conn.execute(
        _OWNER_SNOOZES, {"device": device_id, "owner": owner_id, "now": now}
    ).fetchall():
        conn.execute(_END, {"now": now, "id": silence_id})
        release_silence(conn, old_end=old_end, scope="device", target=device_id, now=due)
        ended += 1
    return ended


def snooze_device(
    conn: psycopg.Connection, device_id: str, owner_id: str, until: datetime, by: str, now: datetime
) -> int:
    """The owner's snooze of their device until `until`, replacing any they had; its id.
    Runs in the caller's transaction."""
    _end_owner_snoozes(conn, device_id, owner_id, now, due=until)
    row = add_silence(
        conn,
        scope="device",
        target=device_id,
        starts=now,
        ends=until,
        reason="snoozed by the owner",
        maintenance=False,
        created_by=by,
        owner_id=owner_id,
    )
    return row[0]


def end_snooze(conn: psycopg.Connection, device_id: str, owner_id: str, now: datetime) -> bool:
    """The owner ends their snooze now; False if there was none. What it held goes now."""
    return _end_owner_snoozes(conn, device_id, owner_id, now, due=now) > 0
