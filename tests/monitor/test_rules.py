"""Degraded-health rules: pure decisions from heartbeats and `now`, with hysteresis."""

from datetime import UTC, datetime, timedelta

import pytest

from monitor.rules import RuleError, Sample, evaluate_rule, evaluate_rules, parse_rules

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)

LOW_BATTERY = {
    "name": "low_battery",
    "kind": "threshold",
    "metric": "battery_pct",
    "fire_below": 15,
    "clear_above": 20,
    "for_s": 600,
}
TEMPERATURE = {
    "name": "temperature",
    "kind": "threshold",
    "metric": "temp_c",
    "fire_below": 0,
    "fire_above": 45,
    "clear_above": 2,
    "clear_below": 43,
    "for_s": 300,
}
DRAIN = {
    "name": "battery_drain",
    "kind": "drain",
    "metric": "battery_pct",
    "horizon_s": 24 * 3600,
    "clear_horizon_s": 36 * 3600,
    "window_s": 4 * 3600,
    "min_points": 10,
}
REBOOT_LOOP = {"name": "reboot_loop", "kind": "reboot_loop", "resets": 3, "window_s": 1800}
FLAKY_LINK = {
    "name": "flaky_link",
    "kind": "flaky_link",
    "missing_pct": 20,
    "clear_pct": 10,
    "window_s": 3600,
}


def rule(data: dict):
    return parse_rules([data])[0]


def series(values, metric: str, every: timedelta = MIN) -> list[Sample]:
    """One reading per `every`, the last at NOW."""
    n = len(values)
    return [
        Sample(NOW - (n - 1 - i) * every, 1000 + i, {metric: v} if v is not None else {})
        for i, v in enumerate(values)
    ]


def judge(data: dict, samples, open_: bool, *, interval_s: int = 60):
    return evaluate_rule(rule(data), samples, open_=open_, now=NOW, interval_s=interval_s)


def check(data: dict, samples, open_: bool, expected: str, *, interval_s: int = 60):
    verdict = judge(data, samples, open_, interval_s=interval_s)
    assert verdict.action == expected, verdict.reason
    return verdict


BATTERY_ROWS = [
    # (case, readings a minute apart ending at NOW, incident open, verdict)
    ("below 15 for 10 min fires", [30] + [12] * 11, False, "fire"),
    ("below 15 for 5 min holds", [30] * 5 + [12] * 6, False, "hold"),
    ("a reading back above 15 restarts the count", [12] * 8 + [16] + [12] * 3, False, "hold"),
    ("at 18 a closed incident does not fire", [18] * 12, False, "hold"),
    ("at 18 an open incident does not clear", [12] * 5 + [18] * 7, True, "hold"),
    ("above 20 clears", [12] * 5 + [21], True, "clear"),
    ("exactly 20 does not clear", [12] * 5 + [20], True, "hold"),
    ("still low while open holds", [12] * 20, True, "hold"),
    ("no battery readings hold", [None] * 12, False, "hold"),
    ("readings without the metric are skipped", [30] + [12, None] * 6, False, "fire"),
]


@pytest.mark.parametrize(("case", "values", "open_", "expected"), BATTERY_ROWS)
def test_low_battery_fires_after_its_duration_and_clears_only_above_20(
    case, values, open_, expected
):
    verdict = judge(LOW_BATTERY, series(values, "battery_pct"), open_)
    assert verdict.action == expected, verdict.reason


def test_low_battery_verdict_says_the_value_and_limit():
    verdict = check(LOW_BATTERY, series([30] + [12] * 11, "battery_pct"), False, "fire")
    assert verdict.value == 12
    assert verdict.facts["limit"] == 15 and verdict.facts["side"] == "below"
    assert verdict.reason == "battery_pct 12 below 15 for 10 min"


TEMPERATURE_ROWS = [
    ("too hot for 5 min fires", [30] + [52] * 6, False, "fire", "above"),
    ("too cold for 5 min fires", [10] + [-3] * 6, False, "fire", "below"),
    ("too hot for 2 min holds", [30] * 4 + [52] * 3, False, "hold", None),
    ("too hot then too cold is still out of range", [52] * 3 + [-3] * 3, False, "fire", "below"),
    ("44 while open holds (inside limits, outside the clear band)", [52, 44], True, "hold", None),
    ("1 while open holds", [-3, 1], True, "hold", None),
    ("40 while open clears", [52, 40], True, "clear", None),
]


@pytest.mark.parametrize(("case", "values", "open_", "expected", "side"), TEMPERATURE_ROWS)
def test_temperature_range_fires_on_either_side_and_clears_inside_the_band(
    case, values, open_, expected, side
):
    verdict = check(TEMPERATURE, series(values, "temp_c"), open_, expected)
    if side:
        assert verdict.facts["side"] == side


def falling(start: float, per_h: float, hours: float = 4, every_min: int = 10) -> list[float]:
    steps = int(hours * 60 / every_min)
    return [round(start - per_h * (i * every_min / 60), 2) for i in range(steps + 1)]


DRAIN_ROWS = [
    # 2 %/h ending at 42 %: empty in 21 h, inside 24 h.
    ("empty within the horizon fires", falling(50, 2), False, "fire"),
    # 1 %/h ending at 56 %: 56 h.
    ("empty beyond the horizon holds", falling(60, 1), False, "hold"),
    # 1 %/h ending at 30 %: 30 h, past 24 h but within the 36 h clear horizon.
    ("between the horizons an open incident holds", falling(34, 1), True, "hold"),
    # 1 %/h ending at 40 %: 40 h, past 36 h.
    ("beyond the clear horizon clears", falling(44, 1), True, "clear"),
    ("charging clears", [*falling(50, 2), 45], True, "clear"),
    ("charging never fires", [*falling(50, 2), 45], False, "hold"),
    ("flat holds", [50.0] * 25, False, "hold"),
    ("fewer points than min_points hold", falling(20, 10, hours=1, every_min=10), False, "hold"),
    # 12 points a minute apart: enough points, but spanning 11 min of a 4 h window.
    ("a short span holds", falling(20, 10, hours=11 / 60, every_min=1), False, "hold"),
]


@pytest.mark.parametrize(("case", "values", "open_", "expected"), DRAIN_ROWS)
def test_drain_predicts_empty_within_horizon_with_a_separate_clear_horizon(
    case, values, open_, expected
):
    every = MIN if "short span" in case else 10 * MIN
    verdict = judge(DRAIN, series(values, "battery_pct", every=every), open_)
    assert verdict.action == expected, verdict.reason


def test_drain_verdict_says_when_it_runs_out():
    verdict = check(DRAIN, series(falling(50, 2), "battery_pct", 10 * MIN), False, "fire")
    assert verdict.facts["empty_in_s"] == pytest.approx(21 * 3600, rel=0.01)
    assert verdict.facts["rate_per_h"] == pytest.approx(2, rel=0.01)


def uptimes(resets_at_min: list[int], minutes: int = 40) -> list[Sample]:
    """A sample a minute, the last at NOW; uptime restarts at the given minutes before NOW."""
    samples, uptime = [], 5000
    for ago in range(minutes, -1, -1):
        uptime = 30 if ago in resets_at_min else uptime + 60
        samples.append(Sample(NOW - ago * MIN, uptime, {}))
    return samples


REBOOT_ROWS = [
    ("3 resets within 30 min fire", [25, 15, 5], False, "fire"),
    ("2 resets hold", [15, 5], False, "hold"),
    ("a reset older than the window is not counted", [35, 15, 5], False, "hold"),
    ("1 reset while open holds", [5], True, "hold"),
    ("no reset within the window clears", [38], True, "clear"),
]


@pytest.mark.parametrize(("case", "resets", "open_", "expected"), REBOOT_ROWS)
def test_reboot_loop_counts_uptime_resets_in_the_window(case, resets, open_, expected):
    verdict = check(REBOOT_LOOP, uptimes(resets), open_, expected)
    assert verdict.facts["resets"] == len([m for m in resets if m < 30])


def heard(missing_min: set[int], minutes: int = 62) -> list[Sample]:
    """A heartbeat a minute up to NOW, except at the given minutes before NOW."""
    return [
        Sample(NOW - ago * MIN, 1000, {})
        for ago in range(minutes, -1, -1)
        if ago not in missing_min
    ]


FLAKY_ROWS = [
    # A heartbeat a minute: 60 expected in the hour.
    ("15 of 60 missing (25 %) fires", set(range(0, 30, 2)), False, "fire"),
    ("10 missing (16.7 %) holds", set(range(0, 20, 2)), False, "hold"),
    ("10 missing while open holds (not below 10 %)", set(range(0, 20, 2)), True, "hold"),
    ("2 missing (3.3 %) clears", {3, 7}, True, "clear"),
    ("none missing holds", set(), False, "hold"),
]


@pytest.mark.parametrize(("case", "missing", "open_", "expected"), FLAKY_ROWS)
def test_flaky_link_judges_the_missing_share_with_hysteresis(case, missing, open_, expected):
    verdict = judge(FLAKY_LINK, heard(missing), open_)
    assert verdict.action == expected, verdict.reason


def test_flaky_link_waits_until_the_device_was_watched_for_the_whole_window():
    # Heard from only for the last 40 minutes: 20 of 60 "missing", but not judged yet.
    verdict = check(FLAKY_LINK, heard(set(), minutes=40), False, "hold")
    assert "whole" in verdict.reason


def test_flaky_link_uses_the_models_interval():
    # A car reports every 5 min: 12 expected in the hour, 9 received = 25 % missing.
    samples = [Sample(NOW - m * MIN, 1000, {}) for m in (65, 55, 50, 45, 40, 25, 20, 15, 5, 0)]
    verdict = check(FLAKY_LINK, samples, False, "fire", interval_s=300)
    assert verdict.value == 25.0
    assert verdict.facts == {"expected": 12, "received": 9}


def test_an_open_incident_whose_rule_is_gone_clears():
    verdicts = evaluate_rules(
        [rule(LOW_BATTERY)],
        series([50], "battery_pct"),
        open_kinds={"low_battery", "temperature"},
        now=NOW,
        interval_s=60,
    )
    assert verdicts["low_battery"].action == "clear"
    assert verdicts["temperature"].action == "clear"
    assert verdicts["temperature"].reason == "no rule for it any more"


INVALID_ROWS = [
    ({**LOW_BATTERY, "clear_above": 10}, "rule 1 (low_battery, threshold): clear_above (10)"),
    ({**LOW_BATTERY, "fire_below": None}, "set fire_below, fire_above or both"),
    ({**LOW_BATTERY, "clear_above": None}, "fire_below and clear_above go together"),
    ({**TEMPERATURE, "clear_below": 50}, "clear_below (50) must not be above fire_above (45)"),
    ({**DRAIN, "clear_horizon_s": 3600}, "clear_horizon_s must not be shorter than horizon_s"),
    ({**DRAIN, "min_points": 2}, "min_points: Input should be greater than or equal to 3"),
    ({**REBOOT_LOOP, "clear_resets": 3}, "clear_resets must be below resets (3)"),
    ({**FLAKY_LINK, "clear_pct": 30}, "clear_pct (30) must not be above missing_pct (20)"),
    ({**FLAKY_LINK, "window_s": "an hour"}, "rule 1 (flaky_link, flaky_link): window_s:"),
    ({**REBOOT_LOOP, "kind": "nap"}, "rule 1 (reboot_loop, nap): Input tag 'nap'"),
    ({"name": "x", "resets": 3, "window_s": 60}, "rule 1 (x): kind: missing, one of threshold"),
    ({**REBOOT_LOOP, "name": "Reboots!"}, "name: String should match pattern"),
    ({**REBOOT_LOOP, "name": "offline"}, "(offline): name is one of the monitor's own kinds"),
    ({**REBOOT_LOOP, "every": 3}, "every: Extra inputs are not permitted"),
    ({**REBOOT_LOOP, "name": "restarts"}, "no message template 'device_restarts'"),
]


@pytest.mark.parametrize(("data", "message"), INVALID_ROWS)
def test_bad_rule_data_gives_a_clear_error(data, message):
    with pytest.raises(RuleError, match="invalid health rules") as raised:
        parse_rules([data])
    assert message in str(raised.value)


def test_a_name_used_twice_and_bad_json_are_refused():
    with pytest.raises(RuleError, match="low_battery\\): name used twice"):
        parse_rules([LOW_BATTERY, LOW_BATTERY])
    with pytest.raises(RuleError, match="not JSON"):
        parse_rules("[{")
    with pytest.raises(RuleError, match="rules: Input should be a valid list"):
        parse_rules({"rules": []})


def test_a_custom_name_may_reuse_a_template():
    (parsed,) = parse_rules([{**REBOOT_LOOP, "name": "restarts", "template": "device_reboot_loop"}])
    assert parsed.notice_template == "device_reboot_loop"
