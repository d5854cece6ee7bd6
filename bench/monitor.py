"""The monitor tick over a large fleet: idle, then with a share of it newly overdue.

    .venv/bin/python bench/monitor.py [--devices 1000000] [--share 0.01] [--runs 3]
                                      [--sites 300000] [--database NAME]

Loads the fleet with set-based SQL: customers with timezones and one email channel each
(nothing is sent), devices across the five seeded models, `device_state` online with its
deadlines spread over the next hours. Then, at one fixed `now`, times `Monitor.tick`:
idle (the three index reads and nothing due), then `--runs` times with a fresh `--share`
of the fleet made overdue just before `now`, split into find_transitions and
apply_transitions (and the parts of the latter). EXPLAINs the due query with a share due,
as a custom and as a generic plan, to show which index each of its three parts reads.
With `--sites N`, every customer's devices are one site (N customers, N sites) and the
runs are made twice in the one run: before the devices have their sites, and after (the
site correlation then reads each newly overdue device's site). Prints figures, then one
line of JSON.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg
from psycopg import sql

import incidents
import monitor.service
import monitor.transitions
from alerts.router import route_notices
from bench.common import bench_database, code_version
from core import db
from core.settings import Settings
from monitor.service import _DUE, MONITOR_SERVER_SETTINGS, Monitor
from monitor.status import DeviceWatch, next_status

MODELS = ("thermostat-v2", "alarm-panel-v3", "camera-v1", "ev-charger-v1", "car-telematics-v1")
TIMEZONES = (
    "Europe/Berlin",
    "Europe/London",
    "Europe/Paris",
    "America/New_York",
    "America/Los_Angeles",
    "Asia/Tokyo",
    "Australia/Sydney",
    "UTC",
)
# Which partial index each part of the due query (in UNION ALL order) should read.
DUE_INDEXES = ("device_state_watch", "device_state_back", "device_state_will")

# Every tenth customer has quiet hours, so routing holds some notifications.
_CUSTOMERS = """
INSERT INTO customers (id, name, timezone, quiet_hours_start, quiet_hours_end, created_at)
SELECT 'cust-' || lpad(g::text, 7, '0'), 'Customer ' || g,
       (%(timezones)s::text[])[1 + g %% cardinality(%(timezones)s::text[])],
       CASE WHEN g %% 10 = 0 THEN time '22:00' END,
       CASE WHEN g %% 10 = 0 THEN time '07:00' END,
       %(now)s - interval '400 days'
FROM generate_series(1, %(customers)s) AS g
"""

_CHANNELS = """
INSERT INTO contact_channels (customer_id, kind, apprise_url, label, created_at, verified_at,
                              address)
SELECT id, 'email', 'mailto://127.0.0.1:1?to=' || id || '@example.com&mode=insecure', 'email',
       created_at, created_at, lower(id) || '@example.com'
FROM customers
"""

# Device g belongs to customer 1 + (g - 1) % customers: two or three devices each.
_DEVICES = """
INSERT INTO devices (id, model_id, name, serial, firmware, customer_id, timezone, region,
                     provisioned_at)
SELECT 'dev-' || lpad(g::text, 7, '0'),
       (%(models)s::text[])[1 + g %% cardinality(%(models)s::text[])],
       'Device ' || g, 'SN' || lpad(g::text, 9, '0'), '2.4.1',
       'cust-' || lpad(k::text, 7, '0'),
       (%(timezones)s::text[])[1 + k %% cardinality(%(timezones)s::text[])],
       'region-' || (g %% 20), %(now)s - interval '300 days'
FROM (SELECT g, 1 + (g - 1) %% %(customers)s AS k
      FROM generate_series(1, %(devices)s) AS g) AS s
"""

# Online, heard within the last minute, deadlines from 5 minutes to 4 hours ahead.
_STATE = """
INSERT INTO device_state (device_id, status, status_changed_at, last_seen_at, last_received_at,
                          last_seq, last_uptime_s, firmware, last_metrics, overdue_at,
                          connectivity, connectivity_at)
SELECT 'dev-' || lpad(g::text, 7, '0'), 'online', %(now)s - interval '30 days',
       %(now)s - make_interval(secs => g %% 60), %(now)s - make_interval(secs => g %% 60),
       g, 86400, '2.4.1',
       '{"battery_pct": 87.5, "temp_c": 41.0, "rssi_dbm": -67}'::jsonb,
       %(now)s + make_interval(secs => 300 + (g::bigint * 7919) %% 14100),
       'online', %(now)s - interval '1 day'
FROM generate_series(1, %(devices)s) AS g
"""

# Newly overdue: the deadline passed within the last minute, four minutes after the last beat;
# no two deadlines alike (a microsecond apart), as in a real fleet.
_MAKE_OVERDUE = """
UPDATE device_state s
SET overdue_at = %(now)s - make_interval(secs => 1 + t.n %% 60 + t.n / 1e6),
    last_seen_at = %(now)s - make_interval(secs => 241 + t.n %% 60),
    last_received_at = %(now)s - make_interval(secs => 241 + t.n %% 60)
FROM unnest(%(ids)s::text[]) WITH ORDINALITY AS t(device_id, n)
WHERE s.device_id = t.device_id AND s.status = 'online'
"""

# Customer k's devices are the site 'site-k' (its home), created after the "before" runs.
_SITES = """
INSERT INTO sites (id, customer_id, name, address, timezone)
SELECT 'site-' || substr(id, 6), id, 'Home of ' || name, substr(id, 6) || ' Bench Street', timezone
FROM customers
"""
_PLACE_DEVICES = "UPDATE devices SET site_id = 'site-' || substr(customer_id, 6)"

_OUTCOME = """
SELECT (SELECT count(*) FROM device_state WHERE device_id = ANY(%(ids)s) AND status = 'offline'),
       (SELECT count(*) FROM incidents
        WHERE device_id = ANY(%(ids)s) AND status = 'open' AND kind = 'offline'),
       (SELECT count(*) FROM incident_events e JOIN incidents i ON i.id = e.incident_id
        WHERE i.device_id = ANY(%(ids)s) AND e.kind = 'opened'),
       (SELECT count(*) FROM notifications
        WHERE device_id = ANY(%(ids)s) AND status = 'pending' AND template = 'device_offline')
"""


def device_id(n: int) -> str:
    return f"dev-{n:07d}"


def load_fleet(dsn: str, *, devices: int, customers: int, now: datetime) -> dict[str, float]:
    """Customers, channels, devices and their state, set-based; seconds per step."""
    params = {
        "devices": devices,
        "customers": customers,
        "models": list(MODELS),
        "timezones": list(TIMEZONES),
        "now": now,
    }
    steps = {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        with conn.transaction():
            for name, query in (
                ("customers", _CUSTOMERS),
                ("channels", _CHANNELS),
                ("devices", _DEVICES),
                ("device_state", _STATE),
            ):
                started = time.perf_counter()
                conn.execute(query, params)
                steps[name] = time.perf_counter() - started
                print(f"  {name}: {steps[name]:.1f} s", flush=True)
        started = time.perf_counter()
        conn.execute("VACUUM ANALYZE")
        steps["vacuum_analyze"] = time.perf_counter() - started
        print(f"  vacuum analyze: {steps['vacuum_analyze']:.1f} s", flush=True)
        checkpoint(conn)
    return steps


def checkpoint(conn: psycopg.Connection) -> bool:
    """Write out dirty pages, so no checkpoint started by the setup lands inside a tick."""
    try:
        conn.execute("CHECKPOINT")
    except psycopg.errors.InsufficientPrivilege:
        return False
    return True


_CHECKPOINTS = "SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter"


def checkpoints_begun(dsn: str) -> int:
    """Checkpoints the server has begun so far. One begun during a tick writes every page
    the tick then changes first whole to the WAL: the largest noise in these figures when
    max_wal_size is small for the load (the server logs "checkpoints are occurring too
    frequently")."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(_CHECKPOINTS).fetchone()[0]


def make_overdue(dsn: str, ids: list[str], now: datetime, *, then_checkpoint: bool) -> int:
    # A device's deadline has nothing to do with its id: the deadlines (by position in the
    # list) go to the ids in a random order, so the due query hands them over in no id
    # order, as it does in a real fleet (with equal deadlines, it handed them over in the
    # table's order: the bench's is the ids').
    shuffled = random.Random(ids[0]).sample(ids, len(ids))
    with psycopg.connect(dsn, autocommit=True) as conn:
        changed = conn.execute(_MAKE_OVERDUE, {"ids": shuffled, "now": now}).rowcount
        if then_checkpoint:
            checkpoint(conn)
    return changed


def mark_ingest_receiving(dsn: str, now: datetime) -> None:
    """Tell the monitor's blind-spot guard that an ingest is receiving at `now`."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('ingest_status')").fetchone()[0] is None:
            return
        conn.execute(
            "INSERT INTO ingest_status (client_id, last_message_at, updated_at) "
            "VALUES ('bench', %(now)s, %(now)s) ON CONFLICT (client_id) DO UPDATE "
            "SET last_message_at = excluded.last_message_at, updated_at = excluded.updated_at",
            {"now": now},
        )


_OTHERS_ACTIVE = """
SELECT count(*) FROM pg_stat_activity
WHERE backend_type = 'client backend' AND state <> 'idle' AND pid <> pg_backend_pid()
  AND datname IS DISTINCT FROM current_database()
"""


@dataclass
class Beside:
    """What else was running when each tick started: other databases' busy sessions, load."""

    samples: list[tuple[int, float]] = field(default_factory=list)

    def sample(self, dsn: str) -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            others = conn.execute(_OTHERS_ACTIVE).fetchone()[0]
        self.samples.append((others, os.getloadavg()[0]))

    @property
    def busy_ticks(self) -> int:
        return sum(1 for others, _ in self.samples if others)

    @property
    def max_load(self) -> float:
        return max((load for _, load in self.samples), default=0.0)


@dataclass
class Stages:
    """Wall time in named functions, by wrapping them where the caller looks them up.

    `total` is each label's time with everything it calls; `own` leaves out the time of
    the other wrapped functions it calls, so the `own` times add up to the tick.
    """

    total: Counter = field(default_factory=Counter)
    own: Counter = field(default_factory=Counter)
    # CPU seconds of the ticking thread (timed_tick).
    client_cpu: float = 0.0
    _inner: list[float] = field(default_factory=list)

    @contextmanager
    def timing(self, targets: list[tuple[object, str, str]]) -> Iterator[Stages]:
        targets = [t for t in targets if hasattr(t[0], t[1])]
        originals = [(module, name, getattr(module, name)) for module, name, _ in targets]
        for (module, name, label), (_, _, original) in zip(targets, originals, strict=True):
            setattr(module, name, self._timed(original, label))
        try:
            yield self
        finally:
            for module, name, original in originals:
                setattr(module, name, original)

    def _timed(self, function: Callable, label: str) -> Callable:
        def timed(*args, **kwargs):
            self._inner.append(0.0)
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                took = time.perf_counter() - started
                inner = self._inner.pop()
                self.total[label] += took
                self.own[label] += took - inner
                if self._inner:
                    self._inner[-1] += took

        return timed


# Where Monitor.tick and apply_transitions look these up, and what each is printed as;
# indented ones run inside apply_transitions. A name the code no longer has is skipped
# (its time then counts in its caller's own time).
TICK_STAGES = [
    (monitor.service, "read_sight", "sight (blind-spot check)"),
    (monitor.service, "find_transitions", "find_transitions"),
    (monitor.service, "apply_transitions", "apply_transitions"),
    (monitor.transitions, "_open", "  open incidents (_open)"),
    (incidents, "open_device_incidents", "    insert incidents and their events"),
    (monitor.transitions, "record_incident_notices", "    record notices"),
    (monitor.transitions, "_flapping", "    flapping check"),
    (monitor.transitions, "_resolve", "  resolve incidents"),
    (monitor.service, "correlate_sites", "  site correlation"),
    (monitor.service, "resolve_sites", "  site resolution"),
    (monitor.service, "correlate", "  fleet correlation"),
    (monitor.service, "resolve_stable", "resolve_stable"),
]
APPLY_OWN = "  guarded update, commit, rest"


@dataclass
class Run:
    due: int
    seconds: float
    stages: Stages
    opened: int
    notifications: int
    checked: tuple[int, int, int, int]
    # The router after the tick (notices to outbox rows), which detection does not wait for.
    fanout_seconds: float = 0.0
    # Site and hub incidents the tick opened.
    sites_opened: int = 0
    # Checkpoints the server began while the tick ran.
    checkpoints: int = 0

    @property
    def find(self) -> float:
        return self.stages.total["find_transitions"]

    @property
    def apply(self) -> float:
        return self.stages.total["apply_transitions"]

    @property
    def split(self) -> dict[str, float]:
        """The tick's time by part: what each took, leaving out the parts listed inside it."""
        own = self.stages.own
        split = {}
        for _, _, label in TICK_STAGES:
            if label == "apply_transitions":
                split[label + " (all of it)"] = self.apply
                split[APPLY_OWN] = own[label]
            elif label in own:
                split[label] = own[label]
        split["rest of the tick"] = self.seconds - sum(own.values())
        return split


def timed_tick(watcher: Monitor, now: datetime) -> tuple[monitor.service.TickResult, Stages]:
    """The tick, its stages, and (as stages.client_cpu) the CPU seconds its own thread
    spent in Python and psycopg: the rest of its wall time is the database's."""
    stages = Stages()
    cpu = time.thread_time()
    with stages.timing(TICK_STAGES):
        result = watcher.tick(now)
    stages.client_cpu = time.thread_time() - cpu
    return result, stages


def explain_due(
    conn: psycopg.Connection, now: datetime, will_grace: timedelta, limit: int, mode: str
) -> tuple[list[dict], str, bool]:
    """EXPLAIN (ANALYZE, BUFFERS) the monitor's due query under plan_cache_mode `mode`.

    Returns one summary per UNION ALL part, the text plan, and whether JIT ran.
    """
    # Every limit the tick passes is the batch limit when nothing is held.
    prepared = (
        _DUE.replace("%(now)s", "$1")
        .replace("%(will_cutoff)s", "$2")
        .replace("%(limit)s", "$3")
        .replace("%(silent_limit)s", "$3")
        .replace("%(will_limit)s", "$3")
    )
    assert "%(" not in prepared, "the due query has a parameter this bench does not know"
    conn.execute("DEALLOCATE ALL")
    conn.execute(f"PREPARE bench_due (timestamptz, timestamptz, integer) AS {prepared}")
    conn.execute(sql.SQL("SET plan_cache_mode = {}").format(sql.Literal(mode)))
    execute = sql.SQL("EXECUTE bench_due ({}, {}, {})").format(
        sql.Literal(now), sql.Literal(now - will_grace), sql.Literal(limit)
    )
    plan = conn.execute(
        sql.SQL("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {}").format(execute)
    ).fetchone()[0][0]
    text = "\n".join(
        row[0] for row in conn.execute(sql.SQL("EXPLAIN (ANALYZE, BUFFERS) {}").format(execute))
    )
    conn.execute("RESET plan_cache_mode")
    conn.execute("DEALLOCATE bench_due")
    root = plan["Plan"]
    parts = root.get("Plans", []) if root["Node Type"] == "Append" else [root]
    summaries = []
    for index, part in zip(DUE_INDEXES, parts, strict=False):
        nodes = list(_walk(part))
        scans = [n for n in nodes if "Relation Name" in n or "Index Name" in n]
        summaries.append(
            {
                "index": index,
                "uses_index": any(n.get("Index Name") == index for n in nodes),
                "seq_scan": any(n["Node Type"] == "Seq Scan" for n in nodes),
                "scan": ", ".join(
                    n["Node Type"] + (f" on {n['Index Name']}" if "Index Name" in n else "")
                    for n in scans
                ),
                "rows": part.get("Actual Rows", 0),
                "ms": part.get("Actual Total Time", 0.0),
                "buffers": part.get("Shared Hit Blocks", 0) + part.get("Shared Read Blocks", 0),
            }
        )
    return summaries, text, "JIT" in plan


def _walk(node: dict) -> Iterator[dict]:
    yield node
    for child in node.get("Plans", []):
        yield from _walk(child)


def time_find_parts(
    conn: psycopg.Connection, now: datetime, will_grace: timedelta, limit: int
) -> tuple[float, float, int]:
    """Seconds for the due query with its fetch, and for deciding on the rows in Python."""
    started = time.perf_counter()
    rows = conn.execute(
        _DUE,
        {
            "now": now,
            "will_cutoff": now - will_grace,
            "limit": limit,
            "silent_limit": limit,
            "will_limit": limit,
        },
    ).fetchall()
    queried = time.perf_counter() - started
    started = time.perf_counter()
    for row in rows:
        next_status(DeviceWatch(*row), now, will_grace)
    return queried, time.perf_counter() - started, len(rows)


def server_facts(dsn: str) -> dict[str, str]:
    with psycopg.connect(dsn) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
        settings = dict(
            conn.execute(
                "SELECT name, current_setting(name) FROM pg_settings WHERE name = ANY(%s)",
                (["shared_buffers", "synchronous_commit", "jit", "work_mem", "max_wal_size"],),
            ).fetchall()
        )
    return {"server_version": version, **settings}


def idle_ticks(watcher: Monitor, now: datetime, count: int, beside: Beside) -> list[float]:
    """Seconds per tick with nothing due; the first one also connects."""
    seconds = []
    for _ in range(count):
        beside.sample(watcher.dsn)
        result, _stages = timed_tick(watcher, now)
        assert result.due == 0, f"{result.due} due in a fleet with nothing due"
        seconds.append(result.seconds)
    return seconds


def overdue_run(
    watcher: Monitor, now: datetime, ids: list[str], beside: Beside, *, then_checkpoint: bool
) -> Run:
    """Make `ids` newly overdue, tick once, and count what the tick left in the database."""
    made = make_overdue(watcher.dsn, ids, now, then_checkpoint=then_checkpoint)
    assert made == len(ids), f"only {made} of {len(ids)} made overdue"
    beside.sample(watcher.dsn)
    checkpoints = checkpoints_begun(watcher.dsn)
    result, stages = timed_tick(watcher, now)
    checkpoints = checkpoints_begun(watcher.dsn) - checkpoints
    started = time.perf_counter()
    notifications = 0
    with psycopg.connect(watcher.dsn, autocommit=True) as conn:
        while (routed := route_notices(conn, now, limit=5000)).notices:
            notifications += routed.notifications
    fanout_seconds = time.perf_counter() - started
    with psycopg.connect(watcher.dsn) as conn:
        checked = conn.execute(_OUTCOME, {"ids": ids}).fetchone()
    return Run(
        result.due,
        result.seconds,
        stages,
        result.applied.opened,
        notifications,
        checked,
        fanout_seconds,
        getattr(result.applied, "sites_opened", 0),
        checkpoints,
    )


# Every run ticks at the one `now`. With --sites, each run's devices are aged an hour after
# it, as if they had gone down an hour ago: otherwise three runs' devices of one home look
# silent together (a site incident the bench made up), and six runs' 1% add up to a
# region's fleet outage. Each set is aged once and the tables vacuumed after it, as an hour
# of autovacuum would have: aging every earlier set again before each run left 30,000-
# 50,000 fresh dead rows in device_state and incidents (and in all their indexes) for the
# runs after the sites to wade through, and only 0-20,000 for the runs before them.
_AGE = """
UPDATE device_state SET last_seen_at = last_seen_at - interval '1 hour',
       last_received_at = last_received_at - interval '1 hour',
       status_changed_at = status_changed_at - interval '1 hour'
WHERE device_id = ANY(%(ids)s)
"""
_AGE_INCIDENTS = """
UPDATE incidents SET opened_at = opened_at - interval '1 hour'
WHERE scope = 'device' AND device_id = ANY(%(ids)s)
"""


def age(dsn: str, ids: list[str]) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(_AGE, {"ids": ids})
        conn.execute(_AGE_INCIDENTS, {"ids": ids})
        conn.execute("VACUUM ANALYZE device_state")
        conn.execute("VACUUM ANALYZE incidents")


def overdue_runs(
    watcher: Monitor, now: datetime, sets: list[list[str]], beside: Beside, args
) -> list[Run]:
    runs = []
    for number, ids in enumerate(sets, 1):
        run = overdue_run(watcher, now, ids, beside, then_checkpoint=args.checkpoint_before_tick)
        runs.append(run)
        print(
            f"run {number}: {len(ids):,} made overdue; tick {run.seconds * 1000:.0f} ms: "
            f"{run.due:,} due, {run.opened:,} incidents opened, "
            f"{run.notifications:,} notifications queued by the router after it "
            f"in {run.fanout_seconds * 1000:.0f} ms"
            + (f"; {run.sites_opened} site incidents opened" if run.sites_opened else "")
            + (f"; {run.checkpoints} checkpoint(s) begun during it" if run.checkpoints else ""),
            flush=True,
        )
        for label, seconds in run.split.items():
            print(f"    {label:<32} {seconds * 1000:7.1f} ms")
        print(
            f"    of the tick, the monitor's own thread's CPU (Python, psycopg): "
            f"{run.stages.client_cpu * 1000:.0f} ms"
        )
        offline, incidents, events, notifications = run.checked
        print(
            f"    in the database: {offline:,} offline, {incidents:,} open incidents, "
            f"{events:,} opened events, {notifications:,} pending notifications"
        )
        if args.sites:
            age(watcher.dsn, ids)
    return runs


def place_in_sites(dsn: str) -> bool:
    """Each customer's devices become one site: the fleet as it is after a registry import.
    Whether devices could be read back into shared buffers after its rewrite."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        started = time.perf_counter()
        with conn.transaction():
            sites = conn.execute(_SITES).rowcount
            placed = conn.execute(_PLACE_DEVICES).rowcount
        conn.execute("VACUUM ANALYZE sites")
        # An import writes each device once, with its site; this UPDATE wrote a second copy
        # of every row. Compact it, and start the runs after as the runs before started:
        # with no dead rows in device_state and incidents left by the runs before (whose
        # dead index entries every due query of the next runs would otherwise read).
        conn.execute("VACUUM (FULL, ANALYZE) devices")
        # VACUUM FULL leaves the visibility map empty: every index-only read of devices
        # (devices_site, devices_label) then also read the table, where after an import
        # autovacuum would have set it (and the runs before had it set by the load's VACUUM).
        conn.execute("VACUUM devices")
        # The rewrite leaves devices and its indexes out of shared buffers, where the load
        # had put them for the runs before: every incident's registry join then read the
        # disk cache (~300 ms a tick). Read them back, so the runs differ by the sites only.
        warmed = prewarm(conn, "devices")
        conn.execute("VACUUM ANALYZE device_state")
        conn.execute("VACUUM ANALYZE incidents")
        conn.execute("VACUUM ANALYZE incident_events")
        checkpoint(conn)
        print(
            f"{sites:,} sites made and {placed:,} devices placed in them in "
            f"{time.perf_counter() - started:.1f} s; devices read back into shared buffers "
            + ("with pg_prewarm" if warmed else "NOT (no pg_prewarm): the runs after read it cold"),
            flush=True,
        )
    return warmed


def prewarm(conn: psycopg.Connection, table: str) -> bool:
    """Read `table` and its indexes into shared buffers (contrib's pg_prewarm); False where
    the extension is not there."""
    try:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
    except psycopg.Error:
        return False
    conn.execute(
        """SELECT pg_prewarm(c.oid) FROM pg_class c
           WHERE c.oid = %(t)s::regclass
              OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = %(t)s::regclass)""",
        {"t": table},
    )
    return True


def report_due_plans(dsn: str, now: datetime, settings: Settings, due: int) -> bool:
    """Time the due query's parts and EXPLAIN it; whether every part read its own index."""
    will_grace = timedelta(seconds=settings.monitor_will_grace_s)
    limit = settings.monitor_batch_limit
    all_use = True
    # With the monitor's own server settings (JIT off), so the plan is the tick's.
    with db.connect(dsn, server=MONITOR_SERVER_SETTINGS, autocommit=True) as conn:
        queried, decided, rows = time_find_parts(conn, now, will_grace, limit)
        print(
            f"find_transitions with {rows:,} due: query and fetch {queried * 1000:.0f} ms, "
            f"next_status in Python {decided * 1000:.0f} ms"
        )
        for mode in ("force_custom_plan", "force_generic_plan"):
            parts, text, jit = explain_due(conn, now, will_grace, limit, mode)
            print(f"EXPLAIN (ANALYZE, BUFFERS) of the due query, {mode}, {due:,} due:")
            for part in parts:
                all_use = all_use and part["uses_index"] and not part["seq_scan"]
                verdict = "uses" if part["uses_index"] else "does NOT use"
                print(
                    f"    {verdict} {part['index']}: {part['scan']}; {part['rows']:,} rows, "
                    f"{part['buffers']:,} buffers, {part['ms']:.1f} ms"
                    + ("  <- SEQUENTIAL SCAN of device_state" if part["seq_scan"] else "")
                )
            if jit:
                print("    JIT compiled this plan")
            if mode == "force_custom_plan":
                print("\n".join("      " + line for line in text.splitlines()))
    return all_use


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, help="default: devices / 2.5")
    parser.add_argument("--share", type=float, default=0.01, help="newly overdue per run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--idle-ticks", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--sites",
        type=int,
        default=0,
        help="also time the runs after placing the devices in this many sites (one per "
        "customer: the customers default to this number)",
    )
    parser.add_argument(
        "--database",
        default="fleetwatch_bench_monitor",
        help="the bench database's name (dropped and made afresh)",
    )
    parser.add_argument(
        "--checkpoint-before-tick",
        action="store_true",
        help="CHECKPOINT after the setup of each run: every page the tick touches is then "
        "its first change since a checkpoint and is written whole to the WAL (worst case)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    customers = args.customers or args.sites or max(1, round(args.devices / 2.5))
    if args.sites and customers != args.sites:
        raise SystemExit("--sites makes one site per customer: leave --customers out")
    overdue = max(1, round(args.devices * args.share))
    if args.runs < 1 or args.idle_ticks < 2:
        raise SystemExit("--runs must be at least 1 and --idle-ticks at least 2")
    phases = 2 if args.sites else 1
    if overdue * (phases * args.runs + 1) > args.devices:
        raise SystemExit("--share * (--runs + 1) must fit in the fleet (twice the runs: --sites)")

    dsn = bench_database(args.database)
    facts = server_facts(dsn)
    cores = os.cpu_count()
    code = code_version("monitor", "alerts", "incidents", "core")
    print(f"code: {code}")
    print(
        f"PostgreSQL {facts['server_version']} on the same {cores} cores "
        f"(shared_buffers {facts['shared_buffers']}, synchronous_commit "
        f"{facts['synchronous_commit']}, jit {facts['jit']}); "
        f"load average {os.getloadavg()[0]:.2f} before loading",
        flush=True,
    )
    now = datetime.now(UTC).replace(microsecond=0)
    print(f"loading {args.devices:,} devices for {customers:,} customers", flush=True)
    started = time.perf_counter()
    steps = load_fleet(dsn, devices=args.devices, customers=customers, now=now)
    load_s = time.perf_counter() - started
    print(f"loaded in {load_s:.1f} s", flush=True)
    mark_ingest_receiving(dsn, now)

    # Disjoint fresh picks: one set per run and one more for the EXPLAIN.
    count = phases * args.runs + 1
    picks = random.Random(args.seed).sample(range(1, args.devices + 1), overdue * count)
    sets = [
        [device_id(n) for n in sorted(picks[i * overdue : (i + 1) * overdue])] for i in range(count)
    ]
    settings = Settings(database_url=dsn)
    if overdue > settings.monitor_batch_limit:
        print(f"note: a tick takes at most {settings.monitor_batch_limit:,} (monitor_batch_limit)")
    beside = Beside()
    watcher = Monitor(settings, dsn)
    gc.freeze()  # as the monitor process does when it starts (core/worker.py run_forever)
    try:
        # A periodic job of its own in the running monitor, never part of a tick.
        started = time.perf_counter()
        watcher.refresh_group_sizes()
        sizes_s = time.perf_counter() - started
        print(f"group sizes for the fleet correlation (periodic job): {sizes_s:.2f} s")
        idle = idle_ticks(watcher, now, args.idle_ticks, beside)
        idle_s = statistics.median(idle[1:])
        print(
            f"idle tick (nothing due): median {idle_s * 1000:.1f} ms over {len(idle) - 1} "
            f"ticks; first {idle[0] * 1000:.1f} ms (includes connecting)",
            flush=True,
        )
        runs = overdue_runs(watcher, now, sets[: args.runs], beside, args)
        site_runs: list[Run] = []
        if args.sites:
            prewarmed = place_in_sites(dsn)
            print("after: every device in its customer's site", flush=True)
            site_runs = overdue_runs(watcher, now, sets[args.runs : 2 * args.runs], beside, args)
        after = idle_ticks(watcher, now, args.idle_ticks, Beside())
        idle_after_s = statistics.median(after)
        print(
            f"idle tick after the runs, {sum(r.opened for r in runs + site_runs):,} devices "
            f"now down "
            f"(the second part of the due query reads every down device): "
            f"median {idle_after_s * 1000:.1f} ms, first {after[0] * 1000:.1f} ms",
            flush=True,
        )
    finally:
        watcher.stop()

    ticks = [r.seconds for r in runs]
    tick_s, tick_max = statistics.median(ticks), max(ticks)
    finds = [r.find for r in runs]
    applies = [r.apply for r in runs]
    counts_ok = all(
        r.due == r.opened == r.notifications == overdue and r.checked == (overdue,) * 4
        for r in runs
    )
    print(
        f"tick with {overdue:,} ({args.share:.1%}) newly overdue: median {tick_s * 1000:.0f} ms, "
        f"max {tick_max * 1000:.0f} ms over {len(runs)} runs "
        f"(find median {statistics.median(finds) * 1000:.0f} ms, "
        f"apply median {statistics.median(applies) * 1000:.0f} ms); "
        f"ratio to the idle tick {tick_s / idle_s:.0f}x; "
        f"target under 1 s: {'met' if tick_max < 1 else 'NOT met'}; "
        f"{overdue:,} incidents and notifications per run: "
        f"{'yes' if counts_ok else 'NO, see the runs above'}"
    )

    sites_summary = {}
    if site_runs:
        site_ticks = [r.seconds for r in site_runs]
        # Two or three of one home picked in one run are silent together: a site incident
        # holds their own alerts and sends one (or the home had a device down an hour
        # before). Every device still has its incident.
        site_ok = all(
            r.due == r.opened == overdue and r.checked[:3] == (overdue,) * 3 for r in site_runs
        )
        sites_summary = {
            "sites": args.sites,
            "before_tick_ms_median": round(tick_s * 1000),
            "before_tick_ms_max": round(tick_max * 1000),
            "after_tick_ms_median": round(statistics.median(site_ticks) * 1000),
            "after_tick_ms_max": round(max(site_ticks) * 1000),
            "after_tick_ms_runs": [round(t * 1000) for t in site_ticks],
            "after_checkpoints_during_ticks": [r.checkpoints for r in site_runs],
            "after_client_cpu_ms": [round(r.stages.client_cpu * 1000) for r in site_runs],
            "after_site_correlation_ms_median": round(
                statistics.median(r.stages.total["  site correlation"] for r in site_runs) * 1000
            ),
            "after_counts_ok": site_ok,
            "after_devices_prewarmed": prewarmed,
            "after_site_incidents": [r.sites_opened for r in site_runs],
            "after_target_under_1s": max(site_ticks) < 1,
        }
        print(
            f"with {args.sites:,} sites: tick median {sites_summary['after_tick_ms_median']} ms, "
            f"max {sites_summary['after_tick_ms_max']} ms (before: median "
            f"{sites_summary['before_tick_ms_median']} ms, max "
            f"{sites_summary['before_tick_ms_max']} ms); site correlation median "
            f"{sites_summary['after_site_correlation_ms_median']} ms; target under 1 s: "
            f"{'met' if max(site_ticks) < 1 else 'NOT met'}; counts "
            f"{'ok' if site_ok else 'WRONG'}"
        )

    make_overdue(dsn, sets[-1], now, then_checkpoint=False)
    all_use = report_due_plans(dsn, now, settings, overdue)

    if beside.busy_ticks:
        ran_beside = (
            f"postgresql on the same {cores} cores; another database was busy when "
            f"{beside.busy_ticks} of {len(beside.samples)} ticks started "
            f"(load average up to {beside.max_load:.2f}): figures may be disturbed"
        )
    else:
        ran_beside = f"postgresql on the same {cores} cores, nothing else"
    print(f"beside it: {ran_beside}")
    print(
        json.dumps(
            {
                "bench": "monitor",
                "devices": args.devices,
                "customers": customers,
                "overdue_per_run": overdue,
                "load_s": round(load_s, 1),
                "load_steps_s": {k: round(v, 1) for k, v in steps.items()},
                "idle_tick_ms": round(idle_s * 1000, 1),
                "idle_tick_after_runs_ms": round(idle_after_s * 1000, 1),
                "tick_ms_median": round(tick_s * 1000),
                "tick_ms_max": round(tick_max * 1000),
                "tick_ms_runs": [round(t * 1000) for t in ticks],
                "checkpoints_during_ticks": [r.checkpoints for r in runs],
                "client_cpu_ms": [round(r.stages.client_cpu * 1000) for r in runs],
                "max_wal_size": facts["max_wal_size"],
                "find_ms_median": round(statistics.median(finds) * 1000),
                "apply_ms_median": round(statistics.median(applies) * 1000),
                "ratio_tick_to_idle": round(tick_s / idle_s, 1),
                "opened": [r.opened for r in runs],
                "notifications": [r.notifications for r in runs],
                "fanout_ms_median": round(statistics.median(r.fanout_seconds for r in runs) * 1000),
                "group_sizes_s": round(sizes_s, 2),
                "counts_ok": counts_ok,
                "due_query_uses_partial_indexes": all_use,
                "target_under_1s": tick_max < 1,
                "postgresql": facts["server_version"],
                "checkpoint_before_tick": args.checkpoint_before_tick,
                "code": code,
                "beside": ran_beside,
                **sites_summary,
            }
        )
    )


if __name__ == "__main__":
    main()
