"""Release health over a million devices and 30 days of rollups.

    .venv/bin/python bench/release_health.py [--devices 1000000] [--days 30]
        [--requests 300] [--warmup 20] [--keep]

Loads a fresh database `fleetwatch_bench_release_health` with set-based SQL: `--devices`
devices over the seeded models, and `--days` days of their per-device rollup
(release_device_days: one row per device and day, four firmware versions a model, a fifth of
the devices updating during the window, reboots, offline minutes, battery drop, missed
heartbeats drawn at random) plus device incidents (about one per 200 device-days). Then runs
the rollup job's own daily rebuild (releases.rollup.rebuild_daily) over every day, timing
one day's rebuild apart: the cost the monitor's releases job pays for today on each step.

Then serves the real app (`api.app.create_app`) in its own process and times, one request
at a time on one keep-alive connection after `--warmup` untimed ones:
    GET /api/v1/releases/health?model=M&window_days=30   round the models
    GET /api/v1/models/M                                 the baseline: a key check and a
                                                         one-row read in the same run
Prints figures, then one line of JSON. The target: the release-health p95 under 1 s.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import psycopg

from api.auth import create_key
from bench.common import bench_database, bench_server, code_version
from harness.apiserver import ApiProcess
from harness.stats import percentile
from releases.rollup import rebuild_daily

DATABASE = "fleetwatch_bench_release_health"
REPO = Path(__file__).resolve().parent.parent
TARGET_MS = 1000.0

_MODELS = "SELECT id FROM device_models ORDER BY id"
_DEVICES = """
INSERT INTO devices (id, model_id, firmware)
SELECT 'dev-' || lpad(n::text, 7, '0'), (%(models)s::text[])[1 + n %% %(model_count)s], '1.3.0'
FROM generate_series(0, %(devices)s - 1) AS n
"""
# One day of every device's rollup. Versions 1.0.0..1.3.0 by device; a fifth of the devices
# move up one version on a day of their own. 1.3.0 reboots more (the regression to find).
_DEVICE_DAYS = """
INSERT INTO release_device_days (device_id, day, firmware, model_id, heartbeats, expected,
    reboots, update_reboots, offline_s, battery_drop, battery_samples, first_ts, last_ts)
SELECT id, %(day)s::date, fw, model_id, 1440 - missed, 1440,
       (random() < CASE WHEN fw = '1.3.0' THEN 0.04 ELSE 0.02 END)::int,
       (updated_today)::int,
       CASE WHEN random() < 0.01 THEN 600 + random() * 3600 ELSE 0 END,
       random() * 4, 1440 - missed,
       %(day)s::timestamp AT TIME ZONE 'UTC',
       %(day)s::timestamp AT TIME ZONE 'UTC' + interval '23 hours 59 minutes'
FROM (
    SELECT d.id, d.model_id,
           '1.' || least(3, n %% 4 + (n %% 5 = 0 AND %(day_no)s >= n %% %(days)s)::int) || '.0'
               AS fw,
           (n %% 5 = 0 AND n %% 4 < 3 AND %(day_no)s = n %% %(days)s) AS updated_today,
           (random() * random() * 20)::int AS missed
    FROM devices d, LATERAL (SELECT substr(d.id, 5)::int AS n) AS x
) AS s
"""
_INCIDENTS = """
INSERT INTO incidents (scope, device_id, kind, severity, status, opened_at, resolved_at,
                       summary)
SELECT 'device', 'dev-' || lpad((random() * (%(devices)s - 1))::int::text, 7, '0'),
       (ARRAY['offline', 'battery_low', 'unstable_connection'])[1 + (random() * 2)::int],
       'warning', 'resolved', at, at + interval '10 minutes', 'bench'
FROM (SELECT %(first)s::timestamptz + random() * (%(last)s::timestamptz - %(first)s)
      AS at FROM generate_series(1, %(count)s)) AS s
"""


def load(devices: int, days: int) -> tuple[str, dict, list[str], datetime]:
    steps: dict[str, float] = {}
    started = time.perf_counter()
    dsn = bench_database(DATABASE)
    steps["migrate"] = time.perf_counter() - started
    today = datetime.now(UTC).date()
    first = today - timedelta(days=days - 1)
    with psycopg.connect(dsn, autocommit=True) as conn:
        models = [m for (m,) in conn.execute(_MODELS)]
        t = time.perf_counter()
        conn.execute(_DEVICES, {"models": models, "model_count": len(models), "devices": devices})
        steps["devices"] = time.perf_counter() - t
        t = time.perf_counter()
        for day_no in range(days):
            day = first + timedelta(days=day_no)
            conn.execute(_DEVICE_DAYS, {"day": day, "day_no": day_no, "days": days})
            print(f"  device-days of {day}: {time.perf_counter() - t:.0f} s", flush=True)
        steps["device_days"] = time.perf_counter() - t
        t = time.perf_counter()
        conn.execute(
            _INCIDENTS,
            {
                "devices": devices,
                "count": devices * days // 200,
                "first": datetime(first.year, first.month, first.day, tzinfo=UTC),
                "last": datetime.now(UTC),
            },
        )
        steps["incidents"] = time.perf_counter() - t
        t = time.perf_counter()
        conn.execute("VACUUM ANALYZE release_device_days")
        conn.execute("ANALYZE incidents")
        steps["vacuum"] = time.perf_counter() - t
        t = time.perf_counter()
        with conn.transaction():
            rebuild_daily(conn, first, today - timedelta(days=1))
        steps["daily_rebuild_all_but_today"] = time.perf_counter() - t
        t = time.perf_counter()
        with conn.transaction():
            rebuild_daily(conn, today, today)
        steps["daily_rebuild_one_day"] = time.perf_counter() - t
        conn.execute("ANALYZE release_daily")
    return dsn, steps, models, datetime.now(UTC)


def measure(client: httpx.Client, paths: list[str], requests: int, warmup: int) -> dict:
    samples = []
    for i in range(warmup + requests):
        path = paths[i % len(paths)]
        started = time.perf_counter()
        response = client.get(path)
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise SystemExit(f"{path}: {response.status_code} {response.text[:200]}")
        if i >= warmup:
            samples.append(elapsed)
    return {
        "requests": requests,
        "p50_ms": round(percentile(samples, 50), 2),
        "p95_ms": round(percentile(samples, 95), 2),
        "p99_ms": round(percentile(samples, 99), 2),
        "max_ms": round(max(samples), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--keep", action="store_true", help="leave the database")
    args = parser.parse_args()
    if args.devices < 10 or not 1 <= args.days <= 90:
        parser.error("--devices at least 10, --days 1..90")

    code = code_version("releases", "api", "core")
    print(f"code: {code}")
    print(f"loading {args.devices:,} devices and {args.days} days of rollups", flush=True)
    started = time.perf_counter()
    dsn, steps, models, _ = load(args.devices, args.days)
    load_s = time.perf_counter() - started
    with psycopg.connect(dsn, autocommit=True) as conn:
        device_days = conn.execute("SELECT count(*) FROM release_device_days").fetchone()[0]
        daily_rows = conn.execute("SELECT count(*) FROM release_daily").fetchone()[0]
        incidents = conn.execute("SELECT count(*) FROM incidents").fetchone()[0]
        version = conn.execute("SHOW server_version").fetchone()[0]
        _key_id, key = create_key(conn, "staff", label="bench")
    print(
        f"loaded in {load_s:.0f} s: {device_days:,} device-days, {incidents:,} incidents, "
        f"{daily_rows:,} release_daily rows; the rollup's rebuild of one day of "
        f"{args.devices:,} device-days took {steps['daily_rebuild_one_day']:.2f} s",
        flush=True,
    )

    api = ApiProcess({"FLEETWATCH_DATABASE_URL": dsn}, cwd=REPO).start()
    try:
        with httpx.Client(
            base_url=api.url, headers={"Authorization": f"Bearer {key}"}, timeout=60
        ) as client:
            health_paths = [f"/api/v1/releases/health?model={m}&window_days=30" for m in models]
            sample = client.get(health_paths[0]).json()
            baseline = measure(
                client, [f"/api/v1/models/{m}" for m in models], args.requests, args.warmup
            )
            health = measure(client, health_paths, args.requests, args.warmup)
    finally:
        api.stop()
        if not args.keep:
            with psycopg.connect(bench_server(), autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')

    newest = sample["versions"][0]
    reboots = next(v for v in newest["vitals"] if v["name"] == "reboots")
    print(
        f"{args.requests} timed requests each, one at a time, after {args.warmup} untimed; "
        f"PostgreSQL {version} on the same {os.cpu_count()} cores as the API and this client"
    )
    for name, r in (("baseline /models/M", baseline), ("release health 30 d", health)):
        print(
            f"  {name:22} p50 {r['p50_ms']:8.2f} ms  p95 {r['p95_ms']:8.2f} ms  "
            f"p99 {r['p99_ms']:8.2f} ms  max {r['max_ms']:8.2f} ms  "
            f"(p95 x{r['p95_ms'] / baseline['p95_ms']:.1f} baseline)"
        )
    print(
        f"  {models[0]} {newest['firmware']} vs {newest['baseline']}: reboots ratio "
        f"{reboots['ratio']['estimate']:.2f} ({reboots['ratio']['low']:.2f}-"
        f"{reboots['ratio']['high']:.2f}) {reboots['verdict']} (the load makes it 2)"
    )
    ok = health["p95_ms"] < TARGET_MS
    print(f"target release health p95 under {TARGET_MS:g} ms: {'met' if ok else 'NOT met'}")
    print(
        json.dumps(
            {
                "bench": "release_health",
                "code": code,
                "devices": args.devices,
                "days": args.days,
                "device_days": device_days,
                "release_daily_rows": daily_rows,
                "incidents": incidents,
                "load_s": round(load_s, 1),
                "load_steps_s": {k: round(v, 2) for k, v in steps.items()},
                "baseline": baseline,
                "release_health": health,
                "target_ms": TARGET_MS,
                "target_ok": ok,
                "reboots_ratio": reboots["ratio"],
                "postgresql": version,
            }
        )
    )


if __name__ == "__main__":
    main()
