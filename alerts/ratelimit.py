"""A customer's rate limit: at most so many messages an hour on each of their channels.

Critical messages (an alarm panel offline) always go. The rest wait until the hour frees a
slot, and then go out together as one digest.
"""

from __future__ import annotations

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
