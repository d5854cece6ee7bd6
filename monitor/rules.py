"""Degraded-health rules: the schema kept as data per device model, and the pure decisions.

A device model (or one device, overriding it) carries a list of rules in `health_rules`.
Each rule's `name` is the kind of incident it opens. `evaluate_rule` decides from a
device's recent heartbeats, and whether that incident is open, if the rule fires, clears or
holds. Fire and clear conditions are separate (hysteresis), so a value hovering at a limit
does not open and close incidents all day.

    Rule (discriminated on `kind`)
    ├── threshold    a metric outside its limits for a while; clears back inside a band
    ├── drain        a metric's least-squares trend reaches 0 within a horizon
    ├── reboot_loop  uptime went backwards too often within a window
    ├── flaky_link   too large a share of the expected heartbeats missing within a window
    └── silent_metric  a named metric stopped arriving while heartbeats go on; clears when
                       it is back in enough heartbeats in a row
"""

from __future__ import annotations

import functools
import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveInt,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from alerts.context import duration_text
from alerts.templates import TEMPLATES

# Incident kinds the monitor opens itself: a rule may not take their name.
RESERVED_NAMES = frozenset({"offline", "never_seen", "unstable_connection"})

Name = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,47}$")]
Metric = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
# Words for a customer's message: printable, short.
Label = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f{}]+$")]


@dataclass(frozen=True, slots=True)
class Sample:
    """One heartbeat, as the rules see it."""

    ts: datetime
    uptime_s: int | None
    metrics: Mapping[str, object]


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a rule decided: `fire` (open the incident), `clear` (resolve it) or `hold`."""

    action: Literal["fire", "clear", "hold"]
    reason: str
    value: float | None = None
    # Figures a message may quote: limit, side, empty_in_s, resets, expected, ...
    facts: Mapping[str, float | int | str] = field(default_factory=dict)


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Name
    severity: Literal["info", "warning", "critical"] = "warning"
    # The customer message; default `device_<name>` (a key of alerts.templates.TEMPLATES).
    template: str | None = None

    @property
    def notice_template(self) -> str:
        return self.template or f"device_{self.name}"


class ThresholdRule(_Rule):
    """Fires when `metric` stays below `fire_below` or above `fire_above` for `for_s`;
    clears when it stays above `clear_above` and below `clear_below` for `clear_for_s`."""

    kind: Literal["threshold"]
    metric: Metric
    fire_below: float | None = None
    fire_above: float | None = None
    clear_above: float | None = None
    clear_below: float | None = None
    for_s: NonNegativeInt = 0
    clear_for_s: NonNegativeInt = 0

    @model_validator(mode="after")
    def _hysteresis(self) -> ThresholdRule:
        if self.fire_below is None and self.fire_above is None:
            raise ValueError("set fire_below, fire_above or both")
        if (self.fire_below is None) != (self.clear_above is None):
            raise ValueError("fire_below and clear_above go together")
        if (self.fire_above is None) != (self.clear_below is None):
            raise ValueError("fire_above and clear_below go together")
        if self.fire_below is not None and self.clear_above < self.fire_below:
            raise ValueError(
                f"clear_above ({self.clear_above:g}) must not be below fire_below "
                f"({self.fire_below:g})"
            )
        if self.fire_above is not None and self.clear_below > self.fire_above:
            raise ValueError(
                f"clear_below ({self.clear_below:g}) must not be above fire_above "
                f"({self.fire_above:g})"
            )
        both = self.clear_above is not None and self.clear_below is not None
        if both and self.clear_above >= self.clear_below:
            raise ValueError(
                f"clear_above ({self.clear_above:g}) must be below clear_below "
                f"({self.clear_below:g})"
            )
        return self

    def lookback_s(self, interval_s: int) -> int:
        return max(self.for_s, self.clear_for_s) + 2 * interval_s


class DrainRule(_Rule):
    """Fires when the least-squares trend of `metric` over `window_s` reaches 0 within
    `horizon_s`; clears when it would take longer than `clear_horizon_s` or it is charging."""

    kind: Literal["drain"]
    metric: Metric
    horizon_s: PositiveInt
    # Default: horizon_s.
    clear_horizon_s: PositiveInt | None = None
    window_s: PositiveInt
    min_points: int = Field(default=10, ge=3)
    # The readings must span this much of the window; default half of it. A short span of
    # whole-percent readings makes a steep, false slope.
    min_span_s: NonNegativeInt | None = None
    # Risen this far above the window's lowest reading: charging.
    charging_rise: float = Field(default=2.0, gt=0)

    @model_validator(mode="after")
    def _consistent(self) -> DrainRule:
        if self.clear_horizon_s is not None and self.clear_horizon_s < self.horizon_s:
            raise ValueError("clear_horizon_s must not be shorter than horizon_s")
        if self.min_span_s is not None and self.min_span_s > self.window_s:
            raise ValueError("min_span_s must not be longer than window_s")
        return self

    def lookback_s(self, interval_s: int) -> int:
        return self.window_s


class RebootLoopRule(_Rule):
    """Fires when uptime went backwards `resets` times within `window_s`; clears at
    `clear_resets` or fewer."""

    kind: Literal["reboot_loop"]
    resets: PositiveInt
    window_s: PositiveInt
    clear_resets: NonNegativeInt = 0

    @model_validator(mode="after")
    def _consistent(self) -> RebootLoopRule:
        if self.clear_resets >= self.resets:
            raise ValueError(f"clear_resets must be below resets ({self.resets})")
        return self

    def lookback_s(self, interval_s: int) -> int:
        return self.window_s + 2 * interval_s


class FlakyLinkRule(_Rule):
    """Fires when more than `missing_pct` % of the heartbeats expected within `window_s`
    are missing; clears below `clear_pct` %. Judged only once the device was heard from
    before the window began."""

    kind: Literal["flaky_link"]
    missing_pct: float = Field(gt=0, lt=100)
    clear_pct: float = Field(ge=0, lt=100)
    window_s: PositiveInt

    @model_validator(mode="after")
    def _consistent(self) -> FlakyLinkRule:
        if self.clear_pct > self.missing_pct:
            raise ValueError(
                f"clear_pct ({self.clear_pct:g}) must not be above missing_pct "
                f"({self.missing_pct:g})"
            )
        return self

    def lookback_s(self, interval_s: int) -> int:
        return self.window_s + 2 * interval_s


class SilentMetricRule(_Rule):
    """Fires when heartbeats kept coming for `for_s` without `metric` (a sensor gone quiet
    while the device talks); clears once the latest `clear_readings` heartbeats carry it."""

    kind: Literal["silent_metric"]
    metric: Metric
    for_s: PositiveInt
    clear_readings: PositiveInt = 1
    # What the owner's message calls it ("temperature sensor"); default: the metric's name.
    label: Label | None = None

    @property
    def notice_template(self) -> str:
        # One message for every sensor, whatever the rule is named.
        return self.template or "device_metric_silent"

    def lookback_s(self, interval_s: int) -> int:
        # Twice the time, so the metric's last reading is usually in sight and the message
        # says how long it has really been silent (further back: at least that long).
        return 2 * self.for_s + 2 * interval_s


Rule = Annotated[
    ThresholdRule | DrainRule | RebootLoopRule | FlakyLinkRule | SilentMetricRule,
    Field(discriminator="kind"),
]
_RULES = TypeAdapter(list[Rule])


class RuleError(ValueError):
    """A rule list that does not validate; the message names each rule and field at fault."""


def parse_rules(data: object) -> tuple[Rule, ...]:
    """Validate a rule list (JSON text, or the decoded list); raise RuleError if it is bad."""
    if isinstance(data, str | bytes):
        try:
            data = json.loads(data)
        except ValueError as exc:
            raise RuleError(f"invalid health rules: not JSON: {exc}") from None
    try:
        rules = _RULES.validate_python(data)
    except ValidationError as exc:
        raise RuleError(_explain(exc, data)) from None
    problems = []
    seen: set[str] = set()
    for i, rule in enumerate(rules, 1):
        if rule.name in RESERVED_NAMES:
            problems.append(f"rule {i} ({rule.name}): name is one of the monitor's own kinds")
        if rule.name in seen:
            problems.append(f"rule {i} ({rule.name}): name used twice (one incident kind each)")
        seen.add(rule.name)
        if rule.notice_template not in TEMPLATES:
            problems.append(
                f"rule {i} ({rule.name}): no message template {rule.notice_template!r} "
                "(set `template` to one of alerts.templates.TEMPLATES)"
            )
    if problems:
        raise RuleError("invalid health rules: " + "; ".join(problems))
    return tuple(rules)


@functools.lru_cache(maxsize=256)
def parse_rules_text(text: str) -> tuple[Rule, ...]:
    """parse_rules for the JSON text of a stored list, cached: a fleet shares few lists."""
    return parse_rules(text)


def _explain(exc: ValidationError, data: object) -> str:
    """One line per problem: 'rule 2 (low_battery, threshold): for_s: ...'."""
    problems = []
    for error in exc.errors(include_url=False):
        loc = list(error["loc"])
        where = "rules"
        if loc and isinstance(loc[0], int):
            index = loc.pop(0)
            if loc and loc[0] in _DECIDE:
                loc.pop(0)  # the union member: the rule's kind, said below
            raw = data[index] if isinstance(data, list) else None
            said = [str(raw[k]) for k in ("name", "kind") if isinstance(raw, dict) and k in raw]
            where = f"rule {index + 1}" + (f" ({', '.join(said)})" if said else "")
        field_path = ".".join(str(part) for part in loc)
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "union_tag_not_found":
            message = f"kind: missing, one of {', '.join(_DECIDE)}"
        problems.append(f"{where}: {field_path + ': ' if field_path else ''}{message}")
    return "invalid health rules: " + "; ".join(problems)


# --- decisions -----------------------------------------------------------------------


def evaluate_rule(
    rule: Rule, samples: Sequence[Sample], *, open_: bool, now: datetime, interval_s: int
) -> Verdict:
    """Fire, clear or hold, from the device's heartbeats (oldest first) up to `now`.

    `open_` says whether this rule's incident is open: only a closed one can fire, only an
    open one can clear.
    """
    return _DECIDE[rule.kind](rule, samples, open_, now, interval_s)


def evaluate_rules(
    rules: Sequence[Rule],
    samples: Sequence[Sample],
    *,
    open_kinds: frozenset[str] | set[str],
    now: datetime,
    interval_s: int,
) -> dict[str, Verdict]:
    """Every rule's verdict by name; an open health incident no rule names any more clears."""
    verdicts = {
        rule.name: evaluate_rule(
            rule, samples, open_=rule.name in open_kinds, now=now, interval_s=interval_s
        )
        for rule in rules
    }
    for kind in sorted(open_kinds - verdicts.keys()):
        verdicts[kind] = Verdict("clear", "no rule for it any more")
    return verdicts


def _readings(samples: Sequence[Sample], metric: str) -> list[tuple[datetime, float]]:
    """(ts, value) of the samples that carry `metric` as a number."""
    out = []
    for s in samples:
        value = s.metrics.get(metric)
        if isinstance(value, int | float) and not isinstance(value, bool):
            out.append((s.ts, float(value)))
    return out


def _held_for(readings: list[tuple[datetime, float]], condition) -> float | None:
    """Seconds `condition` has held over the latest readings, or None if the latest fails."""
    if not readings or not condition(readings[-1][1]):
        return None
    start = readings[-1][0]
    for ts, value in reversed(readings):
        if not condition(value):
            break
        start = ts
    return (readings[-1][0] - start).total_seconds()


def _threshold(rule: ThresholdRule, samples, open_, now, interval_s) -> Verdict:
    readings = _readings(samples, rule.metric)
    if not readings:
        return Verdict("hold", f"no {rule.metric} readings")
    value = readings[-1][1]

    def side(v: float) -> str | None:
        if rule.fire_below is not None and v < rule.fire_below:
            return "below"
        if rule.fire_above is not None and v > rule.fire_above:
            return "above"
        return None

    def inside(v: float) -> bool:
        return (rule.clear_above is None or v > rule.clear_above) and (
            rule.clear_below is None or v < rule.clear_below
        )

    if not open_:
        held = _held_for(readings, lambda v: side(v) is not None)
        if held is None:
            return Verdict("hold", f"{rule.metric} {value:g} within limits", value)
        where = side(value)
        limit = rule.fire_below if where == "below" else rule.fire_above
        facts = {"limit": limit, "side": where, "held_s": held}
        text = f"{rule.metric} {value:g} {where} {limit:g} for {_span(held)}"
        if held >= rule.for_s:
            return Verdict("fire", text, value, facts)
        return Verdict("hold", f"{text}, not yet {_span(rule.for_s)}", value, facts)
    held = _held_for(readings, inside)
    band = _band(rule)
    if held is None:
        return Verdict("hold", f"{rule.metric} {value:g} not yet {band}", value)
    text = f"{rule.metric} {value:g} {band} for {_span(held)}"
    if held >= rule.clear_for_s:
        return Verdict("clear", text, value, {"held_s": held})
    return Verdict("hold", f"{text}, not yet {_span(rule.clear_for_s)}", value)


def _band(rule: ThresholdRule) -> str:
    if rule.clear_above is not None and rule.clear_below is not None:
        return f"between {rule.clear_above:g} and {rule.clear_below:g}"
    if rule.clear_above is not None:
        return f"above {rule.clear_above:g}"
    return f"below {rule.clear_below:g}"


def _drain(rule: DrainRule, samples, open_, now, interval_s) -> Verdict:
    start = now - timedelta(seconds=rule.window_s)
    readings = [(ts, v) for ts, v in _readings(samples, rule.metric) if ts > start]
    if not readings:
        return Verdict("hold", f"no {rule.metric} readings")
    value = readings[-1][1]
    lowest = min(v for _, v in readings)
    if value - lowest >= rule.charging_rise:
        reason = f"charging: {rule.metric} up from {lowest:g} to {value:g}"
        return Verdict("clear" if open_ else "hold", reason, value)
    span = (readings[-1][0] - readings[0][0]).total_seconds()
    min_span = rule.window_s // 2 if rule.min_span_s is None else rule.min_span_s
    if len(readings) < rule.min_points or span < min_span or span <= 0:
        return Verdict(
            "hold", f"not enough history: {len(readings)} readings over {_span(span)}", value
        )
    slope, level = _fit(readings)
    if slope >= 0:
        return Verdict("clear" if open_ else "hold", f"{rule.metric} not falling", value)
    empty_at = readings[-1][0] + timedelta(seconds=max(level, 0.0) / -slope)
    empty_in = max((empty_at - now).total_seconds(), 0.0)
    facts = {"empty_in_s": empty_in, "rate_per_h": -slope * 3600}
    text = f"{rule.metric} {value:g} falling {-slope * 3600:.2g}/h, empty in {_span(empty_in)}"
    if not open_:
        return Verdict("fire" if empty_in <= rule.horizon_s else "hold", text, value, facts)
    clear_horizon = rule.clear_horizon_s or rule.horizon_s
    return Verdict("clear" if empty_in > clear_horizon else "hold", text, value, facts)


def _fit(readings: list[tuple[datetime, float]]) -> tuple[float, float]:
    """Least-squares slope (per second) and the fitted value at the latest reading."""
    t0 = readings[0][0]
    xs = [(ts - t0).total_seconds() for ts, _ in readings]
    ys = [v for _, v in readings]
    n = len(xs)
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mean_x) ** 2 for x in xs)
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    slope = sxy / sxx if sxx else 0.0
    return slope, mean_y + slope * (xs[-1] - mean_x)


def _reboot_loop(rule: RebootLoopRule, samples, open_, now, interval_s) -> Verdict:
    start = now - timedelta(seconds=rule.window_s)
    uptimes = [s for s in samples if s.uptime_s is not None]
    if not any(s.ts > start for s in uptimes):
        return Verdict("hold", "no uptime readings")
    resets = sum(
        1
        for before, after in itertools.pairwise(uptimes)
        if after.ts > start and after.uptime_s < before.uptime_s
    )
    text = f"{resets} uptime resets in {_span(rule.window_s)}"
    facts = {"resets": resets}
    if not open_:
        return Verdict("fire" if resets >= rule.resets else "hold", text, resets, facts)
    return Verdict("clear" if resets <= rule.clear_resets else "hold", text, resets, facts)


def _flaky_link(rule: FlakyLinkRule, samples, open_, now, interval_s) -> Verdict:
    start = now - timedelta(seconds=rule.window_s)
    if not any(s.ts <= start for s in samples):
        return Verdict("hold", f"not heard from for a whole {_span(rule.window_s)} yet")
    expected = rule.window_s / interval_s
    received = len({s.ts for s in samples if s.ts > start})
    missing_pct = round(max(expected - received, 0) / expected * 100, 1)
    text = f"{missing_pct:g}% of {expected:g} heartbeats missing in {_span(rule.window_s)}"
    facts = {"expected": round(expected), "received": received}
    if not open_:
        fire = missing_pct > rule.missing_pct
        return Verdict("fire" if fire else "hold", text, missing_pct, facts)
    return Verdict("clear" if missing_pct < rule.clear_pct else "hold", text, missing_pct, facts)


def _silent_metric(rule: SilentMetricRule, samples, open_, now, interval_s) -> Verdict:
    label = rule.label or rule.metric
    readings = _readings(samples, rule.metric)
    if open_:
        recent = samples[-rule.clear_readings :]
        carrying = len(_readings(recent, rule.metric))
        if len(recent) == rule.clear_readings and carrying == len(recent):
            return Verdict("clear", f"{rule.metric} arriving again", readings[-1][1])
        return Verdict("hold", f"{rule.metric} in {carrying} of the last {len(recent)} heartbeats")
    if not samples:
        return Verdict("hold", "no heartbeats")
    start = now - timedelta(seconds=rule.for_s)
    if readings and readings[-1][0] > start:
        return Verdict("hold", f"{rule.metric} arriving", readings[-1][1])
    # Silence of the metric counts only while the device spoke: heard from since `start`,
    # and known from before it (the metric's last reading, or a heartbeat without it).
    if samples[-1].ts <= start:
        return Verdict("hold", "no heartbeats lately either: not a silent sensor")
    since = readings[-1][0] if readings else samples[0].ts
    if since > start:
        return Verdict("hold", f"not heard from for a whole {_span(rule.for_s)} yet")
    silent_s = (now - since).total_seconds()
    facts = {"metric": label, "silent_s": silent_s}
    if readings:
        facts["last_value"] = readings[-1][1]
    text = f"no {rule.metric} for {_span(silent_s)} while heartbeats continue"
    return Verdict("fire", text, None, facts)


def _span(seconds: float) -> str:
    return duration_text(timedelta(seconds=seconds)) if seconds >= 60 else f"{seconds:.0f} s"


_DECIDE = {
    "threshold": _threshold,
    "drain": _drain,
    "reboot_loop": _reboot_loop,
    "flaky_link": _flaky_link,
    "silent_metric": _silent_metric,
}
