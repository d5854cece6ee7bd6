"""The Prometheus figures /metrics serves (api/ops.py), read from the database at scrape time.

One scrape of any API process shows the whole installation: what every ingest counted, the
monitor's last tick, the outbox and delivery failures, open fleet and system incidents and
unfinished campaigns. Every query reads a small table or a partial index, so a scrape stays
cheap with a million devices (deploy/prometheus/fleetwatch-rules.yml alerts on these).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from psycopg_pool import ConnectionPool

from ingest.upkeep import overdue, read_jobs

_INGEST = """
SELECT coalesce(sum(messages_total), 0), coalesce(sum(stored_total), 0),
       coalesce(sum(rejected_total), 0),
       extract(epoch FROM now() - max(last_message_at)), count(*)
FROM ingest_status
"""
# Labelled by each ingest's random metric_label, never its client id: that names its broker
# session, and /metrics is no place to learn it (the ingest logs its label at start).
_WATERMARKS = """
SELECT metric_label, extract(epoch FROM now() - caught_up_at) FROM ingest_status
WHERE caught_up_at IS NOT NULL ORDER BY metric_label
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
# Exactly the predicate of the partial index incidents_open_group_kind: a read of the few
# open fleet and system incidents, never of the device incidents.
_GROUP_INCIDENTS = """
SELECT scope, kind, count(*) FROM incidents
WHERE status <> 'resolved' AND scope <> 'device' GROUP BY 1, 2
"""
# The predicate of campaigns_active: finished campaigns are never read.
_CAMPAIGNS = """
SELECT status, count(*) FROM campaigns
WHERE status IN ('scheduled', 'running', 'paused', 'halted') GROUP BY 1
"""
# Always shown, 0 when none is open, so an alert on one has a series to read.
GROUP_INCIDENT_KINDS = (
    ("system", "blind_spot"),
    ("fleet", "fleet_outage"),
    ("fleet", "campaign_halted"),
)
UNFINISHED_CAMPAIGN_STATUSES = ("scheduled", "running", "paused", "halted")
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
            group_incidents = conn.execute(_GROUP_INCIDENTS).fetchall()
            campaigns = dict(conn.execute(_CAMPAIGNS).fetchall())
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
            labels=["ingest"],
        )
        for label, seconds in watermarks:
            behind.add_metric([label], float(seconds))
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
        yield _group_incidents_metric(group_incidents)
        by_status = GaugeMetricFamily(
            "fleetwatch_campaigns",
            "Campaigns not finished, by status (halted: stopped by its health gate, "
            "waiting for someone to resume or cancel it)",
            labels=["status"],
        )
        for status in UNFINISHED_CAMPAIGN_STATUSES:
            by_status.add_metric([status], campaigns.get(status, 0))
        yield by_status
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


def _group_incidents_metric(rows) -> GaugeMetricFamily:
    """Open fleet and system incidents by kind: the known kinds always, others as found."""
    counts = {(scope, kind): n for scope, kind, n in rows}
    family = GaugeMetricFamily(
        "fleetwatch_open_group_incidents",
        "Fleet and system incidents not resolved, by kind (blind_spot: the monitor cannot "
        "see heartbeats arrive)",
        labels=["scope", "kind"],
    )
    for key in sorted(set(GROUP_INCIDENT_KINDS) | set(counts)):
        family.add_metric(list(key), counts.get(key, 0))
    return family


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
