"""The fault table and the pure functions that read it."""

from __future__ import annotations

import pytest

from devices.simulator import scenarios
from devices.simulator.profiles import PROFILES
from devices.simulator.scenarios import SCENARIOS, make_fault

# (scenario, heartbeats stop at, in device seconds, for a fault starting at 100 lasting 50)
STOPS = (
    ("silent", 100.0),
    ("drop_no_will", 100.0),
    ("power_loss", 100.0),
    ("battery_drain", 150.0),
    ("overheat", None),
    ("reboot_loop", None),
    ("flapping", None),
    ("clock_skew", None),
    ("fails_to_wake", None),  # the device decides: at the sleep it announces next
    ("parked_drain", 150.0),
)


def test_every_scenario_has_a_row_in_the_stop_table():
    assert set(SCENARIOS) == {name for name, _ in STOPS}


@pytest.mark.parametrize(("name", "stop"), STOPS)
def test_heartbeats_stop_where_the_scenario_says(name, stop):
    fault = make_fault(name, start_after_s=100, duration_s=50)
    assert scenarios.heartbeats_stop_at(fault) == stop


@pytest.mark.parametrize(
    ("elapsed", "expected"),
    [(0, 0.0), (100, 0.0), (125, 0.5), (150, 1.0), (1000, 1.0)],
)
def test_ramp_progress_runs_from_start_to_end(elapsed, expected):
    fault = make_fault("overheat", start_after_s=100, duration_s=50)
    assert scenarios.ramp_progress(fault, elapsed) == expected


@pytest.mark.parametrize(
    ("elapsed", "uptime"),
    [(50, 5000.0), (100, 0.0), (219, 119.0), (220, 0.0), (250, 30.0)],
)
def test_reboot_loop_uptime_counts_from_the_last_reboot(elapsed, uptime):
    fault = make_fault("reboot_loop", start_after_s=100)
    assert scenarios.uptime_s(fault, elapsed, normal_uptime_s=5000.0) == uptime


def test_clock_offset_applies_only_once_the_fault_began():
    fault = make_fault("clock_skew", start_after_s=100)
    assert scenarios.clock_offset_s(fault, 99) == 0
    assert scenarios.clock_offset_s(fault, 100) < -2 * scenarios.YEAR_S


def test_battery_drain_fits_only_devices_with_a_battery():
    drain = SCENARIOS["battery_drain"]
    assert not scenarios.fits(drain, PROFILES["ev-charger-v1"].reports)
    assert scenarios.fits(drain, PROFILES["camera-v1"].reports)
    assert scenarios.fits(SCENARIOS["overheat"], PROFILES["ev-charger-v1"].reports)


def test_make_fault_refuses_unknown_names_and_bad_durations():
    with pytest.raises(ValueError, match="unknown scenario"):
        make_fault("meteor_strike", start_after_s=0)
    with pytest.raises(ValueError, match="positive duration"):
        make_fault("battery_drain", start_after_s=0, duration_s=0)
    with pytest.raises(ValueError, match="negative"):
        make_fault("silent", start_after_s=-1)


def test_make_fault_takes_the_scenario_duration_unless_given():
    assert make_fault("battery_drain", start_after_s=0).duration_s == 3600
    assert make_fault("battery_drain", start_after_s=0, duration_s=60).duration_s == 60
