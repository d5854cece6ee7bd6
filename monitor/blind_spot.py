"""The blind-spot guard: silence from everyone at once means we cannot see, not that all died.

If no ingest has received anything for longer than a window while the fleet should have
sent plenty, the monitor declares nobody offline and opens one system incident for staff.
After sight returns, offline decisions wait a grace period, so devices reconnecting after
a broker or network outage are not declared offline in the meantime. An ingest that
regained the broker starts the same grace, and holds the Last Wills too: a broker going
down sends every device's will, which says nothing about the devices.

Deadlines are judged against the ingests' watermark (`horizon`), not the wall clock: a
heartbeat still queued in the broker for a restarting ingest is not silence.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

# Below this many expected messages in the window, silence proves nothing (a tiny fleet).
MIN_EXPECTED_MESSAGES = 10


@dataclass(frozen=True, slots=True)
class Sight:
    """What the monitor knows about the flow of data at `now`."""

    last_message_at: datetime | None  # the latest any ingest received
    expected_per_s: float  # heartbeats per second the watched fleet should send
    blind_since: datetime | None  # the open blind-spot incident, if any
    last_blind_end: datetime | None  # when the latest blind spot ended
    # Up to when the slowest live ingest has stored all the broker accepted (None: no
    # ingest reports one, so the wall clock is all there is).
    caught_up_at: datetime | None = None
    broker_back_at: datetime | None = None  # when an ingest last regained the broker


def is_stale(sight: Sight, now: datetime, window: timedelta) -> bool:
    """Whether no ingest has received anything for `window`."""
    return sight.last_message_at is None or sight.last_message_at < now - window


def is_blind(sight: Sight, now: datetime, window: timedelta) -> bool:
    """Whether nothing has arrived for `window` although plenty should have.

    Once blind, blind until something arrives: the expected rate is judged only on entry.
    """
    if not is_stale(sight, now, window):
        return False
    if sight.blind_since is not None:
        return True
    return sight.expected_per_s * window.total_seconds() >= MIN_EXPECTED_MESSAGES


def horizon(sight: Sight, now: datetime) -> datetime:
    """The moment up to which silence is proven: `now`, or the ingests' watermark if earlier."""
    if sight.caught_up_at is None:
        return now
    return min(now, sight.caught_up_at)


def offline_held(sight: Sight, now: datetime, resume_grace: timedelta) -> bool:
    """Whether silence-based offline decisions must wait (blind, or just regained sight)."""
    if sight.blind_since is not None:
        return True
    if sight.last_blind_end is not None and now < sight.last_blind_end + resume_grace:
        return True
    return wills_held(sight, now, resume_grace)


def wills_held(sight: Sight, now: datetime, resume_grace: timedelta) -> bool:
    """Whether Last Wills must wait too: an ingest has just regained the broker."""
    return sight.broker_back_at is not None and now < sight.broker_back_at + resume_grace
