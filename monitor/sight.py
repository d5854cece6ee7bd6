"""Reading whether the monitor can see the fleet, and recording blind spots as incidents."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import psycopg

from alerts.context import duration_text
from alerts.outbox import enqueue_staff_notice
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

_OPEN = """
INSERT INTO incidents (scope, kind, severity, opened_at, summary, group_key, details)
VALUES ('system', 'blind_spot', 'critical', %(now)s,
        'No heartbeats from anyone: offline decisions held', 'ingest',
        jsonb_build_object('last_message_at', %(last)s::timestamptz))
ON CONFLICT DO NOTHING
RETURNING id
"""

_RESOLVE = """
UPDATE incidents SET status = 'resolved', resolved_at = %(now)s
WHERE scope = 'system' AND kind = 'blind_spot' AND status <> 'resolved'
RETURNING id, opened_at
"""

_EVENT = "INSERT INTO incident_events (incident_id, at, kind) VALUES (%s, %s, %s)"


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
    with conn.transaction():
        row = conn.execute(_OPEN, {"now": now, "last": sight.last_message_at}).fetchone()
        if row is None:
            return False
        conn.execute(_EVENT, (row[0], now, "opened"))
        since = sight.last_message_at
        context = {
            "since_utc": f"{since.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC" if since else "ever",
            "expected_per_min": round(sight.expected_per_s * 60),
        }
        enqueue_staff_notice(conn, row[0], "system_blind_spot", "critical", context, now)
    log.warning(
        "blind spot: no message from any ingest since %s; offline decisions held",
        sight.last_message_at,
    )
    return True


def close_blind_spot(conn: psycopg.Connection, now: datetime, grace: timedelta) -> bool:
    """Resolve the blind-spot incident and tell staff; False if there was none open."""
    with conn.transaction():
        row = conn.execute(_RESOLVE, {"now": now}).fetchone()
        if row is None:
            return False
        incident_id, opened_at = row
        conn.execute(_EVENT, (incident_id, now, "resolved"))
        context = {
            "back_utc": f"{now.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC",
            "duration": duration_text(now - opened_at),
            "grace": duration_text(grace),
        }
        enqueue_staff_notice(
            conn, incident_id, "system_blind_spot_resolved", "warning", context, now
        )
    log.info("blind spot over after %s; offline decisions wait %s", now - opened_at, grace)
    return True
