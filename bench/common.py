"""What the benchmarks share: a bench database, a backlog publisher, the code measured.

The broker, sinks and API server they stand up come from the harness (harness/)."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
from psycopg import conninfo

from core import db
from fleetwatch.embedded import start_embedded_postgres
from harness.ports import port_open

HEARTBEAT = {
    "ts": "",
    "seq": 0,
    "fw": "2.4.1",
    "uptime_s": 86400,
    "metrics": {"battery_pct": 87.5, "temp_c": 41.0, "rssi_dbm": -67},
}


def bench_server() -> str | None:
    """The PostgreSQL server benchmarks use: FLEETWATCH_BENCH_DATABASE_URL, else
    FLEETWATCH_DATABASE_URL, else the local one on 5432 if it answers; None if none does."""
    server = os.environ.get("FLEETWATCH_BENCH_DATABASE_URL") or os.environ.get(
        "FLEETWATCH_DATABASE_URL"
    )
    if server:
        return server
    if port_open(5432, timeout_s=0.5):
        return "postgresql://postgres@127.0.0.1:5432/postgres"
    return None


def bench_database(name: str) -> str:
    """A fresh, migrated database for a benchmark on the bench server (an embedded one when
    there is none)."""
    server = bench_server() or start_embedded_postgres(Path(".fleetwatch/bench-pg"))
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    url = conninfo.make_conninfo(server, dbname=name)
    db.migrate(url)
    return url


def _publish_part(port: int, prefix: str, devices: int, start: int, count: int) -> None:
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{start}", protocol=mqtt.MQTTv5
    )
    client.connect("127.0.0.1", port)
    client.loop_start()
    body = dict(HEARTBEAT)
    base = time.time() - 3600
    last = None
    for n in range(start, start + count):
        device = n % devices
        body["seq"] = n // devices
        body["ts"] = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(base + n / 1000))
        last = client.publish(
            f"{prefix}/dev-{device:05d}/heartbeat", json.dumps(body).encode(), qos=1
        )
        if n % 1000 == 0:
            last.wait_for_publish(60)
    last.wait_for_publish(60)
    client.disconnect()
    client.loop_stop()


def publish_backlog(port: int, prefix: str, devices: int, total: int, processes: int) -> float:
    """Publish `total` QoS 1 heartbeats from several processes; return the seconds it took."""
    share = total // processes
    started = time.perf_counter()
    procs = [
        multiprocessing.Process(
            target=_publish_part,
            args=(
                port,
                prefix,
                devices,
                i * share,
                share if i < processes - 1 else total - i * share,
            ),
        )
        for i in range(processes)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
        if proc.exitcode:
            raise SystemExit(f"a publisher failed with exit code {proc.exitcode}")
    return time.perf_counter() - started


def code_version(*paths: str) -> str:
    """The commit measured, and which of `paths` (the code a bench runs) had uncommitted
    changes."""
    repo = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", *paths],
            cwd=repo,
            capture_output=True,
            text=True,
        ).stdout.split("\n")
    except OSError:
        return "unknown"
    changed = sorted(line[3:] for line in dirty if line.strip())
    return commit + (f" with uncommitted {', '.join(changed)}" if changed else "")
