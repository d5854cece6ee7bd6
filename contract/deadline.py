"""When a silent device is overdue: the deadline the ingest stores as `device_state.overdue_at`.

The ingest computes it in SQL, in the same upsert that records the heartbeat
(`_UPSERT_STATE` in ingest/writer.py, with `fleetwatch_next_active_start` of migration
023), so the monitor can read overdue devices by range. This is the same rule as pure
functions, for tests and for anyone reasoning about a device; tests/contract/test_deadline.py
holds the two together.

    base      = the earlier of device time and receipt (a clock running ahead gains nothing)
    deadline  = base + allowed silence                       (version 1)
              = later of that and base + next_checkin_s + grace   (an announced sleep, 1.1)
    if the deadline falls outside the model's active hours (local time of the device):
    deadline  = start of the next active window + grace
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo


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


def next_active_start(
    at: datetime, *, timezone: str, active_from: time | None, active_until: time | None
) -> datetime | None:
    """None when `at` is inside an active window (or there are no active hours); else the
    start of the next window after it, in UTC.

    Windows are the local wall-clock hours `active_from`-`active_until` of each day in
    `timezone` (an end before the start crosses midnight), so their length in UTC follows
    DST changes.
    """
    if active_from is None or active_until is None:
        return None
    zone = ZoneInfo(timezone)
    today = at.astimezone(zone).date()
    starts = []
    for offset in (-1, 0, 1, 2):
        day = today + timedelta(days=offset)
        end_day = day if active_until > active_from else day + timedelta(days=1)
        start = _utc(datetime.combine(day, active_from, tzinfo=zone))
        end = _utc(datetime.combine(end_day, active_until, tzinfo=zone))
        if start <= at < end:
            return None
        starts.append(start)
    return min(s for s in starts if s > at)


def _utc(local: datetime) -> datetime:
    """A local wall-clock time in UTC, read as PostgreSQL's `AT TIME ZONE` reads it: a time
    that happens twice (DST ends) is the later one, standard time; a time that never
    happens (DST begins) is read with the offset from before the change."""
    later = local.replace(fold=1).astimezone(UTC)
    earlier = local.replace(fold=0).astimezone(UTC)
    if later >= earlier:
        return later  # the same moment, or the later of an ambiguous time
    return earlier  # a time in the gap: fold=0 is the offset before the change


@dataclass(frozen=True, slots=True)
class CheckIn:
    """What the ingest stores of a heartbeat's deadline."""

    overdue_at: datetime
    # When the device said it would speak next (its announced wake-up, or the start of its
    # next active window); None: it announced nothing and its hours did not move it.
    expected_at: datetime | None


def checkin_deadline(
    *,
    ts: datetime,
    received_at: datetime,
    heartbeat_interval_s: int,
    allowed_misses: int,
    grace_s: int,
    offline_after_s: int | None = None,
    next_checkin_s: int | None = None,
    timezone: str = "UTC",
    active_from: time | None = None,
    active_until: time | None = None,
) -> CheckIn:
    """The deadline and expected check-in of a device whose newest heartbeat is timed `ts`
    and was received at `received_at`.

    An announced sleep only ever extends the deadline: announcing a shorter one than the
    model allows anyway does not make the device stricter than a version 1 device.
    """
    base = min(ts, received_at)
    deadline = base + allowed_silence(
        heartbeat_interval_s=heartbeat_interval_s,
        allowed_misses=allowed_misses,
        grace_s=grace_s,
        offline_after_s=offline_after_s,
    )
    expected = None
    if next_checkin_s is not None:
        expected = base + timedelta(seconds=next_checkin_s)
        deadline = max(deadline, expected + timedelta(seconds=grace_s))
    wake = next_active_start(
        deadline, timezone=timezone, active_from=active_from, active_until=active_until
    )
    if wake is not None:
        return CheckIn(wake + timedelta(seconds=grace_s), wake)
    return CheckIn(deadline, expected)


def offline_deadline(**fields) -> datetime:
    """When a device is overdue (the arguments of `checkin_deadline`).

    It counts from the earlier of `ts` and `received_at`, so a clock running ahead cannot
    postpone it. `ts` is the stored time: the device's, or the receipt's when it sent none
    or a wildly wrong one (`Heartbeat.ts`).
    """
    return checkin_deadline(**fields).overdue_at
