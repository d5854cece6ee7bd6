"""The staff API over a million devices: summary, device list pages, detail, history.

    .venv/bin/python bench/api.py [--devices 1000000] [--sample 200] [--requests 300]
        [--keep] [--reuse]

Loads the fleet with set-based SQL into a fresh database `fleetwatch_bench_api`: customers,
devices across the seeded models, firmware versions and regions, their `device_state`
(mostly online, about 1% offline with an open incident, 0.5% degraded), and a week of
heartbeats at their model's interval for `--sample` online devices. The heartbeats are
written in time order, interleaved across the sampled devices as the ingest writes them,
so one device's week is spread over many pages as it is in production.

Then serves the real app (`api.app.create_app`) with uvicorn in its own process, its
summary snapshot refreshing every `--summary-refresh` s as configured in production, and
times requests from this process with one keep-alive `httpx.Client`, one at a time, after
`--warmup` untimed ones per endpoint. The baseline, measured in the same run before and
after the endpoints, is `GET /healthz` (no database, no key): each endpoint's p95 is also
given as a multiple of it. Each device listing (all, status=offline, model=camera-v1) is
timed from its first page on, following `next_cursor` from page to page, and at random
depths: the page after a random device of the listing, with the cursor its predecessor's
`next_cursor` would be (made by `api.fleet.encode_cursor`). The device-list target counts
the worst of them. History requests go round the sampled devices; detail requests pick
devices across the whole fleet. Prints figures, then one line of JSON.

`--keep` leaves the database for a later run with `--reuse`, which skips the load when the
database holds a fleet of the same `--devices` and `--sample` (and applies any new
migration, so an index can be tried without loading again). Histories are then read
relative to the time of that load. Any other run replaces the kept database (a small trial
run too: they share its name).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import psycopg
from psycopg import conninfo

from api.auth import create_key
from api.fleet import encode_cursor
from bench.common import bench_database, bench_server, code_version
from core import db
from harness.apiserver import ApiProcess
from harness.stats import percentile

REPO = Path(__file__).resolve().parent.parent
DATABASE = "fleetwatch_bench_api"
WEEK = timedelta(days=7)

# What each endpoint's p95 must stay under at a million devices.
TARGETS_MS = {"summary": 50.0, "device_list": 50.0, "history_7d": 100.0}

# Shares of the fleet: a seeded model missing here gets weight 10.
MODEL_WEIGHTS = {
    "thermostat-v2": 30,
    "alarm-panel-v3": 20,
    "camera-v1": 25,
    "ev-charger-v1": 10,
    "car-telematics-v1": 15,
}
# Twenty versions, newest first; each older one on three quarters as many devices.
FIRMWARE = [f"2.{minor}.{patch}" for minor in (4, 3, 2, 1, 0) for patch in (3, 2, 1, 0)]
REGIONS = {
    "eu-west": 22,
    "eu-central": 18,
    "us-east": 16,
    "us-west": 12,
    "eu-north": 8,
    "us-central": 8,
    "ap-northeast": 6,
    "ap-southeast": 4,
    "ca-east": 4,
    "sa-east": 2,
}
TIMEZONES = (
    "Europe/London",
    "Europe/Berlin",
    "Europe/Paris",
    "Europe/Stockholm",
    "America/New_York",
    "America/Chicago",
    "America/Los_Angeles",
    "America/Toronto",
    "Asia/Tokyo",
    "Australia/Sydney",
)
ROOMS = ("Hallway", "Kitchen", "Garage", "Living room", "Front door", "Driveway", "Office")


def weighted_pool(weights: dict[str, float], size: int) -> list[str]:
    """`size` entries, each value as often as its weight says: pick one at random in SQL."""
    total = sum(weights.values())
    pool = []
    for value, weight in weights.items():
        pool += [value] * max(1, round(size * weight / total))
    return pool


_CUSTOMERS = """
INSERT INTO customers (id, name, timezone, created_at)
SELECT 'cust-' || lpad(g::text, 7, '0'), 'Customer ' || g,
       (%(timezones)s::text[])[1 + g %% cardinality(%(timezones)s::text[])],
       %(now)s - make_interval(days => 30 + g %% 1000)
FROM generate_series(1, %(customers)s) AS g
"""

# OFFSET 0 keeps each random() evaluated once per row (the subquery is not pulled up).
_DEVICES = """
INSERT INTO devices (id, model_id, name, serial, vin, firmware, customer_id, timezone, region,
                     labels, provisioned_at)
SELECT 'dev-' || lpad(g::text, 7, '0'), model,
       (%(rooms)s::text[])[1 + g %% cardinality(%(rooms)s::text[])] || ' '
           || split_part(model, '-', 1),
       'SN' || lpad(g::text, 9, '0'),
       CASE WHEN model LIKE 'car%%' THEN 'WBA' || lpad(g::text, 14, '0') END,
       firmware, 'cust-' || lpad(k::text, 7, '0'),
       (%(timezones)s::text[])[1 + k %% cardinality(%(timezones)s::text[])], region,
       CASE WHEN u < 0.03 THEN ARRAY['pilot'] WHEN u < 0.05 THEN ARRAY['vip'] ELSE '{}' END,
       %(now)s - make_interval(days => 7 + (u * 900)::int)
FROM (SELECT g, 1 + floor(random() * %(customers)s)::int AS k,
             (%(models)s::text[])[1 + floor(random() * cardinality(%(models)s::text[]))::int]
                 AS model,
             (%(firmware)s::text[])[1 + floor(random() * cardinality(%(firmware)s::text[]))::int]
                 AS firmware,
             (%(regions)s::text[])[1 + floor(random() * cardinality(%(regions)s::text[]))::int]
                 AS region,
             random() AS u
      FROM generate_series(1, %(devices)s) AS g OFFSET 0) AS s
"""

# 1% offline (silent from an hour to a month), 0.5% degraded (low battery, or hot when it
# has none), 0.2% provisioned and never heard, the rest online and heard within an interval.
_STATE = """
INSERT INTO device_state (device_id, status, status_changed_at, last_seen_at, last_received_at,
                          last_seq, last_uptime_s, firmware, last_metrics, overdue_at,
                          connectivity, connectivity_at)
SELECT id, status,
       CASE status WHEN 'offline' THEN seen + make_interval(secs => deadline_s)
                   WHEN 'provisioned' THEN provisioned_at
                   ELSE %(now)s - make_interval(secs => 3600 + w * 2592000) END,
       seen, seen + interval '0.2 s',
       CASE WHEN seen IS NOT NULL THEN 1000000 + (v * 100000)::bigint END,
       CASE WHEN seen IS NOT NULL THEN (w * 2592000)::bigint END,
       CASE WHEN seen IS NOT NULL THEN firmware END,
       CASE WHEN seen IS NOT NULL THEN jsonb_strip_nulls(jsonb_build_object(
           'battery_pct', CASE WHEN has_battery THEN round(CASE status
               WHEN 'degraded' THEN 3 + w * 9 ELSE 25 + w * 75 END::numeric, 1) END,
           'temp_c', round(CASE WHEN status = 'degraded' AND NOT has_battery THEN 75 + w * 10
                                ELSE 15 + w * 25 END::numeric, 1),
           'rssi_dbm', -45 - floor(v * 45)::int)) END,
       CASE WHEN status IN ('online', 'degraded') THEN seen + make_interval(secs => deadline_s)
       END,
       CASE WHEN seen IS NULL THEN NULL WHEN status = 'offline' THEN 'offline' ELSE 'online' END,
       CASE WHEN seen IS NOT NULL THEN %(now)s - make_interval(secs => 3600 + w * 2592000) END
FROM (SELECT s.*,
             CASE s.status
                 WHEN 'provisioned' THEN NULL
                 WHEN 'offline' THEN %(now)s - make_interval(secs => 3600 + s.v * 2592000)
                 ELSE %(now)s - make_interval(secs => s.v * s.iv) END AS seen
      FROM (SELECT d.id, d.firmware, d.provisioned_at, m.heartbeat_interval_s AS iv,
                   m.heartbeat_interval_s * m.allowed_misses + m.grace_s AS deadline_s,
                   m.health_rules @> '[{"metric": "battery_pct"}]' AS has_battery,
                   CASE WHEN d.u < 0.010 THEN 'offline' WHEN d.u < 0.015 THEN 'degraded'
                        WHEN d.u < 0.017 THEN 'provisioned' ELSE 'online' END AS status,
                   random() AS v, random() AS w
            FROM (SELECT id, model_id, firmware, provisioned_at, random() AS u
                  FROM devices OFFSET 0) AS d
            JOIN device_models m ON m.id = d.model_id OFFSET 0) AS s
      OFFSET 0) AS t
"""

# An open incident for each offline device, and a resolved one in the past for 3% of all.
_INCIDENTS = """
INSERT INTO incidents (scope, device_id, kind, severity, status, opened_at, resolved_at,
                       summary)
SELECT 'device', s.device_id, 'offline', CASE WHEN m.critical THEN 'critical' ELSE 'warning' END,
       'open', s.status_changed_at, NULL, d.name || ' went offline'
FROM device_state s JOIN devices d ON d.id = s.device_id JOIN device_models m ON m.id = d.model_id
WHERE s.status = 'offline'
UNION ALL
SELECT 'device', d.id, 'offline', 'warning', 'resolved', opened, opened + interval '25 minutes',
       d.name || ' went offline'
FROM (SELECT id, name, %(now)s - make_interval(secs => 86400 + random() * 7776000) AS opened
      FROM devices WHERE random() < 0.03 OFFSET 0) AS d
"""

_SAMPLE = """
SELECT device_id FROM device_state WHERE status = 'online'
ORDER BY md5(device_id || %(seed)s) LIMIT %(sample)s
"""

_PARTITIONS = """
SELECT fleetwatch_ensure_heartbeat_partitions(
    (%(start)s AT TIME ZONE 'UTC')::date - 1, (%(now)s AT TIME ZONE 'UTC')::date + 1)
"""

# Each sampled device beats every interval of its model from a phase of its own; battery
# drains over five days and recharges, temperature follows the day.
_HEARTBEATS = """
INSERT INTO heartbeats (device_id, ts, seq, received_at, fw, uptime_s, metrics)
SELECT device_id, ts, 1000000 + n, ts + make_interval(secs => 0.05 + random() * 0.4), fw,
       boot_s + elapsed,
       jsonb_strip_nulls(jsonb_build_object(
           'battery_pct', CASE WHEN has_battery THEN
               round((98 - 70 * ((elapsed %% 432000) / 432000.0) + random() * 2)::numeric, 1)
           END,
           'temp_c', round((21 + 6 * sin(2 * pi() * ((extract(epoch FROM ts)::bigint %% 86400)
                                                     / 86400.0)) + random() * 2)::numeric, 1),
           'rssi_dbm', -50 - floor(random() * 35)::int))
FROM (SELECT d.id AS device_id, d.firmware AS fw,
             m.health_rules @> '[{"metric": "battery_pct"}]' AS has_battery,
             n, p.phase + n * m.heartbeat_interval_s AS elapsed,
             %(start)s + make_interval(secs => p.phase + n * m.heartbeat_interval_s) AS ts,
             abs(hashtext(d.id || 'boot')) %% 2592000 AS boot_s
      FROM devices d
      JOIN device_models m ON m.id = d.model_id
      CROSS JOIN LATERAL (SELECT abs(hashtext(d.id)) %% m.heartbeat_interval_s AS phase) AS p
      CROSS JOIN LATERAL generate_series(0, %(week_s)s / m.heartbeat_interval_s - 1) AS n
      WHERE d.id = ANY(%(sample)s)
      OFFSET 0) AS h
ORDER BY ts
"""

# The sampled devices' state as their last heartbeat left it.
_SAMPLE_STATE = """
UPDATE device_state s
SET last_seen_at = h.ts, last_received_at = h.received_at, last_seq = h.seq,
    last_uptime_s = h.uptime_s, last_metrics = h.metrics
FROM (SELECT DISTINCT ON (device_id) device_id, ts, received_at, seq, uptime_s, metrics
      FROM heartbeats WHERE device_id = ANY(%(sample)s) ORDER BY device_id, ts DESC) AS h
WHERE s.device_id = h.device_id
"""

# What was loaded, so that --reuse knows whether the database fits.
_MARKER = """
CREATE TABLE bench_api_load (
    devices   integer NOT NULL,
    customers integer NOT NULL,
    sample    text[] NOT NULL,
    loaded_at timestamptz NOT NULL,
    load_s    real NOT NULL,
    heartbeats bigint NOT NULL
)
"""


@dataclass
class Fleet:
    dsn: str
    now: datetime  # the load's time: histories are read relative to it
    sample: list[str]
    heartbeats: int
    load_s: float
    steps: dict[str, float] = field(default_factory=dict)
    reused: bool = False


def reusable(devices: int, customers: int, sample: int) -> Fleet | None:
    """The kept database, if it holds a fleet of this size."""
    server = bench_server()
    if server is None:
        return None
    dsn = conninfo.make_conninfo(server, dbname=DATABASE)
    try:
        with psycopg.connect(dsn) as conn:
            if conn.execute("SELECT to_regclass('bench_api_load')").fetchone()[0] is None:
                return None
            row = conn.execute(
                "SELECT devices, customers, sample, loaded_at, load_s, heartbeats "
                "FROM bench_api_load"
            ).fetchone()
    except psycopg.OperationalError:
        return None
    if row is None or row[:2] != (devices, customers) or len(row[2]) != sample:
        return None
    applied = db.migrate(dsn)
    if applied:
        print(f"reused database: applied new migrations {applied}", flush=True)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("ANALYZE")
    return Fleet(dsn, row[3], list(row[2]), row[5], row[4], reused=True)


def load(devices: int, customers: int, sample: int, seed: int) -> Fleet:
    """A fresh database with the fleet, its state, incidents and the sample's heartbeats."""
    started = time.perf_counter()
    dsn = bench_database(DATABASE)
    now = datetime.now(UTC).replace(microsecond=0)
    steps = {"create_and_migrate": time.perf_counter() - started}
    print(f"  create and migrate: {steps['create_and_migrate']:.1f} s", flush=True)
    with psycopg.connect(dsn, autocommit=True) as conn:
        models = [r[0] for r in conn.execute("SELECT id FROM device_models ORDER BY id")]
        params = {
            "now": now,
            "start": now - WEEK,
            "week_s": int(WEEK.total_seconds()),
            "devices": devices,
            "customers": customers,
            "sample": sample,
            "seed": str(seed),
            "timezones": list(TIMEZONES),
            "rooms": list(ROOMS),
            "models": weighted_pool({m: MODEL_WEIGHTS.get(m, 10) for m in models}, 100),
            "firmware": weighted_pool({v: 0.75**i for i, v in enumerate(FIRMWARE)}, 400),
            "regions": weighted_pool(REGIONS, 100),
        }

        def step(name: str, query: str) -> psycopg.Cursor:
            begun = time.perf_counter()
            cur = conn.execute(query, params)
            steps[name] = time.perf_counter() - begun
            print(f"  {name}: {steps[name]:.1f} s", flush=True)
            return cur

        conn.execute("SET work_mem = '256MB'")
        conn.execute("SELECT setseed(%s)", (1 / (seed + 1),))
        with conn.transaction():
            step("customers", _CUSTOMERS)
            step("devices", _DEVICES)
            step("device_state", _STATE)
            step("incidents", _INCIDENTS)
        chosen = [r[0] for r in step("pick sample", _SAMPLE)]
        params["sample"] = chosen
        with conn.transaction():
            step("partitions", _PARTITIONS)
            heartbeats = step("heartbeats", _HEARTBEATS).rowcount
            step("sample state", _SAMPLE_STATE)
        step("vacuum analyze", "VACUUM ANALYZE")
        # So that no checkpoint started by the load lands in a timing.
        with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
            conn.execute("CHECKPOINT")
        load_s = time.perf_counter() - started
        conn.execute(_MARKER)
        conn.execute(
            "INSERT INTO bench_api_load VALUES (%s, %s, %s, %s, %s, %s)",
            (devices, customers, chosen, now, load_s, heartbeats),
        )
    return Fleet(dsn, now, chosen, heartbeats, load_s, steps)


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far; 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu() -> tuple[int, int]:
    """(all, idle) jiffies from /proc/stat."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    return sum(fields), fields[3] + fields[4]


_OTHERS_ACTIVE = """
SELECT count(*) FROM pg_stat_activity
WHERE backend_type = 'client backend' AND state <> 'idle' AND pid <> pg_backend_pid()
  AND datname IS DISTINCT FROM current_database()
"""

_API_BACKENDS = """
SELECT pid FROM pg_stat_activity
WHERE datname = current_database() AND application_name = 'fleetwatch-api'
"""


class Watch:
    """What ran beside a timing: other databases' busy sessions, the machine's CPU, the CPU
    of the API process, of its PostgreSQL backends (same machine) and of this process, and
    so what everything else used."""

    def __init__(self, dsn: str, api: ApiProcess) -> None:
        self.conn = psycopg.connect(dsn, autocommit=True)
        self.api = api
        self.busy_others = 0
        self.samples = 0
        self.max_load = 0.0

    def close(self) -> None:
        self.conn.close()

    def snapshot(self) -> dict:
        others = self.conn.execute(_OTHERS_ACTIVE).fetchone()[0]
        self.samples += 1
        self.busy_others += bool(others)
        self.max_load = max(self.max_load, os.getloadavg()[0])
        backends = {r[0] for r in self.conn.execute(_API_BACKENDS)}
        return {
            "at": time.monotonic(),
            "machine": machine_cpu(),
            "api": process_cpu_s(self.api.pid),
            "bench": process_cpu_s(os.getpid()),
            "backends": {pid: process_cpu_s(pid) for pid in backends},
        }

    @staticmethod
    def usage(before: dict, after: dict) -> dict:
        total, idle = (a - b for a, b in zip(after["machine"], before["machine"], strict=True))
        db_s = sum(
            after["backends"][pid] - before["backends"][pid]
            for pid in before["backends"].keys() & after["backends"].keys()
        )
        api_s, bench_s = after["api"] - before["api"], after["bench"] - before["bench"]
        busy_s = (total - idle) / os.sysconf("SC_CLK_TCK")
        return {
            "machine_busy": 1 - idle / total if total else 0.0,
            "api_cpu_s": api_s,
            "db_cpu_s": db_s,
            # CPU of everything else on the machine, in cores: others' tests, say.
            "other_cores": max(0.0, busy_s - api_s - db_s - bench_s) / (after["at"] - before["at"]),
        }


NextPath = Callable[[httpx.Response | None], str]


def walk(first: str) -> NextPath:
    """A listing's pages one after another by each page's next_cursor, then the first again."""

    def next_path(previous: httpx.Response | None) -> str:
        cursor = previous.json()["next_cursor"] if previous is not None else None
        return first if cursor is None else f"{first}&cursor={cursor}"

    return next_path


def rotate(paths: list[str]) -> NextPath:
    """The paths in turn, round and round."""
    turn = itertools.cycle(paths)
    return lambda previous: next(turn)


@dataclass
class Endpoint:
    name: str
    next_path: NextPath
    size: Callable[[dict], int] | None = None  # items or points in one answer
    target: str | None = None  # which of TARGETS_MS it counts towards


def measure(client: httpx.Client, endpoint: Endpoint, requests: int, warmup: int, watch) -> dict:
    """Time `requests` GETs one at a time after `warmup` untimed ones."""
    previous = None
    for _ in range(warmup):
        previous = fetch(client, endpoint.next_path(previous))
    before = watch.snapshot()
    seconds, sizes, body_bytes = [], [], 0
    loop_started = time.perf_counter()
    for _ in range(requests):
        path = endpoint.next_path(previous)
        started = time.perf_counter()
        previous = fetch(client, path)
        seconds.append(time.perf_counter() - started)
        body_bytes += len(previous.content)
        if endpoint.size is not None:
            sizes.append(endpoint.size(previous.json()))
    wall = time.perf_counter() - loop_started
    usage = Watch.usage(before, watch.snapshot())
    ms = [s * 1000 for s in seconds]
    return {
        "median_ms": round(statistics.median(ms), 2),
        "p95_ms": round(percentile(ms, 95), 2),
        "p99_ms": round(percentile(ms, 99), 2),
        "max_ms": round(max(ms), 2),
        "per_s": round(requests / wall, 1),
        "requests": requests,
        "mean_size": round(statistics.mean(sizes), 1) if sizes else None,
        "mean_kb": round(body_bytes / requests / 1024, 1),
        "api_cpu_ms": round(usage["api_cpu_s"] / requests * 1000, 2),
        "db_cpu_ms": round(usage["db_cpu_s"] / requests * 1000, 2),
        "machine_busy": round(usage["machine_busy"], 2),
        "other_cores": round(usage["other_cores"], 2),
        "samples_ms": ms,
    }


def fetch(client: httpx.Client, path: str) -> httpx.Response:
    response = client.get(path)
    if response.status_code != 200:
        raise SystemExit(f"GET {path}: {response.status_code} {response.text[:500]}")
    return response


def items(body: dict) -> int:
    return len(body["items"])


def points(body: dict) -> int:
    return len(body["points"])


# The listings timed, each from its first page on and at random depths: (name, query,
# the devices it lists).
LISTINGS = (
    ("devices", "", "SELECT id FROM devices WHERE retired_at IS NULL"),
    (
        "status=offline",
        "status=offline&",
        "SELECT device_id FROM device_state WHERE status = 'offline'",
    ),
    (
        "model=camera-v1",
        "model=camera-v1&",
        "SELECT id FROM devices WHERE model_id = 'camera-v1' AND retired_at IS NULL",
    ),
)


def deep_cursors(conn: psycopg.Connection, listed: str, count: int, seed: int) -> list[str]:
    """Cursors after random devices of a listing: the next_cursor of the page ending there."""
    ids = conn.execute(
        f"SELECT id FROM ({listed}) AS l(id) ORDER BY md5(id || %s) LIMIT %s", (str(seed), count)
    ).fetchall()
    return [encode_cursor(i) for (i,) in ids]


def endpoints(fleet: Fleet, devices: int, seed: int, count: int) -> list[Endpoint]:
    """What is timed, in order; `count` is how many requests each gets, warm-up included."""
    now = fleet.now
    week = {"from": (now - WEEK).isoformat(), "to": now.isoformat()}
    day = {"from": (now - timedelta(days=1)).isoformat(), "to": now.isoformat()}

    def history(span: dict, resolution: str) -> list[str]:
        query = httpx.QueryParams({**span, "resolution": resolution})
        return [f"/api/v1/devices/{d}/history?{query}" for d in fleet.sample]

    listings = [
        Endpoint("summary", rotate(["/api/v1/fleet/summary"]), None, "summary"),
        Endpoint("devices first page", rotate(["/api/v1/devices?limit=50"]), items, "device_list"),
    ]
    with psycopg.connect(fleet.dsn) as conn:
        for name, query, listed in LISTINGS:
            first = f"/api/v1/devices?{query}limit=50"
            deep = [f"{first}&cursor={c}" for c in deep_cursors(conn, listed, count, seed)]
            listings += [
                Endpoint(f"{name} from page 1", walk(first), items, "device_list"),
                Endpoint(f"{name} deep pages", rotate(deep), items, "device_list"),
            ]
    picks = random.Random(seed).sample(range(1, devices + 1), min(devices, count))
    return [
        *listings,
        Endpoint("device detail", rotate([f"/api/v1/devices/dev-{n:07d}" for n in picks])),
        Endpoint("history 7d 1h", rotate(history(week, "1h")), points, "history_7d"),
        Endpoint("history 7d 5m", rotate(history(week, "5m")), points, "history_7d"),
        Endpoint("history 24h raw", rotate(history(day, "raw")), points),
    ]


def server_facts(dsn: str) -> dict[str, str]:
    with psycopg.connect(dsn) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0].split()[0]
        settings = dict(
            conn.execute(
                "SELECT name, current_setting(name) FROM pg_settings WHERE name = ANY(%s)",
                (["shared_buffers", "work_mem", "jit", "random_page_cost"],),
            ).fetchall()
        )
        sizes = dict(
            conn.execute(
                "SELECT relname, pg_size_pretty(pg_total_relation_size(oid)) FROM pg_class "
                "WHERE relname IN ('devices', 'device_state')"
            ).fetchall()
        )
        flavour = conn.execute(
            "SELECT flavour FROM schema_migrations ORDER BY version LIMIT 1"
        ).fetchone()[0]
    return {"server_version": version, "flavour": flavour, **settings, **sizes}


def drop_database(dsn: str) -> None:
    server = bench_server() or conninfo.make_conninfo(dsn, dbname="postgres")
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')


def print_row(name: str, r: dict, baseline_p95: float) -> None:
    print(
        f"  {name:<28} median {r['median_ms']:6.1f}  p95 {r['p95_ms']:6.1f}  "
        f"p99 {r['p99_ms']:6.1f}  max {r['max_ms']:6.1f} ms  {r['per_s']:6.0f}/s  "
        f"p95 {r['p95_ms'] / baseline_p95:5.1f}x baseline; "
        f"CPU per request: API {r['api_cpu_ms']:.1f} ms, PostgreSQL {r['db_cpu_ms']:.1f} ms; "
        + (f"{r['mean_size']:g} per answer, " if r["mean_size"] is not None else "")
        + f"{r['mean_kb']:g} KiB; "
        f"machine {r['machine_busy']:.0%} busy, {r['other_cores']:.2f} cores by others",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, help="default: devices * 0.3")
    parser.add_argument("--sample", type=int, default=200, help="devices with a week of beats")
    parser.add_argument("--requests", type=int, default=300, help="timed, per endpoint")
    parser.add_argument("--warmup", type=int, default=20, help="untimed, per endpoint")
    parser.add_argument("--summary-refresh", type=float, default=5.0, help="seconds")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the database for --reuse")
    parser.add_argument("--reuse", action="store_true", help="use a kept database of this size")
    args = parser.parse_args()
    customers = args.customers or max(1, round(args.devices * 0.3))
    if not 1 <= args.sample <= args.devices // 2 or args.requests < 1:
        parser.error("--sample must be 1..devices/2 and --requests at least 1")

    code = code_version("api", "fleetwatch")
    print(f"code: {code}")
    fleet = reusable(args.devices, customers, args.sample) if args.reuse else None
    if fleet is not None:
        print(
            f"reusing {DATABASE}: {args.devices:,} devices, {fleet.heartbeats:,} heartbeats, "
            f"loaded {fleet.now:%Y-%m-%d %H:%M} UTC in {fleet.load_s:.1f} s",
            flush=True,
        )
    else:
        print(
            f"loading {args.devices:,} devices for {customers:,} customers, a week of "
            f"heartbeats for {args.sample} of them",
            flush=True,
        )
        fleet = load(args.devices, customers, args.sample, args.seed)
        print(f"loaded {fleet.heartbeats:,} heartbeats; load took {fleet.load_s:.1f} s", flush=True)
    facts = server_facts(fleet.dsn)
    cores = os.cpu_count()
    print(
        f"PostgreSQL {facts['server_version']} ({facts['flavour']}) on the same {cores} cores "
        f"(shared_buffers {facts['shared_buffers']}, work_mem {facts['work_mem']}, jit "
        f"{facts['jit']}); devices {facts.get('devices')}, device_state "
        f"{facts.get('device_state')} with their indexes",
        flush=True,
    )

    with psycopg.connect(fleet.dsn, autocommit=True) as conn:
        _key_id, key = create_key(conn, "staff", label="bench")
    # The API in its own process, as it is deployed: one uvicorn worker.
    api = ApiProcess(
        {
            "FLEETWATCH_DATABASE_URL": fleet.dsn,
            "FLEETWATCH_API_SUMMARY_REFRESH_S": str(args.summary_refresh),
        },
        cwd=REPO,
    ).start()
    watch = Watch(fleet.dsn, api)
    results: dict[str, dict] = {}
    try:
        client = httpx.Client(
            base_url=api.url, headers={"Authorization": f"Bearer {key}"}, timeout=60
        )
        with client:
            # The first summary counts the fleet (no snapshot yet); time it apart.
            started = time.perf_counter()
            first = fetch(client, "/api/v1/fleet/summary").json()
            first_summary_ms = (time.perf_counter() - started) * 1000
            if first["total"] != args.devices:
                raise SystemExit(f"summary counts {first['total']} devices, not {args.devices}")
            print(
                f"API on {api.url} (uvicorn, one process, summary refreshed every "
                f"{args.summary_refresh:g} s in the background); first summary, which counts "
                f"the fleet: {first_summary_ms:.0f} ms",
                flush=True,
            )
            timing_started = time.perf_counter()
            health = Endpoint("baseline /healthz", rotate(["/healthz"]))
            results["baseline_before"] = measure(client, health, args.requests, args.warmup, watch)
            timed = endpoints(fleet, args.devices, args.seed, args.requests + args.warmup)
            for endpoint in timed:
                results[endpoint.name] = measure(
                    client, endpoint, args.requests, args.warmup, watch
                )
                results[endpoint.name]["target"] = endpoint.target
                print(f"  timed {endpoint.name}", flush=True)
            results["baseline_after"] = measure(client, health, args.requests, args.warmup, watch)
            timing_s = time.perf_counter() - timing_started
    finally:
        watch.close()
        api.stop()
        if not args.keep:
            drop_database(fleet.dsn)

    pooled = results["baseline_before"]["samples_ms"] + results["baseline_after"]["samples_ms"]
    baseline_p95 = round(percentile(pooled, 95), 2)
    for r in results.values():
        del r["samples_ms"]
    print(
        f"{args.requests} timed requests per endpoint, one at a time on one keep-alive "
        f"connection, after {args.warmup} untimed; the baseline p95 is that of both /healthz "
        f"runs together ({baseline_p95:.2f} ms):"
    )
    for name, r in results.items():
        print_row(name, r, baseline_p95)

    figures = {}
    verdicts = {}
    for target, limit in TARGETS_MS.items():
        counted = {n: r for n, r in results.items() if r.get("target") == target}
        worst = max(counted, key=lambda n: counted[n]["p95_ms"])
        p95 = counted[worst]["p95_ms"]
        figures[f"{target}_p95_ms"] = p95
        figures[f"{target}_worst"] = worst
        figures[f"{target}_target_ms"] = limit
        figures[f"{target}_ok"] = p95 < limit
        verdicts[target] = (p95, limit, worst)
    for target, (p95, limit, worst) in verdicts.items():
        verdict = "met" if p95 < limit else "NOT met"
        print(f"target {target} p95 under {limit:g} ms: {verdict} ({p95:.1f} ms, worst: {worst})")
    failed = [t for t, (p95, limit, _) in verdicts.items() if p95 >= limit]
    print("all targets met" if not failed else f"targets failed: {', '.join(failed)}")

    refreshes = int(timing_s // args.summary_refresh)
    ran_beside = (
        f"postgresql {facts['server_version']} on the same {cores} cores; the API (one uvicorn "
        f"process) and this client on them too; the API's own summary refresh every "
        f"{args.summary_refresh:g} s, about {refreshes} times during the {timing_s:.0f} s of "
        "timing"
    )
    others = max(r["other_cores"] for r in results.values())
    ran_beside += f"; other processes used up to {others:.2f} cores during an endpoint"
    if watch.busy_others:
        ran_beside += (
            f"; another database was busy at {watch.busy_others} of {watch.samples} samples "
            f"(load average up to {watch.max_load:.2f}): figures may be disturbed"
        )
    else:
        ran_beside += f"; nothing else seen (load average up to {watch.max_load:.2f})"
    print(f"beside it: {ran_beside}")
    print(
        f"note: only the {len(fleet.sample)} sampled devices have heartbeats, so the day "
        "partitions are small and stay in the OS cache; in production they hold the whole "
        "fleet's, and one device's week (one heap page per heartbeat, as here) comes from "
        "disk far more often than from memory as here"
    )
    print(
        json.dumps(
            {
                "bench": "api",
                "devices": args.devices,
                "customers": customers,
                "sample": len(fleet.sample),
                "heartbeats": fleet.heartbeats,
                "requests": args.requests,
                "reused": fleet.reused,
                "load_s": round(fleet.load_s, 1),
                "load_steps_s": {k: round(v, 1) for k, v in fleet.steps.items()},
                "first_summary_ms": round(first_summary_ms),
                **figures,
                "targets_failed": failed,
                "baseline_p95_ms": baseline_p95,
                "endpoints": {
                    name: {**r, "p95_x_baseline": round(r["p95_ms"] / baseline_p95, 1)}
                    for name, r in results.items()
                },
                "summary_refresh_s": args.summary_refresh,
                "postgresql": facts["server_version"],
                "flavour": facts["flavour"],
                "code": code,
                "beside": ran_beside,
            }
        )
    )


if __name__ == "__main__":
    main()
