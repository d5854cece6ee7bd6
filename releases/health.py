"""Release health of one model over a window: each firmware version's vitals, each compared
with the version it replaced on the same model.

    read_daily(conn, model, start, end)  the release_daily rows (model, firmware, day)
    release_health(rows, ...)            pure: totals per version, vitals, rate ratios

"The version it replaced" is the nearest lower version (by numeric parts: 2.10.0 > 2.9.1)
among the versions seen on the model in the window; the oldest has no baseline.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import psycopg

from releases.stats import RateRatio, rate_ratio


@dataclass(frozen=True)
class DailyRow:
    firmware: str
    day: date
    device_days: int
    heartbeats: int
    expected: int
    reboots: int
    update_reboots: int
    offline_s: float
    battery_drop: float
    battery_days: int
    incidents: dict[str, int]


@dataclass
class Totals:
    firmware: str
    first_day: date
    last_day: date
    device_days: int = 0
    heartbeats: int = 0
    expected: int = 0
    reboots: int = 0
    update_reboots: int = 0
    offline_s: float = 0.0
    battery_drop: float = 0.0
    battery_days: int = 0
    incidents: dict[str, int] = field(default_factory=dict)

    def add(self, row: DailyRow) -> None:
        self.first_day = min(self.first_day, row.day)
        self.last_day = max(self.last_day, row.day)
        self.device_days += row.device_days
        self.heartbeats += row.heartbeats
        self.expected += row.expected
        self.reboots += row.reboots
        self.update_reboots += row.update_reboots
        self.offline_s += row.offline_s
        self.battery_drop += row.battery_drop
        self.battery_days += row.battery_days
        for kind, n in row.incidents.items():
            self.incidents[kind] = self.incidents.get(kind, 0) + n


@dataclass(frozen=True)
class Vital:
    """One measure of one version: events over exposure, as `rate` per `per`."""

    name: str
    label: str
    events: float
    exposure: float
    rate: float | None
    # Higher is worse (reboots) or better (the share of heartbeats received).
    higher_is_worse: bool
    ratio: RateRatio | None = None
    compared: bool = False  # the version has a baseline (a ratio may still be None)

    @property
    def verdict(self) -> str:
        """worse, better, or unclear (the interval includes 1) against the baseline."""
        if not self.compared:
            return "no baseline"
        if self.ratio is None:
            return "no events"
        if not self.ratio.excludes_one():
            return "unclear"
        higher = self.ratio.low > 1.0
        return "worse" if higher == self.higher_is_worse else "better"


@dataclass(frozen=True)
class VersionHealth:
    firmware: str
    baseline: str | None
    first_day: date
    last_day: date
    device_days: int
    vitals: list[Vital]


_NUMBER = re.compile(r"\d+|[^\d.]+")


def version_key(version: str) -> tuple:
    """Order versions by their numeric parts, so 2.10.0 comes after 2.9.1."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in _NUMBER.findall(version))


def baselines(versions: list[str]) -> dict[str, str | None]:
    """Each version's baseline: the nearest lower version present (None for the oldest)."""
    ordered = sorted(versions, key=version_key)
    return {v: (ordered[i - 1] if i else None) for i, v in enumerate(ordered)}


def window(now: datetime, days: int) -> tuple[date, date]:
    """The UTC days of a window of `days` ending today (today included, it is partial)."""
    today = now.date()
    return today - timedelta(days=days - 1), today


def _vitals(t: Totals, kinds: list[str]) -> list[tuple[str, str, float, float, bool]]:
    """(name, label, events, exposure, higher is worse) for one version's totals."""
    rows = [
        ("reboots", "unexpected reboots per device-day", t.reboots, t.device_days, True),
        (
            "offline_minutes",
            "offline minutes per device-day",
            t.offline_s / 60,
            t.device_days,
            True,
        ),
        ("battery_drop", "battery drop (% points) per day", t.battery_drop, t.battery_days, True),
        ("heartbeats", "share of expected heartbeats received", t.heartbeats, t.expected, False),
    ]
    for kind in kinds:
        rows.append(
            (
                f"incidents:{kind}",
                f"{kind} incidents per 1,000 device-days",
                t.incidents.get(kind, 0),
                t.device_days / 1000,
                True,
            )
        )
    return rows


def release_health(rows: list[DailyRow], level: float = 0.95) -> list[VersionHealth]:
    """Every version's vitals with its ratio against its baseline, newest version first."""
    totals: dict[str, Totals] = {}
    for row in rows:
        t = totals.get(row.firmware)
        if t is None:
            t = totals[row.firmware] = Totals(row.firmware, row.day, row.day)
        t.add(row)
    kinds = sorted({k for t in totals.values() for k in t.incidents})
    base_of = baselines(list(totals))
    measured: dict[str, dict[str, tuple]] = defaultdict(dict)
    for version, t in totals.items():
        for name, label, events, exposure, worse in _vitals(t, kinds):
            measured[version][name] = (label, events, exposure, worse)
    out = []
    for version in sorted(totals, key=version_key, reverse=True):
        t, base = totals[version], base_of[version]
        vitals = []
        for name, (label, events, exposure, worse) in measured[version].items():
            ratio = None
            if base is not None:
                _, base_events, base_exposure, _ = measured[base][name]
                ratio = rate_ratio(events, exposure, base_events, base_exposure, level)
            rate = events / exposure if exposure else None
            vitals.append(
                Vital(name, label, events, exposure, rate, worse, ratio, base is not None)
            )
        out.append(VersionHealth(version, base, t.first_day, t.last_day, t.device_days, vitals))
    return out


_READ = """
SELECT firmware, day, device_days, heartbeats, expected, reboots, update_reboots, offline_s,
       battery_drop, battery_days, incidents
FROM release_daily
WHERE model_id = %s AND day BETWEEN %s AND %s
"""


def read_daily(conn: psycopg.Connection, model_id: str, first: date, last: date) -> list[DailyRow]:
    """A model's release_daily rows for the days first..last (a primary-key range read)."""
    return [DailyRow(*row) for row in conn.execute(_READ, (model_id, first, last))]


def rolled_to(conn: psycopg.Connection) -> datetime | None:
    """How far the rollup has read heartbeats: the figures are as of then."""
    row = conn.execute("SELECT rolled_to FROM release_rollup_state").fetchone()
    return row[0] if row else None
