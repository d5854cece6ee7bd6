"""Reading whether the monitor can see the fleet, and recording blind spots as incidents."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import psycopg

import incidents
from alerts.context import duration_text
from alerts.notices import record_notices, to_staff
from incidents import GroupProblem
from monitor.blind_spot import Sight, is_stale

log = logging.getLogger(__name__)

# The watermark is the slowest live ingest's (one not heard from in a while is gone, or
# stuck, and is left out); if none is live, the latest any had, which then stands still.
_INGESTS = """
SELECT max(last_message_at),
       coalesce(min(caught_up_at) FILTER (WHERE updated_at > now() - %(gone)s),
                max(caught_up_at)),
       max(broker_back_at)
FROM ingest_status
"""

# Only asked when the flow looks stale, so a normal tick never pays for it.
_EXPECTED_PER_S = """
SELECT coalesce(sum(1.0 / m.heartbeat_interval_s), 0)
FROM device_state s
JOIN devices d ON d.id = s.device_id
JOIN device_models m ON m.id = d.model_id
WHERE s.status IN ('online', 'degraded')
"""

_BLIND_SPOTS = """
SELECT (SELECT opened_at FROM incidents
        WHERE scope = 'system' AND kind = 'blind_spot' AND status <> 'resolved'),
       (SELECT max(resolved_at) FROM incidents
        WHERE scope = 'system' AND kind = 'blind_spot')
"""

_OPEN_BLIND_SPOT = """
SELECT id, opened_at FROM incidents
WHERE scope = 'system' AND kind = 'blind_spot' AND status <> 'resolved'
"""


def read_sight(
    conn: psycopg.Connection,
    now: datetime,
    window: timedelta,
    ingest_gone: timedelta = timedelta(seconds=60),
) -> Sight:
    """The data flow as stored: last receipt, watermark, blind spots, and, if stale, the
    expected rate."""
    last, caught_up, back = conn.execute(_INGESTS, {"gone": ingest_gone}).fetchone()
    blind_since, last_end = conn.execute(_BLIND_SPOTS).fetchone()
    sight = Sight(last, 0.0, blind_since, last_end, caught_up, back)
    # The fleet-wide rate is read only on the way into a blind spot, not on every tick.
    if blind_since is None and is_stale(sight, now, window):
        sight = replace(sight, expected_per_s=float(conn.execute(_EXPECTED_PER_S).fetchone()[0]))
    return sight


def open_blind_spot(conn: psycopg.Connection, sight: Sight, now: datetime) -> bool:
    """Open the blind-spot incident and tell staff; False if another monitor already did."""
    since = sight.last_message_at
    with conn.transaction():
        opened = incidents.open_group_incident(
            conn,
            GroupProblem(
                "system",
                "blind_spot",
                "ingest",
                "critical",
                "No heartbeats from anyone: offline decisions held",
                {"last_message_at": since.isoformat() if since else None},
            ),
            now,
        )
        if opened is None:
            return False
        context = {
            "since_utc": f"{since.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC" if since else "ever",
            "expected_per_min": round(sight.expected_per_s * 60),
        }
        notice = to_staff("system_blind_spot", "critical", incident_id=opened.id, context=context)
        record_notices(conn, [notice], now)
    log.warning(
        "blind spot: no message from any ingest since %s; offline decisions held",
        sight.last_message_at,
    )
    return True


def close_blind_spot(conn: psycopg.Connection, now: datetime, grace: timedelta) -> bool:
    """Resolve the blind-spot incident and tell staff; False if there was none open."""
    with conn.transaction():
        row = conn.execute(_OPEN_BLIND_SPOT).fetchone()
        if row is None:
            return False
        incident_id, opened_at = row
        if not incidents.resolve(conn, [incident_id], now, reason="messages flow again"):
            return False
        context = {
            "back_utc": f"{now.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC",
            "duration": duration_text(now - opened_at),
            "grace": duration_text(grace),
        }
        notice = to_staff(
            "system_blind_spot_resolved", "warning", incident_id=incident_id, context=context
        )
        record_notices(conn, [notice], now)
    log.info("blind spot over after %s; offline decisions wait %s", now - opened_at, grace)
    return True
