"""Waves: which devices go in which wave, maintenance windows, and when a campaign moves on.

A device's wave comes from a hash of the campaign and device ids, so it never changes
however often it is computed, and the canary is a fair sample of the whole target.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo


def assign_waves(campaign_id: int, device_ids: list[str], cumulative_pct: list[float]) -> dict:
    """{device_id: wave number from 1}; wave k holds up to cumulative_pct[k-1] % of devices.

    Every non-empty wave gets at least one device, so a 1 % canary of 50 devices is one.
    """
    if not cumulative_pct or any(b <= a for a, b in itertools.pairwise(cumulative_pct)):
        raise ValueError("waves are cumulative percentages in increasing order, e.g. [1, 10, 100]")
    if cumulative_pct[-1] != 100:
        raise ValueError("the last wave must reach 100 %")
    ordered = sorted(
        device_ids,
        key=lambda d: hashlib.sha256(f"{campaign_id}:{d}".encode()).digest(),
    )
    n, waves, start = len(ordered), {}, 0
    for number, pct in enumerate(cumulative_pct, start=1):
        end = n if pct >= 100 else min(n, max(start + 1, math.ceil(n * pct / 100)))
        for device in ordered[start:end]:
            waves[device] = number
        start = max(start, end)
    return waves


def in_window(now: datetime, timezone: str, start: time | None, end: time | None) -> bool:
    """Whether `now` is inside the daily window [start, end) of the device's own local time."""
    if start is None or end is None:
        return True
    local = now.astimezone(ZoneInfo(timezone)).time()
    return start <= local < end if start < end else (local >= start or local < end)


@dataclass(frozen=True)
class WaveCounts:
    """The devices of the opened waves (1 .. current), by where they stand."""

    total: int = 0
    pending_online: int = 0
    pending_offline: int = 0
    in_flight: int = 0
    done: int = 0
    # When the last of them finished.
    last_finished_at: datetime | None = None


@dataclass(frozen=True)
class CampaignView:
    status: str
    starts_at: datetime
    current_wave: int
    waves: int
    wave_opened_at: datetime | None
    soak_s: int


def next_move(campaign: CampaignView, opened: WaveCounts, now: datetime) -> str | None:
    """What the campaign does next: `start`, `open_next`, `complete`, or nothing.

    A wave is done when none of its devices is in flight and none is waiting while online
    (offline devices wait for their return and do not hold the campaign back). The next wave
    opens once the last one has soaked for `soak_s` since its last device finished.
    """
    if campaign.status == "scheduled":
        return "start" if now >= campaign.starts_at else None
    if campaign.status != "running":
        return None
    if opened.in_flight or opened.pending_online:
        return None
    if campaign.current_wave >= campaign.waves:
        return "complete"
    settled = opened.last_finished_at or campaign.wave_opened_at or now
    return "open_next" if now >= settled + timedelta(seconds=campaign.soak_s) else None
