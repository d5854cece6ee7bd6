"""Flapping: a device that keeps dropping off is one problem, not a stream of alerts."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FlapPolicy:
    # This many offline spells within the window make the connection unstable.
    count: int = 3
    window_s: int = 3600
    # Online this long without a drop: stable again.
    stable_after_s: int = 3600


def is_unstable(offline_spells_in_window: int, policy: FlapPolicy) -> bool:
    """Whether this offline spell (counted in) makes the device's connection unstable."""
    return offline_spells_in_window >= policy.count
