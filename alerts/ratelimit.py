"""A customer's rate limit: at most so many messages an hour on each of their channels.

Critical messages (an alarm panel offline) always go. The rest wait until the hour frees a
slot, and then go out together as one digest. A customer's test messages have an hourly
limit of their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

WINDOW = timedelta(hours=1)


@dataclass(frozen=True)
class ChannelUse:
    """Messages a channel was sent within the last hour, and the oldest of them."""

    sent: int
    oldest: datetime | None
    limit: int


def deferred_until(use: ChannelUse, severities: list[str], now: datetime) -> datetime | None:
    """When a channel's claimed notifications may go, if not now (None: send them now)."""
    if use.sent < use.limit or "critical" in severities:
        return None
    return (use.oldest or now) + WINDOW


def next_test_message_at(
    sent_at: Sequence[datetime], per_hour: int, now: datetime
) -> datetime | None:
    """When a customer may send their next test message, if not now (None: now).

    At most `per_hour` within any hour: a test message costs a real send to a URL of the
    customer's choosing, so it is kept from becoming a tool (a scanner, a spammer).
    """
    recent = sorted((t for t in sent_at if t > now - WINDOW), reverse=True)
    if len(recent) < per_hour:
        return None
    if per_hour <= 0:
        return now + WINDOW
    return recent[per_hour - 1] + WINDOW
