"""How fast the simulator (re)connects: a token bucket for connects, jittered backoff."""

from __future__ import annotations

import random

# Connects started per second, at start and after a broker restart: a storm of 10,000
# at once overflows the broker's listen backlog and stalls the loop on SYN retries.
CONNECT_RATE = 1000.0
# CONNECTs awaiting their CONNACK; a second brake that adapts to how fast the broker is.
MAX_PENDING_CONNECTS = 64
# Reconnect backoff after an unasked-for drop, doubled per failure.
RECONNECT_MIN_S = 1.0
RECONNECT_MAX_S = 60.0


class ConnectPacer:
    """A token bucket: `take(mono, pending)` says whether one more connect may start now."""

    def __init__(self, mono: float, *, rate: float | None = None, burst_s: float = 0.1) -> None:
        self.rate = rate or CONNECT_RATE  # read here, so tests and benchmarks can change it
        self.burst = max(1.0, self.rate * burst_s)
        self._tokens = 1.0
        self._at = mono

    def take(self, mono: float, pending: int) -> bool:
        """Spend a token if one is there and fewer than MAX_PENDING_CONNECTS are pending."""
        self._tokens = min(self.burst, self._tokens + (mono - self._at) * self.rate)
        self._at = mono
        if self._tokens < 1 or pending >= MAX_PENDING_CONNECTS:
            return False
        self._tokens -= 1
        return True

    def wait_s(self) -> float:
        """Roughly how long until the next token."""
        return 1 / self.rate


def next_backoff(previous_s: float) -> float:
    """The backoff after another failure: doubled, between RECONNECT_MIN_S and _MAX_S."""
    return min(RECONNECT_MAX_S, max(RECONNECT_MIN_S, previous_s * 2))


def jittered(backoff_s: float, draw: random.Random) -> float:
    """Half to all of the backoff, so a fleet does not come back in one storm."""
    return backoff_s * draw.uniform(0.5, 1.0)
