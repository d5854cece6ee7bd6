"""Connect pacing and reconnect backoff."""

from __future__ import annotations

import random

import pytest

from devices.simulator import pacing
from devices.simulator.pacing import ConnectPacer, jittered, next_backoff


def allowed(pacer: ConnectPacer, mono: float, pending: int = 0, tries: int = 10_000) -> int:
    return sum(pacer.take(mono, pending) for _ in range(tries))


def test_pacer_lets_a_small_burst_through_then_follows_its_rate():
    pacer = ConnectPacer(0.0, rate=1000)
    assert allowed(pacer, 0.0) == 1
    assert allowed(pacer, 0.05) == 50
    assert allowed(pacer, 10.0) == 100  # a long pause banks at most one burst


def test_pacer_holds_back_while_too_many_connects_are_pending():
    pacer = ConnectPacer(0.0, rate=1000)
    assert allowed(pacer, 1.0, pending=pacing.MAX_PENDING_CONNECTS) == 0
    assert allowed(pacer, 1.0, pending=pacing.MAX_PENDING_CONNECTS - 1) == 100


@pytest.mark.parametrize(
    ("previous", "expected"),
    [(0.0, 1.0), (1.0, 2.0), (16.0, 32.0), (40.0, 60.0), (60.0, 60.0)],
)
def test_backoff_doubles_between_its_bounds(previous, expected):
    assert next_backoff(previous) == expected


def test_jitter_keeps_between_half_and_all_of_the_backoff():
    draw = random.Random(1)
    delays = [jittered(10.0, draw) for _ in range(1000)]
    assert min(delays) >= 5.0
    assert max(delays) <= 10.0
    assert max(delays) - min(delays) > 4.0
