"""Keep the release rollups up to date from heartbeats, step by step behind a watermark.

Each step reads the heartbeats with ts in [rolled_to, upper) (a BRIN or hypertable index by
time), puts each device's previous heartbeat (release_cursor) in front of its first one,
and adds per (device, day, firmware):

    reboots         uptime went back on the same firmware (an update's reboot, where the
                    firmware changed, is counted apart)
    offline_s       silence past the device's offline threshold (its override, else the
                    model's interval * allowed misses + grace), on the day it came back
    expected        heartbeats owed since the previous one (silence / interval, at least 1)
    battery_drop    battery_pct decreases between consecutive heartbeats

then rebuilds release_daily for the days the step touched. Heartbeats stored later with a
ts behind the watermark are not counted: `upper` stays SETTLE behind the ingests' proven
watermark (ingest_status.caught_up_at) so that a broker backlog is in before it is read.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg

log = logging.getLogger(__name__)

# How far behind the ingests' watermark the rollup reads: heartbeats still in flight.
SETTLE = timedelta(minutes=2)
# A step reads at most this much time of heartbeats (one short transaction); a rollup that
# is behind catches up step after step (the job runs again at once while busy).
MAX_STEP = timedelta(minutes=15)
# A fresh database starts this far back (the heartbeats kept on plain PostgreSQL's
# partitions reach about a week back at first).
BACKFILL = timedelta(days=7)


@dataclass(frozen=True)
class Step:
    start: datetime
    end: datetime
    # More heartbeats wait behind `end`.
    more: bool


def next_step(
    rolled_to: datetime | None,
    horizon: datetime,
    now: datetime,
    earliest: datetime | None = None,
) -> Step | None:
    """The range of heartbeats the next step reads (None: nothing settled yet).

    The first step starts at the day of the earliest heartbeat within BACKFILL (`earliest`,
    read only while nothing was rolled up): a fresh install with no heartbeats has nothing to
    walk through, rather than a week of empty steps run back to back."""
    if rolled_to is not None:
        start = rolled_to
    elif earliest is not None:
        start = max(_day_start(now - BACKFILL), _day_start(earliest))
    else:
        return None
    upper = min(horizon, now) - SETTLE
    if upper <= start:
        return None
    end = min(upper, start + MAX_STEP)
    return Step(start, end, more=end < upper)


def _day_start(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


# One step at a time across every monitor (the state row may not exist yet to lock): the
# others skip their run rather than wait, and find the watermark moved at their next.
_ROLLUP_LOCK = 0x72656C68
_TRY_LOCK = "SELECT pg_try_advisory_xact_lock(%s)"
_STATE = "SELECT rolled_to FROM release_rollup_state"
# Read through the heartbeats' time index (a hypertable's own, or 030's on PostgreSQL).
_EARLIEST = "SELECT min(ts) FROM heartbeats WHERE ts >= %(since)s"
# The ingests' proven watermark; an ingest not heard from for INGEST_GONE holds nothing
# back (a row left by a client id no longer in use must not stop the rollup for good).
INGEST_GONE = timedelta(hours=1)
_HORIZON = """
SELECT max(caught_up_at) FROM ingest_status
WHERE caught_up_at IS NOT NULL AND updated_at > %(now)s - %(gone)s
"""

# Every heartbeat of the step with the one before it (from the step, else the cursor). A
# temporary table because three statements read it: the heartbeats are read once.
_ROWS = """
CREATE TEMP TABLE release_step ON COMMIT DROP AS
WITH batch AS (
    SELECT h.device_id, h.ts, h.seq, coalesce(h.fw, 'unknown') AS fw, h.uptime_s,
           (h.metrics ->> 'battery_pct')::float8 AS battery
    FROM heartbeats h
    WHERE h.ts >= %(start)s AND h.ts < %(end)s
),
ordered AS (
    SELECT b.*,
           lag(b.ts) OVER w AS p_ts, lag(b.uptime_s) OVER w AS p_uptime,
           lag(b.fw) OVER w AS p_fw, lag(b.battery) OVER w AS p_battery,
           row_number() OVER w AS n
    FROM batch b
    WINDOW w AS (PARTITION BY b.device_id ORDER BY b.ts, b.seq)
)
SELECT o.device_id, o.ts, o.seq, o.fw, o.uptime_s, o.battery,
       d.model_id,
       coalesce(d.offline_after_s, m.heartbeat_interval_s * m.allowed_misses + m.grace_s)
           AS offline_after_s,
       m.heartbeat_interval_s,
       CASE WHEN o.n = 1 THEN c.last_ts ELSE o.p_ts END AS prev_ts,
       CASE WHEN o.n = 1 THEN c.last_uptime_s ELSE o.p_uptime END AS prev_uptime,
       CASE WHEN o.n = 1 THEN c.last_fw ELSE o.p_fw END AS prev_fw,
       CASE WHEN o.n = 1 THEN c.last_battery ELSE o.p_battery END AS prev_battery
FROM ordered o
JOIN devices d ON d.id = o.device_id
JOIN device_models m ON m.id = d.model_id
LEFT JOIN release_cursor c ON c.device_id = o.device_id AND o.n = 1
"""

_DEVICE_DAYS = """
INSERT INTO release_device_days AS r (
    device_id, day, firmware, model_id, heartbeats, expected, reboots, update_reboots,
    offline_s, battery_drop, battery_samples, first_ts, last_ts)
SELECT device_id, (ts AT TIME ZONE 'UTC')::date, fw, min(model_id), count(*),
       sum(CASE WHEN prev_ts IS NULL THEN 1 ELSE greatest(1, round(
           extract(epoch FROM ts - prev_ts) / heartbeat_interval_s)) END),
       count(*) FILTER (WHERE uptime_s < prev_uptime AND fw = prev_fw),
       count(*) FILTER (WHERE uptime_s < prev_uptime AND fw <> prev_fw),
       coalesce(sum(greatest(0, extract(epoch FROM ts - prev_ts) - offline_after_s)), 0),
       coalesce(sum(greatest(0, prev_battery - battery)), 0),
       count(battery),
       min(ts), max(ts)
FROM release_step
GROUP BY 1, 2, 3
ON CONFLICT (device_id, day, firmware) DO UPDATE SET
    heartbeats = r.heartbeats + excluded.heartbeats,
    expected = r.expected + excluded.expected,
    reboots = r.reboots + excluded.reboots,
    update_reboots = r.update_reboots + excluded.update_reboots,
    offline_s = r.offline_s + excluded.offline_s,
    battery_drop = r.battery_drop + excluded.battery_drop,
    battery_samples = r.battery_samples + excluded.battery_samples,
    first_ts = least(r.first_ts, excluded.first_ts),
    last_ts = greatest(r.last_ts, excluded.last_ts)
"""

_CURSOR = """
INSERT INTO release_cursor AS c (device_id, last_ts, last_uptime_s, last_fw, last_battery)
SELECT DISTINCT ON (device_id) device_id, ts, uptime_s, fw, battery
FROM release_step
ORDER BY device_id, ts DESC, seq DESC
ON CONFLICT (device_id) DO UPDATE SET
    last_ts = excluded.last_ts, last_uptime_s = excluded.last_uptime_s,
    last_fw = excluded.last_fw, last_battery = excluded.last_battery
WHERE excluded.last_ts >= c.last_ts
"""

_SAVE = """
INSERT INTO release_rollup_state (rolled_to, updated_at) VALUES (%(end)s, %(now)s)
ON CONFLICT (id) DO UPDATE SET rolled_to = excluded.rolled_to, updated_at = excluded.updated_at
"""

# The days the step touched, rebuilt whole from the device-days: idempotent, and the
# incidents opened those days are charged to the firmware their device last ran by then.
_CLEAR_DAILY = "DELETE FROM release_daily WHERE day BETWEEN %(first)s AND %(last)s"
_DAILY = """
INSERT INTO release_daily (model_id, firmware, day, device_days, heartbeats, expected,
                           reboots, update_reboots, offline_s, battery_drop, battery_days,
                           incidents)
WITH days AS (
    SELECT model_id, firmware, day, count(*) AS device_days, sum(heartbeats) AS heartbeats,
           sum(expected) AS expected, sum(reboots) AS reboots,
           sum(update_reboots) AS update_reboots, sum(offline_s) AS offline_s,
           sum(battery_drop) FILTER (WHERE battery_samples >= 2) AS battery_drop,
           count(*) FILTER (WHERE battery_samples >= 2) AS battery_days
    FROM release_device_days
    WHERE day BETWEEN %(first)s AND %(last)s
    GROUP BY 1, 2, 3
),
charged AS (
    SELECT r.model_id, r.firmware, (i.opened_at AT TIME ZONE 'UTC')::date AS day, i.kind,
           count(*) AS n
    FROM incidents i
    JOIN LATERAL (
        SELECT model_id, firmware FROM release_device_days r
        WHERE r.device_id = i.device_id AND r.first_ts <= i.opened_at
          AND r.day <= (i.opened_at AT TIME ZONE 'UTC')::date
        ORDER BY r.day DESC, r.last_ts DESC LIMIT 1
    ) r ON true
    WHERE i.scope = 'device'
      AND i.opened_at >= %(first)s::timestamp AT TIME ZONE 'UTC'
      AND i.opened_at < (%(last)s::date + 1)::timestamp AT TIME ZONE 'UTC'
    GROUP BY 1, 2, 3, 4
),
by_kind AS (
    SELECT model_id, firmware, day, jsonb_object_agg(kind, n) AS incidents
    FROM charged GROUP BY 1, 2, 3
)
SELECT d.model_id, d.firmware, d.day, d.device_days, d.heartbeats, d.expected, d.reboots,
       d.update_reboots, d.offline_s, coalesce(d.battery_drop, 0), d.battery_days,
       coalesce(k.incidents, '{}')
FROM days d
LEFT JOIN by_kind k USING (model_id, firmware, day)
"""


@dataclass
class RollupResult:
    heartbeats: int = 0
    device_days: int = 0
    daily_rows: int = 0
    more: bool = False
    rolled_to: datetime | None = None
    seconds: float = 0.0


def roll_up(conn: psycopg.Connection, now: datetime) -> RollupResult:
    """One step of the rollup at `now`, in one transaction; `more` when it is behind."""
    started = time.perf_counter()
    result = RollupResult()
    with conn.transaction():
        if not conn.execute(_TRY_LOCK, (_ROLLUP_LOCK,)).fetchone()[0]:
            return result
        row = conn.execute(_STATE).fetchone()
        horizon = conn.execute(_HORIZON, {"now": now, "gone": INGEST_GONE}).fetchone()[0]
        horizon = horizon or now
        rolled_to = row[0] if row else None
        earliest = None
        if rolled_to is None:
            earliest = conn.execute(_EARLIEST, {"since": now - BACKFILL}).fetchone()[0]
        step = next_step(rolled_to, horizon, now, earliest)
        if step is None:
            return result
        args = {"start": step.start, "end": step.end, "now": now}
        result.heartbeats = conn.execute(_ROWS, args).rowcount
        result.device_days = conn.execute(_DEVICE_DAYS).rowcount
        conn.execute(_CURSOR)
        conn.execute(_SAVE, args)
        result.daily_rows = rebuild_daily(
            conn, step.start.astimezone(UTC).date(), step.end.astimezone(UTC).date()
        )
        result.more, result.rolled_to = step.more, step.end
    result.seconds = time.perf_counter() - started
    return result


def rebuild_daily(conn: psycopg.Connection, first, last) -> int:
    """Rebuild release_daily for the days first..last from the device-days; rows written."""
    days = {"first": first, "last": last}
    conn.execute(_CLEAR_DAILY, days)
    return conn.execute(_DAILY, days).rowcount
