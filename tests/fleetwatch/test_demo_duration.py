"""`fleetwatch demo --duration`: counted from when the whole simulated fleet is connected."""

from fleetwatch.demo import FLEET_UP_WAIT_S, run_out


def test_without_a_duration_the_demo_runs_until_stopped():
    assert not run_out(0, 10_000.0, 1.0)


def test_the_duration_counts_from_when_every_device_has_connected():
    # 30 s asked; the broker took 20 s to accept the fleet: over at 50 s, not at 30.
    assert not run_out(30, 30.0, None)
    assert not run_out(30, 30.0, 20.0)
    assert not run_out(30, 49.0, 20.0)
    assert run_out(30, 50.0, 20.0)


def test_a_fleet_that_never_fully_connects_does_not_keep_the_demo_running():
    assert not run_out(8, FLEET_UP_WAIT_S - 1, None)
    assert not run_out(8, FLEET_UP_WAIT_S + 7, None)
    assert run_out(8, FLEET_UP_WAIT_S + 8, None)
    # Connected at last after the wait: the count had already begun at the wait's end.
    assert run_out(8, FLEET_UP_WAIT_S + 8, FLEET_UP_WAIT_S + 5)
