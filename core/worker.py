"""The one shape of every long-running part: named jobs on a schedule, one failure policy.

    Worker("monitor", [Job("tick", tick, every_s=0.25), Job("review", review, 5.0), ...])
      start()         every job runs every `every_s` (APScheduler), one run of a job at a time
      stop()          waits for the runs under way, then calls each job's `close`
      run_forever()   start, wait for the stop event, stop

    a run that raises      logged with its traceback (a database that is unreachable: one
                           warning line), counted, the job's `recover` called (drop its
                           connection), and the job runs again at its next time
    a run that is busy     (returns True: it took a full batch) runs again at once
    a run that overruns    its next time is skipped and counted; not a warning
    every_s=0              a job that paces itself (it waits inside, for work or a timeout)
                           runs in a loop on a thread of its own
    the counts             kept per job, written to `worker_jobs` every few seconds when the
                           worker has a database, so /metrics shows every process's errors

Jobs read the time from the database (`core.db.db_now`) or take `now` from a test: one clock.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg
from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED
from apscheduler.schedulers.background import BackgroundScheduler

from core import db
from core.logs import hide_overrun_notices

log = logging.getLogger(__name__)

# How often a worker writes its counts to the database.
REPORT_EVERY_S = 5.0
# A busy job runs again at once, but at most this many times in a row, so stop() is prompt.
MAX_BUSY_RUNS = 1000
# A self-paced job (every_s=0) that failed waits this long before its next run.
FAILURE_PAUSE_S = 1.0


# APScheduler warns when a run is skipped because the one before still runs; a worker
# counts those instead (an overrun tick under load is normal, not a warning), wherever its
# process set up logging (a benchmark, a test).
hide_overrun_notices()


@dataclass(frozen=True)
class Job:
    name: str
    # One run; returns True (exactly: other results are ignored) when it did a full batch
    # and should run again at once.
    run: Callable[[], object]
    every_s: float
    # Called after a run raised (to drop a connection that may be broken).
    recover: Callable[[], None] | None = None


@dataclass
class JobStats:
    runs: int = 0
    errors: int = 0
    overruns: int = 0
    last_run_at: datetime | None = None
    last_seconds: float = 0.0
    last_error_at: datetime | None = None
    last_error: str | None = None
    # What has not yet been written to the database.
    unreported: dict[str, int] = field(default_factory=lambda: {"runs": 0, "errors": 0})


_REPORT = """
INSERT INTO worker_jobs AS w (worker, job, runs_total, errors_total, overruns_total,
                              last_run_at, last_seconds, last_error_at, last_error)
VALUES (%(worker)s, %(job)s, %(runs)s, %(errors)s, %(overruns)s, %(last_run_at)s,
        %(last_seconds)s, %(last_error_at)s, %(last_error)s)
ON CONFLICT (worker, job) DO UPDATE SET
    runs_total = w.runs_total + excluded.runs_total,
    errors_total = w.errors_total + excluded.errors_total,
    overruns_total = w.overruns_total + excluded.overruns_total,
    last_run_at = greatest(w.last_run_at, excluded.last_run_at),
    last_seconds = coalesce(excluded.last_seconds, w.last_seconds),
    last_error_at = coalesce(excluded.last_error_at, w.last_error_at),
    last_error = coalesce(excluded.last_error, w.last_error)
"""


class RunsForever:
    """`run_forever(stop)` for a part with `start()` and `stop()`: what every CLI command
    that runs a part does until SIGTERM."""

    def run_forever(self, stop: threading.Event) -> None:
        # What the process holds when it starts (modules, plugins, settings) lives as long
        # as it does: frozen, the collector stops walking it again on every full
        # collection (a monitor tick of 10,000 transitions spent ~150 ms of CPU there).
        gc.freeze()
        self.start()
        try:
            stop.wait()
        finally:
            self.stop()


class Worker(RunsForever):
    """Runs a process part's jobs; several workers of one name may run against one database."""

    def __init__(self, name: str, jobs: list[Job], *, dsn: str | None = None) -> None:
        self.name = name
        self.jobs = {job.name: job for job in jobs}
        self.stats = {job.name: JobStats() for job in jobs}
        self.dsn = dsn
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._scheduler = BackgroundScheduler(
            timezone=UTC,
            executors={"default": {"type": "threadpool", "max_workers": len(jobs) + 1}},
        )
        self._scheduler.add_listener(self._overrun, EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED)
        self._report_conn: psycopg.Connection | None = None
        self._started = False
        self._threads: list[threading.Thread] = []
        self._overruns_unreported: dict[str, int] = {}

    def start(self) -> Worker:
        now = datetime.now(UTC)
        for job in self.jobs.values():
            if job.every_s == 0:
                thread = threading.Thread(
                    target=self._loop, args=(job.name,), name=f"{self.name}-{job.name}"
                )
                self._threads.append(thread)
                thread.start()
                continue
            self._scheduler.add_job(
                self.run_job,
                "interval",
                args=(job.name,),
                seconds=job.every_s,
                id=job.name,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
                next_run_time=now,
            )
        if self.dsn:
            self._scheduler.add_job(
                self.report,
                "interval",
                seconds=REPORT_EVERY_S,
                id="report",
                max_instances=1,
                coalesce=True,
            )
        self._scheduler.start()
        self._started = True
        log.info("%s started: %s", self.name, ", ".join(self.jobs))
        return self

    def stop(self) -> None:
        """Stop scheduling, wait for the runs under way, write the last counts."""
        self._stopping.set()
        if self._scheduler.running:
            self._scheduler.shutdown(wait=True)
        for thread in self._threads:
            thread.join()
        if self.dsn and self._started:
            self.report()
        if self._report_conn is not None:
            self._report_conn.close()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def run_job(self, name: str) -> bool:
        """One scheduled run of a job under the failure policy (again at once while busy);
        False if it failed."""
        job = self.jobs[name]
        for _ in range(MAX_BUSY_RUNS):
            started = time.perf_counter()
            try:
                busy = job.run()
            except psycopg.OperationalError as exc:
                self._failed(job, exc, traceback=False)
                return False
            except Exception as exc:  # the policy: log, count, go on
                self._failed(job, exc, traceback=True)
                return False
            self._ran(job, time.perf_counter() - started)
            if busy is not True or self._stopping.is_set():
                return True
        return True

    def _loop(self, name: str) -> None:
        """A self-paced job: run after run until the worker stops."""
        while not self._stopping.is_set():
            if not self.run_job(name):
                self._stopping.wait(FAILURE_PAUSE_S)

    def _ran(self, job: Job, seconds: float) -> None:
        with self._lock:
            stats = self.stats[job.name]
            stats.runs += 1
            stats.unreported["runs"] += 1
            stats.last_run_at = datetime.now(UTC)
            stats.last_seconds = seconds

    def _failed(self, job: Job, exc: Exception, *, traceback: bool) -> None:
        with self._lock:
            stats = self.stats[job.name]
            stats.errors += 1
            stats.unreported["errors"] += 1
            stats.last_error_at = datetime.now(UTC)
            stats.last_error = f"{type(exc).__name__}: {exc}"[:500]
        if traceback:
            log.error(
                "%s %s failed; it runs again at its next time",
                self.name,
                job.name,
                exc_info=exc,
            )
        else:
            log.warning("%s %s failed, database unreachable: %s", self.name, job.name, exc)
        if job.recover is not None:
            try:
                job.recover()
            except Exception:
                log.exception("%s %s: recovering after the failure failed too", self.name, job.name)

    def _overrun(self, event) -> None:
        # The run before is still going: normal under load, so counted, not a warning.
        with self._lock:
            if event.job_id in self.stats:
                self.stats[event.job_id].overruns += 1
                self._overruns_unreported[event.job_id] = (
                    self._overruns_unreported.get(event.job_id, 0) + 1
                )

    def report(self) -> None:
        """Add what was counted since the last report to `worker_jobs`."""
        with self._lock:
            rows = []
            for name, stats in self.stats.items():
                rows.append(
                    {
                        "worker": self.name,
                        "job": name,
                        "runs": stats.unreported["runs"],
                        "errors": stats.unreported["errors"],
                        "overruns": self._overruns_unreported.get(name, 0),
                        "last_run_at": stats.last_run_at,
                        "last_seconds": stats.last_seconds if stats.last_run_at else None,
                        "last_error_at": stats.last_error_at,
                        "last_error": stats.last_error,
                    }
                )
                stats.unreported = {"runs": 0, "errors": 0}
            self._overruns_unreported = {}
        try:
            if self._report_conn is None or self._report_conn.closed:
                self._report_conn = db.connect(self.dsn, autocommit=True)
            with self._report_conn.cursor() as cur:
                cur.executemany(_REPORT, rows)
        except psycopg.Error as exc:
            # Counts are kept for the next report.
            log.warning("%s: could not write its counts: %s", self.name, exc)
            with self._lock:
                for row in rows:
                    stats = self.stats[row["job"]]
                    stats.unreported["runs"] += row["runs"]
                    stats.unreported["errors"] += row["errors"]
                    if row["overruns"]:
                        self._overruns_unreported[row["job"]] = (
                            self._overruns_unreported.get(row["job"], 0) + row["overruns"]
                        )
            if self._report_conn is not None:
                self._report_conn.close()
                self._report_conn = None
