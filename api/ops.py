"""Operations: liveness, readiness (database and broker reachable) and Prometheus metrics.

The metrics are read from the database at scrape time, so one scrape of any API process
shows the whole installation: what every ingest counted, the monitor's last tick, the
outbox and delivery failures.
"""

from __future__ import annotations

import threading
import uuid

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from psycopg_pool import ConnectionPool

from core.mqtt import connect_client, make_client
from core.settings import MqttTarget
from ingest.upkeep import overdue, read_jobs

router = APIRouter(tags=["operations"])


@router.get("/healthz")
def healthz() -> dict:
    """The process answers."""
    return {"status": "ok"}


def broker_reachable(target: MqttTarget, protocol: str, timeout: float = 2.0) -> bool:
    """Whether the broker accepts an MQTT connection from us within `timeout`."""
    accepted = threading.Event()
    client = make_client(target, f"fleetwatch-ready-{uuid.uuid4().hex[:8]}", protocol=protocol)
    client.on_connect = lambda c, u, f, rc, p: rc.is_failure or accepted.set()
    try:
        client.connect_timeout = timeout
        connect_client(client, target, keepalive=10)
        client.loop_start()
        return accepted.wait(timeout)
    except OSError:
        return False
    finally:
        client.loop_stop()
        if accepted.is_set():
            client.disconnect()


@router.get("/readyz")
def readyz(request: Request) -> JSONResponse:
    """200 when the database and the broker are reachable, else 503 saying which is not."""
    state = request.app.state
    checks = {"database": False, "broker": None}
    try:
        with state.pool.connection(timeout=2) as conn:
            checks["database"] = conn.execute("SELECT true").fetchone()[0]
            jobs = timescaledb_jobs(conn)
            if jobs is not None:
                # Detail, not readiness: heartbeats are still stored; the disk fills slowly.
                checks["timescaledb_jobs"] = jobs
    except Exception:  # any failure to reach it means not ready
        checks["database"] = False
    if state.mqtt_target is not None:
        checks["broker"] = broker_reachable(state.mqtt_target, state.mqtt_protocol)
    ready = checks["database"] and checks["broker"] is not False
    return JSONResponse({"ready": ready, **checks}, status_code=200 if ready else 503)


def timescaledb_jobs(conn) -> dict | None:
    """The TimescaleDB jobs our tables depend on, for /readyz (None on plain PostgreSQL)."""
    jobs = read_jobs(conn)
    if not jobs:
        return None
    now = conn.execute("SELECT now()").fetchone()[0]
    late = [j.label for j in jobs if overdue(j, now)]
    return {"ok": not late, "overdue": late, "failures": sum(j.failures for j in jobs)}


_INGEST = """
SELECT coalesce(sum(messages_total), 0), coalesce(sum(stored_total), 0),
       coalesce(sum(rejected_total), 0),
       extract(epoch FROM now() - max(last_message_at)), count(*)
FROM ingest_status
"""
_WATERMARKS = """
SELECT client_id, extract(epoch FROM now() - caught_up_at) FROM ingest_status
WHERE caught_up_at IS NOT NULL ORDER BY client_id
"""
_TICK = """
SELECT duration_ms, extract(epoch FROM now() - last_run) FROM monitor_runs WHERE job = 'tick'
"""
_OUTBOX = """
SELECT status, count(*) FROM notifications
WHERE status IN ('pending', 'held', 'sending') GROUP BY status
"""
_FAILED = "SELECT count(*) FROM notifications WHERE status = 'failed'"
_ATTEMPTS_FAILED = "SELECT count(*) FROM delivery_attempts WHERE ok = false"
_OVERDUE_OUTBOX = """
SELECT extract(epoch FROM now() - min(due_at)) FROM notifications
WHERE status = 'pending' AND due_at <= now()
"""
_INCIDENTS = "SELECT severity, count(*) FROM incidents WHERE status <> 'resolved' GROUP BY 1"
_NOTICES = """
SELECT count(*), extract(epoch FROM now() - min(created_at)) FROM notices WHERE routed_at IS NULL
"""
_WORKERS = """
SELECT worker, job, runs_total, errors_total, overruns_total,
       extract(epoch FROM now() - last_run_at)
FROM worker_jobs ORDER BY worker, job
"""


class DatabaseCollector:
    """Collects Fleetwatch's figures from the database at each scrape."""

    def __init__(self, pool: ConnectionPool, summary) -> None:
        self._pool = pool
        self._summary = summary

    def collect(self):
        with self._pool.connection(timeout=5) as conn:
            messages, stored, rejected, lag, ingests = conn.execute(_INGEST).fetchone()
            watermarks = conn.execute(_WATERMARKS).fetchall()
            tick = conn.execute(_TICK).fetchone()
            outbox = dict(conn.execute(_OUTBOX).fetchall())
            failed = conn.execute(_FAILED).fetchone()[0]
            attempts_failed = conn.execute(_ATTEMPTS_FAILED).fetchone()[0]
            outbox_late = conn.execute(_OVERDUE_OUTBOX).fetchone()[0]
            incidents = dict(conn.execute(_INCIDENTS).fetchall())
            unrouted, unrouted_age = conn.execute(_NOTICES).fetchone()
            jobs = read_jobs(conn)
            db_now = conn.execute("SELECT now()").fetchone()[0]
            workers = conn.execute(_WORKERS).fetchall()
        yield _counter(
            "fleetwatch_ingest_messages", "MQTT messages received by all ingests", messages
        )
        yield _counter("fleetwatch_ingest_stored", "Heartbeats stored by all ingests", stored)
        yield _counter(
            "fleetwatch_ingest_rejected",
            "Messages rejected and kept aside by all ingests",
            rejected,
        )
        yield _gauge(
            "fleetwatch_ingest_lag_seconds",
            "Seconds since any ingest last received a message",
            float(lag) if lag is not None else float("nan"),
        )
        yield _gauge("fleetwatch_ingest_processes", "Ingest processes that ever reported", ingests)
        behind = GaugeMetricFamily(
            "fleetwatch_ingest_watermark_lag_seconds",
            "How far behind now each ingest has stored all the broker accepted (its own ticks)",
            labels=["client_id"],
        )
        for client_id, seconds in watermarks:
            behind.add_metric([client_id], float(seconds))
        yield behind
        yield _gauge(
            "fleetwatch_monitor_tick_seconds",
            "How long the last monitor tick took",
            tick[0] / 1000 if tick and tick[0] is not None else float("nan"),
        )
        yield _gauge(
            "fleetwatch_monitor_tick_age_seconds",
            "Seconds since the last monitor tick",
            float(tick[1]) if tick else float("nan"),
        )
        depth = GaugeMetricFamily(
            "fleetwatch_outbox_depth", "Notifications waiting in the outbox", labels=["status"]
        )
        for status in ("pending", "held", "sending"):
            depth.add_metric([status], outbox.get(status, 0))
        yield depth
        yield _gauge(
            "fleetwatch_outbox_oldest_due_seconds",
            "How late the most overdue pending notification is",
            float(outbox_late) if outbox_late is not None else 0.0,
        )
        yield _counter(
            "fleetwatch_notifications_failed", "Notifications given up on for good", failed
        )
        yield _counter(
            "fleetwatch_delivery_failures",
            "Failed delivery attempts (retried or not)",
            attempts_failed,
        )
        open_incidents = GaugeMetricFamily(
            "fleetwatch_open_incidents", "Incidents not resolved", labels=["severity"]
        )
        for severity in ("info", "warning", "critical"):
            open_incidents.add_metric([severity], incidents.get(severity, 0))
        yield open_incidents
        yield _gauge("fleetwatch_notices_unrouted", "Notices waiting for the router", unrouted)
        yield _gauge(
            "fleetwatch_notices_oldest_unrouted_seconds",
            "How long the oldest notice not yet routed has waited",
            float(unrouted_age) if unrouted_age is not None else 0.0,
        )
        yield from _worker_metrics(workers)
        yield from _timescaledb_metrics(jobs, db_now)
        summary = self._summary.get()
        devices = GaugeMetricFamily(
            "fleetwatch_devices", "Registered devices by status", labels=["status"]
        )
        for status, n in sorted(summary.by_status.items()):
            devices.add_metric([status], n)
        yield devices


def _worker_metrics(rows):
    """Every long-running part's jobs (core/worker.py), summed over its processes."""
    labels = ["worker", "job"]
    runs = CounterMetricFamily(
        "fleetwatch_worker_runs", "Runs of each worker job, all processes", labels=labels
    )
    errors = CounterMetricFamily(
        "fleetwatch_worker_errors",
        "Runs that failed with an unexpected error (logged with its traceback)",
        labels=labels,
    )
    overruns = CounterMetricFamily(
        "fleetwatch_worker_overruns",
        "Runs skipped because the run before was still going",
        labels=labels,
    )
    age = GaugeMetricFamily(
        "fleetwatch_worker_last_run_age_seconds",
        "Seconds since a job last finished a run (reported every few seconds)",
        labels=labels,
    )
    for worker, job, n_runs, n_errors, n_overruns, seconds in rows:
        runs.add_metric([worker, job], n_runs)
        errors.add_metric([worker, job], n_errors)
        overruns.add_metric([worker, job], n_overruns)
        age.add_metric([worker, job], float(seconds) if seconds is not None else float("nan"))
    yield from (runs, errors, overruns, age)


def _timescaledb_metrics(jobs, now):
    """The TimescaleDB jobs our tables depend on (nothing on plain PostgreSQL)."""
    if not jobs:
        return
    labels = ["job", "proc", "target"]
    failures = CounterMetricFamily(
        "fleetwatch_timescaledb_job_failures",
        "Failed runs of a TimescaleDB job, its scheduler's and ours by hand",
        labels=labels,
    )
    age = GaugeMetricFamily(
        "fleetwatch_timescaledb_job_last_success_age_seconds",
        "Seconds since a TimescaleDB job last succeeded (NaN: never)",
        labels=labels,
    )
    late = GaugeMetricFamily(
        "fleetwatch_timescaledb_job_overdue",
        "1 when a job has not succeeded for longer than its interval allows",
        labels=labels,
    )
    for job in jobs:
        key = [str(job.job_id), job.proc_name, job.target]
        failures.add_metric(key, job.failures)
        last = job.last_ok_at
        age.add_metric(key, (now - last).total_seconds() if last else float("nan"))
        late.add_metric(key, 1.0 if overdue(job, now) else 0.0)
    yield from (failures, age, late)


def _counter(name: str, doc: str, value) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=float(value))


def _gauge(name: str, doc: str, value) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=float(value))


def metrics_registry(pool: ConnectionPool, summary) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(pool, summary))
    return registry


@router.get("/metrics", response_class=Response)
def metrics(request: Request) -> Response:
    """Prometheus text format."""
    return Response(generate_latest(request.app.state.metrics), media_type=CONTENT_TYPE_LATEST)
