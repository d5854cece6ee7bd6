"""Simulated homes (devices/simulator/homes.py): sites of 2-6 devices, hubs, home faults."""

import pytest

from devices.registry import import_devices
from devices.simulator.homes import build_homes, home_rows

FAULTS = ["router_dies", "hub_dies", "single", None] * 3


def test_homes_are_the_same_for_the_same_arguments_and_their_faults_take_the_right_devices():
    homes = build_homes(FAULTS, seed=3, fault_after_s=600)
    again = build_homes(FAULTS, seed=3, fault_after_s=600)
    assert [d.spec for h in homes for d in h.devices] == [d.spec for h in again for d in h.devices]
    for home in homes:
        ids = [d.spec.device_id for d in home.devices]
        own = len(ids) - (home.hub is not None)
        assert 2 <= own <= 6
        faulty = {d.spec.device_id for d in home.devices if d.spec.fault is not None}
        assert faulty == set(home.down)
        assert all(d.spec.fault.start_after_s == 600 for d in home.devices if d.spec.fault)
        if home.fault == "router_dies":
            assert set(home.down) == set(ids)
        elif home.fault == "hub_dies":
            assert home.hub and home.behind and set(home.down) == {home.hub, *home.behind}
        elif home.fault == "single":
            assert len(home.down) == 1
        else:
            assert home.down == ()


def test_unknown_home_faults_are_refused():
    with pytest.raises(ValueError, match="unknown home faults"):
        build_homes(["flood"], seed=1, fault_after_s=1)


def test_home_rows_import_with_their_sites_and_hubs(conn):
    homes = build_homes(FAULTS, seed=3, fault_after_s=600)
    report = import_devices(conn, home_rows(homes))
    assert report.ok, report.errors
    assert conn.execute("SELECT count(*) FROM sites").fetchone()[0] == len(homes)
    behind = sum(len(h.behind) for h in homes)
    assert (
        conn.execute(
            "SELECT count(*) FROM devices d JOIN devices p ON p.id = d.parent_id "
            "WHERE p.model_id = 'hub-v1' AND p.site_id = d.site_id"
        ).fetchone()[0]
        == behind
    )
