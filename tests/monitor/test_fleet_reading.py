"""The fleet correlation's counts read beside the tick, plus the tick's own incidents."""

from monitor.fleet import FleetReading


def test_the_tick_adds_its_own_offline_devices_to_the_window_by_group_attributes():
    reading = FleetReading(
        recent=[("cam", "1.0", "eu", 7)],
        attributes={
            "a": ("cam", "1.0", "eu"),
            "b": ("cam", "1.0", "eu"),
            "c": ("thermo", None, "us"),
        },
    )
    rows = reading.with_tick(["a", "b", "c"])
    assert sorted(rows) == [
        ("cam", "1.0", "eu", 2),
        ("cam", "1.0", "eu", 7),
        ("thermo", None, "us", 1),
    ]
    # A device the reading did not cover (another monitor's) adds nothing; none: the window.
    assert reading.with_tick(["zzz"]) == [("cam", "1.0", "eu", 7)]
