"""One device's heartbeat history over a time range, at a chosen resolution.

raw          the heartbeats themselves
5m, 1h, 1d   summaries: on TimescaleDB from the continuous aggregate `heartbeats_5m`
             (re-bucketed above 5 minutes); on plain PostgreSQL `date_bin` over the
             heartbeats, so the day partitions outside the range are never read.
"""

from __future__ import annotations

from datetime import datetime

import psycopg

RESOLUTIONS = {"raw": None, "5m": "5 minutes", "1h": "1 hour", "1d": "1 day"}
RAW_LIMIT = 20_000

_RAW = """
SELECT ts, seq, fw, uptime_s, metrics FROM heartbeats
WHERE device_id = %(device)s AND ts >= %(from)s AND ts < %(to)s
ORDER BY ts LIMIT %(limit)s
"""

_ORIGIN = "timestamptz '2000-01-01 00:00:00+00'"

_BINNED_RAW = f"""
SELECT date_bin(%(step)s::interval, ts, {_ORIGIN}) AS bucket,
       count(*),
       min(uptime_s),
       avg((metrics ->> 'battery_pct')::float8),
       min((metrics ->> 'battery_pct')::float8),
       avg((metrics ->> 'temp_c')::float8),
       max((metrics ->> 'temp_c')::float8),
       avg((metrics ->> 'rssi_dbm')::float8)
FROM heartbeats
WHERE device_id = %(device)s AND ts >= %(from)s AND ts < %(to)s
GROUP BY 1 ORDER BY 1
"""

# Averages of 5-minute averages are weighted by their heartbeats, so an hour reads the
# same as if it had been computed from the raw rows.
_BINNED_AGGREGATE = f"""
SELECT date_bin(%(step)s::interval, bucket, {_ORIGIN}) AS b,
       sum(heartbeats)::bigint,
       min(min_uptime_s),
       sum(avg_battery_pct * heartbeats) / nullif(sum(heartbeats) FILTER
           (WHERE avg_battery_pct IS NOT NULL), 0),
       min(min_battery_pct),
       sum(avg_temp_c * heartbeats) / nullif(sum(heartbeats) FILTER
           (WHERE avg_temp_c IS NOT NULL), 0),
       max(max_temp_c),
       sum(avg_rssi_dbm * heartbeats) / nullif(sum(heartbeats) FILTER
           (WHERE avg_rssi_dbm IS NOT NULL), 0)
FROM heartbeats_5m
WHERE device_id = %(device)s AND bucket >= %(from)s AND bucket < %(to)s
GROUP BY 1 ORDER BY 1
"""

SUMMARY_FIELDS = (
    "heartbeats",
    "min_uptime_s",
    "avg_battery_pct",
    "min_battery_pct",
    "avg_temp_c",
    "max_temp_c",
    "avg_rssi_dbm",
)


def flavour(conn: psycopg.Connection) -> str:
    """`timescaledb` or `postgres`: how this database was migrated."""
    row = conn.execute("SELECT flavour FROM schema_migrations ORDER BY version LIMIT 1").fetchone()
    return row[0] if row else "postgres"


def read_history(
    conn: psycopg.Connection,
    device_id: str,
    start: datetime,
    end: datetime,
    resolution: str,
    *,
    db_flavour: str,
) -> list[dict]:
    """Points oldest first: raw heartbeats, or one summary per bucket of `resolution`."""
    params = {"device": device_id, "from": start, "to": end}
    if RESOLUTIONS[resolution] is None:
        rows = conn.execute(_RAW, {**params, "limit": RAW_LIMIT}).fetchall()
        return [
            {"t": ts, "seq": seq, "fw": fw, "uptime_s": uptime, "metrics": metrics}
            for ts, seq, fw, uptime, metrics in rows
        ]
    sql = _BINNED_AGGREGATE if db_flavour == "timescaledb" else _BINNED_RAW
    rows = conn.execute(sql, {**params, "step": RESOLUTIONS[resolution]}).fetchall()
    return [{"t": row[0], **dict(zip(SUMMARY_FIELDS, row[1:], strict=True))} for row in rows]
