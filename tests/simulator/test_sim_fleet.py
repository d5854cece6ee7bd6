"""build_fleet and registry_rows: deterministic, realistic, valid for the registry."""

from __future__ import annotations

import re
from collections import Counter
from zoneinfo import ZoneInfo

import pytest

from contract.ids import is_device_id
from devices.simulator.fleet import build_fleet, registry_rows
from devices.simulator.identity import REGIONS, vin_check_digit
from devices.simulator.scenarios import SCENARIOS

VIN_RE = re.compile(r"[A-HJ-NPR-Z0-9]{17}")


@pytest.fixture(scope="module")
def fleet():
    return build_fleet(2000, seed=42)


@pytest.fixture(scope="module")
def rows(fleet):
    return registry_rows(fleet)


def test_same_seed_builds_the_same_fleet_and_another_seed_does_not(rows):
    assert registry_rows(build_fleet(2000, seed=42)) == rows
    assert registry_rows(build_fleet(2000, seed=43)) != rows


def test_fleet_is_mostly_home_devices_with_some_cars(fleet):
    kinds = Counter(d.spec.profile.kind for d in fleet)
    assert kinds["home"] > 0.7 * len(fleet)
    assert kinds["vehicle"] > 0.05 * len(fleet)
    models = {d.spec.profile.model_id for d in fleet}
    assert models == {
        "thermostat-v2",
        "alarm-panel-v3",
        "camera-v1",
        "ev-charger-v1",
        "car-telematics-v1",
    }


def test_fault_share_of_devices_get_faults_covering_every_scenario(fleet):
    faulty = [d for d in fleet if d.spec.fault is not None]
    assert len(faulty) == 40
    assert {d.spec.fault.name for d in faulty} == set(SCENARIOS)
    for device in faulty:
        low, high = device.spec.fault.scenario.start_after_s
        assert low <= device.spec.fault.start_after_s <= high


def test_faults_only_go_to_devices_that_can_show_them():
    fleet = build_fleet(500, seed=1, fault_share=0.5, scenarios=["battery_drain"])
    faulty = [d for d in fleet if d.spec.fault is not None]
    assert len(faulty) == 250
    assert all(d.spec.profile.battery is not None for d in faulty)


def test_no_fault_share_means_no_faults():
    assert all(d.spec.fault is None for d in build_fleet(200, seed=1, fault_share=0))


def test_registry_rows_have_valid_unique_ids_serials_and_vins(rows):
    ids = [r["id"] for r in rows]
    assert all(is_device_id(i) for i in ids)
    assert len(set(ids)) == len(ids)
    serials = [(r["model_id"], r["serial"]) for r in rows]
    assert len(set(serials)) == len(serials)
    cars = [r for r in rows if r["model_id"] == "car-telematics-v1"]
    assert cars
    assert all(VIN_RE.fullmatch(r["vin"]) for r in cars)
    assert all(r["vin"][8] == vin_check_digit(r["vin"]) for r in cars)
    assert len({r["vin"] for r in cars}) == len(cars)
    assert all(r["vin"] is None for r in rows if r["model_id"] != "car-telematics-v1")


def test_registry_rows_have_realistic_owners(rows):
    per_customer = Counter(r["customer_id"] for r in rows)
    assert all(re.fullmatch(r"cust-\d{5}", c) for c in per_customer)
    assert len(rows) / len(per_customer) > 2  # households, not one device per customer
    regions = {name: zones for name, _, zones in REGIONS}
    for row in rows:
        ZoneInfo(row["timezone"])  # raises if not an IANA name
        assert row["timezone"] in regions[row["region"]]
    names = {}
    for row in rows:
        assert names.setdefault(row["customer_id"], row["customer_name"]) == row["customer_name"]


def test_registry_rows_label_simulated_devices_and_their_faults(fleet, rows):
    for device, row in zip(fleet, rows, strict=True):
        assert "simulated" in row["labels"]
        if device.spec.fault:
            assert f"fault:{device.spec.fault.name}" in row["labels"]


def test_registry_accepts_the_rows(rows):
    from devices.registry import validate_rows

    valid, errors = validate_rows(rows)
    assert errors == []
    assert len(valid) == len(rows)


def test_two_fleets_with_different_prefixes_do_not_share_serials_or_vins():
    one = registry_rows(build_fleet(300, seed=5, id_prefix="a"))
    two = registry_rows(build_fleet(300, seed=5, id_prefix="b"))
    assert not {r["serial"] for r in one} & {r["serial"] for r in two}
    assert not {r["vin"] for r in one if r["vin"]} & {r["vin"] for r in two if r["vin"]}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"id_prefix": "bad/prefix"}, "id prefix"),
        ({"id_prefix": "x" * 60}, "id prefix"),
        ({"scenarios": ["nope"]}, "unknown scenarios"),
        ({"fault_share": 1.5}, "fault_share"),
    ],
)
def test_build_fleet_refuses_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_fleet(10, seed=1, **kwargs)
