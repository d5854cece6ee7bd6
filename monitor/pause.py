"""Pausing a device: its owner stops watching it on purpose, until it next reports.

Unplugged for the winter, sold, moved: the device is not expected to report, and its
silence is news to nobody. Paused, it is out of the monitor's watch index (no offline
incident, no message); its open offline or never-seen incident is resolved with the reason,
so no "back online" follows either. Its next heartbeat brings it back to online through the
monitor's recovery read (monitor/service.py `_DUE`, monitor/status.py `next_status`), and
watching resumes from there.
"""

from __future__ import annotations

import logging
from datetime import datetime

import psycopg

import incidents
from monitor.status import PAUSED

log = logging.getLogger(__name__)

# Guarded like every status change: of two racing, one pauses (retired stays retired).
_PAUSE = """
UPDATE device_state SET status = 'paused', status_changed_at = %(now)s
WHERE device_id = %(id)s AND status NOT IN ('paused', 'retired')
"""


def pause_device(conn: psycopg.Connection, device_id: str, by: str, now: datetime) -> bool:
    """Stop watching `device_id` until it reports again; False if it was paused or retired
    already. Its open offline/never-seen incident is resolved, saying who and why."""
    with conn.transaction():
        if not conn.execute(_PAUSE, {"now": now, "id": device_id}).rowcount:
            return False
        open_ids = incidents.find_open(conn, [device_id], ("offline", "never_seen"))
        incidents.resolve(conn, list(open_ids), now, by=by, reason="stopped_watching")
    log.info(
        "device %s: %s by %s; not watched until it reports again (%d incidents resolved)",
        device_id,
        PAUSED,
        by,
        len(open_ids),
    )
    return True
