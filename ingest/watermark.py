"""The ticks an ingest sends itself, and which of them it believes (pure).

The watermark (`ingest_status.caught_up_at`) is the send time of the latest tick the ingest
got back through its own session: everything the broker accepted before it is stored. The
monitor judges every deadline against it, so a tick claiming a later time than the truth
would have devices declared offline while their heartbeats still wait in the broker. Under
the deploy ACL only the ingest's own login may publish to its tick topic, but the ingest
does not take that on trust. A tick counts only if its time

    - is an ISO 8601 time with a UTC offset (`datetime.isoformat()` of an aware time);
    - is not after `now` (the receipt): a tick from the future;
    - is not after the last tick this process sent: it cannot be one of ours (a tick left
      in the session by this ingest's previous run is older, and counts);
    - is not before the last tick it believed: the watermark never goes back, so an older
      one says nothing (a redelivery after a reconnect, or a replay).

So `caught_up_at` never moves past the time the ingest itself last sent a tick, nor past now.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

# Why a tick was refused (counted by reason in IngestCounters.ticks_refused).
NOT_A_TIME = "not_a_time"
NO_TIMEZONE = "no_timezone"
FROM_THE_FUTURE = "from_the_future"
NEVER_SENT = "never_sent"
OLDER_THAN_LAST = "older_than_last"
# Reasons that only a tick not sent by this ingest can have: worth a warning in the log.
SUSPICIOUS = frozenset({NOT_A_TIME, NO_TIMEZONE, FROM_THE_FUTURE, NEVER_SENT})


@dataclass(frozen=True, slots=True)
class Tick:
    """A tick the ingest sent itself at `sent_at`, back through its session."""

    sent_at: datetime


@dataclass(frozen=True, slots=True)
class RefusedTick:
    """A message on the tick topic that does not move the watermark, and why."""

    reason: str


def tick_payload(sent_at: datetime) -> bytes:
    """What the ingest publishes to its tick topic."""
    return sent_at.isoformat().encode()


def accept_tick(
    payload: bytes,
    *,
    now: datetime,
    last_sent: datetime | None,
    last_accepted: datetime | None,
) -> Tick | RefusedTick:
    """Whether a message on the ingest's tick topic, received at `now`, moves its watermark.

    `last_sent`: the latest tick this process published (None before its first);
    `last_accepted`: the latest tick it believed (None before its first).
    """
    try:
        sent_at = datetime.fromisoformat(payload.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return RefusedTick(NOT_A_TIME)
    if sent_at.tzinfo is None or sent_at.utcoffset() is None:
        return RefusedTick(NO_TIMEZONE)
    if sent_at > now:
        return RefusedTick(FROM_THE_FUTURE)
    if last_sent is not None and sent_at > last_sent:
        return RefusedTick(NEVER_SENT)
    if last_accepted is not None and sent_at < last_accepted:
        return RefusedTick(OLDER_THAN_LAST)
    return Tick(sent_at)
