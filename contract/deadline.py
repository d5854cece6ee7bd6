"""When a silent device is overdue: the deadline the ingest stores as `device_state.overdue_at`.

The ingest computes it in SQL, in the same upsert that records the heartbeat
(`_UPSERT_STATE` in ingest/writer.py), so the monitor can read overdue devices by range.
This is the same rule as a pure function, for tests and for anyone reasoning about a
device; tests/contract/test_deadline.py holds the two together.
"""

from __future__ import annotations

from datetime import datetime, timedelta


def allowed_silence(
    *,
    heartbeat_interval_s: int,
    allowed_misses: int,
    grace_s: int,
    offline_after_s: int | None = None,
) -> timedelta:
    """How long a device may stay silent: its own `offline_after_s` when set, else its
    model's interval times the heartbeats it may miss, plus the grace."""
    if offline_after_s is not None:
        return timedelta(seconds=offline_after_s)
    return timedelta(seconds=heartbeat_interval_s * allowed_misses + grace_s)


def offline_deadline(
    *,
    ts: datetime,
    received_at: datetime,
    heartbeat_interval_s: int,
    allowed_misses: int,
    grace_s: int,
    offline_after_s: int | None = None,
) -> datetime:
    """When a device whose newest heartbeat is timed `ts` and was received at `received_at`
    is overdue.

    It counts from the earlier of the two, so a clock running ahead cannot postpone it.
    `ts` is the stored time: the device's, or the receipt's when it sent none or a wildly
    wrong one (`Heartbeat.ts`).
    """
    return min(ts, received_at) + allowed_silence(
        heartbeat_interval_s=heartbeat_interval_s,
        allowed_misses=allowed_misses,
        grace_s=grace_s,
        offline_after_s=offline_after_s,
    )
