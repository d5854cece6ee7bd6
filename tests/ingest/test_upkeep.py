"""When a TimescaleDB job is overdue: a pure decision on what its scheduler and we did."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ingest.upkeep import JobState, overdue

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def job(**values) -> JobState:
    base = dict(
        job_id=1000,
        proc_name="policy_refresh_continuous_aggregate",
        target="heartbeats_5m",
        schedule_interval=timedelta(minutes=5),
        next_start=NOW + timedelta(minutes=1),
        scheduler_ok_at=NOW - timedelta(minutes=4),
        scheduler_failures=0,
    )
    return JobState(**(base | values))


@pytest.mark.parametrize(
    ("state", "late"),
    [
        (job(), False),  # succeeding on schedule
        (job(scheduler_ok_at=NOW - timedelta(minutes=10)), False),  # two intervals: allowed
        (job(scheduler_ok_at=NOW - timedelta(minutes=11)), True),
        # Its scheduler fails every run; our run by hand a minute ago counts.
        (
            job(
                scheduler_ok_at=NOW - 5 * HOUR,
                scheduler_failures=60,
                ours_ok_at=NOW - timedelta(minutes=1),
            ),
            False,
        ),
        # Never succeeded, and nothing will run it (no background workers).
        (job(scheduler_ok_at=None, next_start=None), True),
        # Never succeeded yet, first run still ahead or only just missed.
        (job(scheduler_ok_at=None, next_start=NOW + HOUR), False),
        (job(scheduler_ok_at=None, next_start=NOW - timedelta(minutes=4)), False),
        (job(scheduler_ok_at=None, next_start=NOW - timedelta(minutes=6)), True),
        # A daily job, last good 47 hours ago: within its two days.
        (job(schedule_interval=24 * HOUR, scheduler_ok_at=NOW - 47 * HOUR), False),
        (job(schedule_interval=24 * HOUR, scheduler_ok_at=NOW - 49 * HOUR), True),
    ],
)
def test_a_job_is_overdue_after_more_than_twice_its_interval_without_success(state, late):
    assert overdue(state, NOW) is late


def test_failures_count_the_schedulers_and_ours():
    assert job(scheduler_failures=3, ours_failures=2).failures == 5
    assert job(scheduler_ok_at=None, ours_ok_at=NOW).last_ok_at == NOW
