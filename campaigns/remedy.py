"""A safety recall with its remedy: the pure decisions (no I/O; `now` is given).

    is_fixed          whether a reported firmware carries the fix (the campaign's `fixed_in`)
    follow_up_due     whether an unremedied device's owner is owed their next follow-up
    recall_settled    whether a running safety recall has nothing left to do
    remedy_text       what the remedy is and when it happens, in the owner's words
    completion        remedied / acknowledged / notified / unreachable by model and region,
                      and over time, from one fact row per device

A device is *remedied* once it reports a fixed version (its update succeeded, or it had the
fix already: "no action needed"). *Notified*: a message about the recall reached one of the
owner's channels. *Unreachable*: told nothing, because the owner has no channel that takes
it, or every send failed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from campaigns.targeting import firmware_in_range, to_specifier

# States of a device that is not (yet) remedied and that the runner may find fixed.
SWEPT = ("pending", "failed", "skipped")


def is_fixed(firmware: str | None, fixed_in: str) -> bool:
    """Whether `firmware` lies in the range that has the fix (unparseable: no)."""
    return firmware_in_range(firmware, to_specifier(fixed_in))


def follow_up_due(
    notified_at: datetime | None,
    sent: int,
    schedule_s: list[int],
    now: datetime,
) -> bool:
    """The next follow-up (number `sent` + 1) is due at `now`: its delay after the first
    notice has passed. A device never notified has no follow-ups; remedied ones are not asked
    (the caller reads only unremedied devices)."""
    if notified_at is None or sent >= len(schedule_s):
        return False
    return now >= notified_at + timedelta(seconds=schedule_s[sent])


def recall_settled(*, all_waves_open: bool, in_flight: int, owed_follow_ups: int) -> bool:
    """A running safety recall completes once every wave is open, no update is under way,
    and no unremedied device is owed a follow-up any more (the last one went out)."""
    return all_waves_open and in_flight == 0 and owed_follow_ups == 0


def remedy_text(
    remedy: str,
    *,
    target_version: str | None,
    window_start: time | None,
    window_end: time | None,
    starts_at: datetime,
    timezone: str,
    instructions: str,
) -> tuple[str, str]:
    """(in full, in short) the remedy and when it happens for this owner, in their own time:
    the update's window is the same clock time in each device's zone (campaigns/waves.py
    `in_window`), from the recall's start as a date there."""
    if remedy == "service_visit":
        return f"a free service visit. {instructions}", "a free service visit"
    first_day = f"{starts_at.astimezone(ZoneInfo(timezone)):%d %b %Y}"
    if window_start is not None:
        span = f"{window_start:%H:%M}-{window_end:%H:%M}"
        when = (
            f"between {window_start:%H:%M} and {window_end:%H:%M} your local time "
            f"({timezone}), from {first_day}"
        )
        short_when = f"{span} your time, from {first_day}"
    else:
        when = f"over the next days, from {first_day}"
        short_when = f"from {first_day}"
    full = (
        f"a free software update to version {target_version}, installed over the air {when}. "
        f"{instructions}"
    )
    return full, f"software {target_version} over the air, {short_when}"


# -- completion ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeviceFacts:
    """One device of a safety recall, as completion counts it."""

    model: str
    region: str
    notified_at: datetime | None  # first message that reached a channel
    acknowledged_at: datetime | None
    remedied_at: datetime | None
    unreachable: bool


COUNTS = ("devices", "notified", "acknowledged", "remedied", "unreachable")


@dataclass
class Counts:
    devices: int = 0
    notified: int = 0
    acknowledged: int = 0
    remedied: int = 0
    unreachable: int = 0

    def add(self, facts: DeviceFacts, until: datetime | None = None) -> None:
        """Count one device, as it stood at `until` (None: now)."""

        def by(at: datetime | None) -> bool:
            return at is not None and (until is None or at <= until)

        self.devices += 1
        self.notified += by(facts.notified_at)
        self.acknowledged += by(facts.acknowledged_at)
        self.remedied += by(facts.remedied_at)
        # Unreachable is known only now: it is not dated.
        self.unreachable += facts.unreachable and until is None

    def as_dict(self) -> dict[str, int | float]:
        out: dict[str, int | float] = {k: getattr(self, k) for k in COUNTS}
        out["remedied_pct"] = round(100 * self.remedied / self.devices, 1) if self.devices else 0.0
        return out


@dataclass
class Completion:
    total: Counts
    by_group: dict[tuple[str, str], Counts]
    # (day, counts at that day's end) from the recall's first day to today.
    over_time: list[tuple[date, Counts]] = field(default_factory=list)


# A report over years would be thousands of lines; a regulator's periodic report is days.
MAX_DAYS = 366


def completion(facts: list[DeviceFacts], started: datetime, now: datetime) -> Completion:
    """Counts in total, by (model, region), and per day (UTC) since the recall started."""
    total = Counts()
    groups: dict[tuple[str, str], Counts] = {}
    for f in facts:
        total.add(f)
        groups.setdefault((f.model, f.region), Counts()).add(f)
    days: list[tuple[date, Counts]] = []
    first = max(started.date(), (now - timedelta(days=MAX_DAYS - 1)).date())
    day = first
    while day <= now.date():
        end = min(datetime.combine(day + timedelta(days=1), time(), tzinfo=now.tzinfo), now)
        counts = Counts()
        for f in facts:
            counts.add(f, until=end)
        days.append((day, counts))
        day += timedelta(days=1)
    return Completion(total, dict(sorted(groups.items())), days)


CSV_HEADER = ("model", "region", *COUNTS, "remedied_pct")


def completion_rows(result: Completion) -> list[tuple]:
    """The CSV's rows: one per model and region, then the total (model and region 'all')."""
    rows = [(m, r, *c.as_dict().values()) for (m, r), c in result.by_group.items()]
    rows.append(("all", "all", *result.total.as_dict().values()))
    return rows
