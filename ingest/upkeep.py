"""Upkeep of the heartbeat store, so that it never fills the disk, on either flavour.

    plain PostgreSQL  make the coming days' partitions; drop the days past retention
    TimescaleDB       partitions: nothing to do (chunks are made on demand); retention:
                      drop_chunks, the same as its retention job, so it happens even when
                      that job does not; and the background jobs we depend on (compression,
                      the 5-minute aggregate's refresh, the retentions) are watched: one
                      that has not succeeded for longer than its interval allows is run
                      here with CALL run_job, and the log says so

TimescaleDB's own scheduler can fail every run and nobody would know (a server was seen
failing each job with `cannot drop portal "" while it is being set up` while the same jobs
ran by hand); or not run at all (no background workers, as in PGlite). Our runs are kept
in `timescale_job_runs`, since run_job does not record them in job_stats.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg

log = logging.getLogger(__name__)

# Only one process runs jobs by hand at a time, however many ingests there are.
_JOBS_LOCK = 0x6A6F6273  # "jobs"
# The tables whose jobs we depend on.
WATCHED = ("heartbeats", "heartbeats_5m")


@dataclass(frozen=True)
class JobState:
    """One TimescaleDB job as its scheduler and we have seen it."""

    job_id: int
    proc_name: str
    target: str
    schedule_interval: timedelta
    # When the scheduler will run it next (None: it never will: no background workers).
    next_start: datetime | None
    scheduler_ok_at: datetime | None
    scheduler_failures: int
    ours_ok_at: datetime | None = None
    ours_failures: int = 0
    last_error: str | None = None

    @property
    def last_ok_at(self) -> datetime | None:
        times = [t for t in (self.scheduler_ok_at, self.ours_ok_at) if t is not None]
        return max(times) if times else None

    @property
    def failures(self) -> int:
        return self.scheduler_failures + self.ours_failures

    @property
    def label(self) -> str:
        return f"{self.job_id} ({self.proc_name} on {self.target})"


def overdue(job: JobState, now: datetime) -> bool:
    """Whether a job has gone without success for longer than its interval allows: more than
    one whole interval beyond when it should have succeeded."""
    allowance = job.schedule_interval
    last = job.last_ok_at
    if last is not None:
        return now - last > job.schedule_interval + allowance
    if job.next_start is None:
        return True  # never succeeded, and no scheduler will run it
    return now - job.next_start > allowance


_JOBS = """
SELECT j.job_id, j.proc_name, j.hypertable_name, j.schedule_interval,
       coalesce(s.next_start, j.next_start),
       s.last_successful_finish, coalesce(s.total_failures, 0),
       r.last_ok_at, coalesce(r.failures, 0), r.last_error
FROM timescaledb_information.jobs j
LEFT JOIN timescaledb_information.job_stats s ON s.job_id = j.job_id
LEFT JOIN timescale_job_runs r ON r.job_id = j.job_id
WHERE j.hypertable_name = ANY(%(watched)s)
ORDER BY j.job_id
"""

_RECORD = """
INSERT INTO timescale_job_runs AS r (job_id, last_ok_at, last_failed_at, last_error, runs,
                                      failures)
VALUES (%(job)s, %(ok_at)s, %(failed_at)s, %(error)s, 1, %(failed)s)
ON CONFLICT (job_id) DO UPDATE SET
    last_ok_at = coalesce(excluded.last_ok_at, r.last_ok_at),
    last_failed_at = coalesce(excluded.last_failed_at, r.last_failed_at),
    last_error = CASE WHEN excluded.last_ok_at IS NULL THEN excluded.last_error
                      ELSE r.last_error END,
    runs = r.runs + 1,
    failures = r.failures + excluded.failures
"""


def on_timescaledb(conn: psycopg.Connection) -> bool:
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')"
    ).fetchone()
    return bool(row[0])


def read_jobs(conn: psycopg.Connection) -> list[JobState]:
    """The jobs our tables depend on; none on plain PostgreSQL."""
    if not on_timescaledb(conn):
        return []
    rows = conn.execute(_JOBS, {"watched": list(WATCHED)}).fetchall()
    return [JobState(*row) for row in rows]


def run_overdue_jobs(conn: psycopg.Connection, now: datetime) -> list[tuple[JobState, str | None]]:
    """Run by hand every watched job that is overdue at `now`; (job, error or None) each.

    Needs an autocommit connection: jobs commit as they go.
    """
    if not on_timescaledb(conn):
        return []
    if not conn.execute("SELECT pg_try_advisory_lock(%s)", (_JOBS_LOCK,)).fetchone()[0]:
        return []  # another process is at it
    done = []
    try:
        for job in read_jobs(conn):
            if not overdue(job, now):
                continue
            error = None
            try:
                conn.execute("CALL run_job(%s)", (job.job_id,))
            except psycopg.Error as exc:
                error = (str(exc).strip() or type(exc).__name__)[:500]
            conn.execute(
                _RECORD,
                {
                    "job": job.job_id,
                    "ok_at": None if error else now,
                    "failed_at": now if error else None,
                    "error": error,
                    "failed": 1 if error else 0,
                },
            )
            since = job.last_ok_at.isoformat() if job.last_ok_at else "never"
            if error:
                log.error(
                    "timescaledb job %s: no success since %s; run by hand, it failed too: %s",
                    job.label,
                    since,
                    error,
                )
            else:
                log.warning(
                    "timescaledb job %s: no success since %s (its scheduler is not doing it); "
                    "ran it by hand",
                    job.label,
                    since,
                )
            done.append((job, error))
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (_JOBS_LOCK,))
    return done


def maintain_heartbeats(conn: psycopg.Connection, retention_days: int, now: datetime) -> None:
    """Partitions and retention, on either flavour (see the module's docstring).

    Plain PostgreSQL: create the days from a week back to two ahead, drop those past
    retention. TimescaleDB: the partition function does nothing, and retention drops the
    chunks past it.
    """
    today = now.astimezone(UTC).date()
    conn.execute(
        "SELECT fleetwatch_ensure_heartbeat_partitions(%s, %s)",
        (today - timedelta(days=8), today + timedelta(days=2)),
    )
    conn.execute(
        "SELECT fleetwatch_apply_heartbeat_retention(make_interval(days => %s))",
        (retention_days,),
    )


def upkeep(conn: psycopg.Connection, retention_days: int) -> None:
    """The periodic upkeep: partitions and retention, then jobs overdue (database clock)."""
    now = conn.execute("SELECT now()").fetchone()[0]
    maintain_heartbeats(conn, retention_days, now)
    run_overdue_jobs(conn, now)
