"""The health-rule engine on arbitrary rules and heartbeats: a clear error or a verdict."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.rules import RuleError, Sample, evaluate_rules, parse_rules

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

numbers = st.integers(-(10**6), 10**6) | st.floats(allow_nan=True, allow_infinity=True)
rule_like = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["low_battery", "hot", "x", "offline", "Bad Name", ""]),
        "kind": st.sampled_from(["threshold", "drain", "reboot_loop", "flaky_link", "magic"]),
    },
    optional={
        "metric": st.sampled_from(["battery_pct", "temp_c", "rssi_dbm", ""]),
        "fire_below": numbers,
        "fire_above": numbers,
        "clear_above": numbers,
        "clear_below": numbers,
        "for_s": numbers,
        "horizon_s": numbers,
        "clear_horizon_s": numbers,
        "window_s": numbers,
        "min_points": numbers,
        "resets": numbers,
        "clear_resets": numbers,
        "missing_pct": numbers,
        "clear_pct": numbers,
        "severity": st.sampled_from(["info", "warning", "critical", "x"]),
    },
)
# Rules that validate, with arbitrary figures: so the engine itself is exercised too.
finite = st.floats(-1000, 1000, allow_nan=False)
valid_rule = st.one_of(
    st.builds(
        lambda low, gap, for_s: {
            "name": "low_battery",
            "kind": "threshold",
            "metric": "battery_pct",
            "fire_below": low,
            "clear_above": low + gap,
            "for_s": for_s,
        },
        finite,
        st.floats(0, 100),
        st.integers(0, 86400),
    ),
    st.builds(
        lambda high, gap: {
            "name": "hot",
            "kind": "threshold",
            "metric": "temp_c",
            "fire_above": high,
            "clear_below": high - gap,
        },
        finite,
        st.floats(0, 100),
    ),
    st.builds(
        lambda horizon, window, points: {
            "name": "battery_drain",
            "kind": "drain",
            "metric": "battery_pct",
            "horizon_s": horizon,
            "window_s": window,
            "min_points": points,
        },
        st.integers(1, 10**6),
        st.integers(1, 10**6),
        st.integers(3, 50),
    ),
    st.builds(
        lambda resets, window: {
            "name": "reboot_loop",
            "kind": "reboot_loop",
            "resets": resets,
            "window_s": window,
        },
        st.integers(1, 20),
        st.integers(1, 10**5),
    ),
    st.builds(
        lambda pct, window: {
            "name": "flaky_link",
            "kind": "flaky_link",
            "missing_pct": pct,
            "clear_pct": pct / 2,
            "window_s": window,
        },
        st.floats(0.1, 99.9),
        st.integers(1, 10**5),
    ),
)
samples = st.lists(
    st.builds(
        lambda offset, uptime, metrics: Sample(NOW - timedelta(seconds=offset), uptime, metrics),
        st.integers(0, 7 * 86400),
        st.none() | st.integers(0, 10**9),
        st.dictionaries(
            st.sampled_from(["battery_pct", "temp_c", "rssi_dbm", "other"]),
            numbers | st.text(max_size=3) | st.none() | st.booleans(),
            max_size=4,
        ),
    ),
    max_size=60,
).map(lambda xs: sorted(xs, key=lambda s: s.ts))


def parse_or_error(data):
    try:
        return parse_rules(data), None
    except RuleError as exc:
        return None, str(exc)


@settings(max_examples=400, deadline=None)
@given(
    data=st.lists(rule_like, max_size=4) | st.text(max_size=50) | st.integers(),
    history=samples,
    interval=st.integers(1, 3600),
    open_=st.booleans(),
)
def test_any_rules_and_heartbeats_give_an_error_or_verdicts(data, history, interval, open_):
    rules, error = parse_or_error(data)
    if error is not None:
        assert error.startswith("invalid health rules")
        return
    open_kinds = {r.name for r in rules} if open_ else set()
    verdicts = evaluate_rules(rules, history, open_kinds=open_kinds, now=NOW, interval_s=interval)
    assert set(verdicts) == {r.name for r in rules}
    for name, verdict in verdicts.items():
        assert verdict.action in ("fire", "clear", "hold")
        # Only a closed incident can fire, only an open one can clear.
        assert verdict.action != "fire" or name not in open_kinds
        assert verdict.action != "clear" or name in open_kinds
