"""harness.fleet: a simulated fleet registered with scaled deadlines and extra labels, or
not at all."""

from __future__ import annotations

import pytest
from support import count

from devices.simulator.fleet import build_fleet
from harness.fleet import (
    FleetNotRegistered,
    ModelTiming,
    model_timings,
    register_fleet,
    scaled_deadlines,
)


def test_fleet_registered_at_a_time_scale_gets_scaled_deadlines_with_a_floor(conn):
    fleet = build_fleet(40, seed=2, fault_share=0, id_prefix="h")
    marked = fleet[0].device_id

    report = register_fleet(conn, fleet, time_scale=0.1, at_least_s=30, labels={marked: ["x:y"]})

    assert report.imported == 40
    allowance = {m: t.allowance_s for m, t in model_timings(conn).items()}
    rows = conn.execute("SELECT id, model_id, offline_after_s, labels FROM devices").fetchall()
    assert {(m, after) for _, m, after, _ in rows} == {
        (m, max(30, round(allowance[m] * 0.1))) for _, m, _, _ in rows
    }
    assert {i: labels for i, _, _, labels in rows}[marked] == ["simulated", "x:y"]
    assert count(conn, "SELECT count(*) FROM customers") == len(
        {d.spec.owner.customer_id for d in fleet}
    )


def test_fleet_registered_without_a_time_scale_keeps_its_models_deadlines(conn):
    register_fleet(conn, build_fleet(10, seed=2, fault_share=0, id_prefix="h"))

    assert count(conn, "SELECT count(*) FROM devices WHERE offline_after_s IS NOT NULL") == 0


def test_fleet_the_registry_refuses_is_not_registered_at_all(conn):
    fleet = build_fleet(10, seed=2, fault_share=0, id_prefix="h")

    with pytest.raises(FleetNotRegistered) as refused:
        register_fleet(conn, [*fleet, fleet[3]])

    assert refused.value.errors and fleet[3].device_id in str(refused.value)
    assert count(conn, "SELECT count(*) FROM devices") == 0


# (allowance in seconds, time scale, floor, deadline)
DEADLINE_ROWS = ((240, 0.1, 15, 24), (240, 0.05, 15, 15), (900, 1.0, 60, 900), (125, 0.1, 0, 12))


@pytest.mark.parametrize(("allowance", "time_scale", "floor", "expected"), DEADLINE_ROWS)
def test_scaled_deadline_is_the_allowance_at_the_fleet_pace_with_a_floor(
    allowance, time_scale, floor, expected
):
    models = {"m": ModelTiming(interval_s=allowance - 60, allowed_misses=1, grace_s=60)}

    assert scaled_deadlines(models, time_scale, at_least_s=floor) == {"m": expected}
