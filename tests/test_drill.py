"""The fault drill of issue 6 (bench/drill.py), small: 300 devices for a minute at time scale
0.05, with every fault of the full drill in turn and every one of its checks asserted.

Needs the `mosquitto` binary (the drill restarts its own broker, so it cannot use
FLEETWATCH_TEST_MQTT_URL's) and the PostgreSQL server of the `database_server` fixture, on
which the drill makes its own database and drops it afterwards. The drill runs once for the
module; each check is a test of its own, so a run shows every check that failed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.drill import DrillConfig, print_report, run_drill
from bench.drill_support import MOSQUITTO

pytestmark = [
    pytest.mark.mosquitto,
    pytest.mark.skipif(
        MOSQUITTO is None, reason="needs the mosquitto broker (Debian package: mosquitto)"
    ),
    # The drill itself takes about 90 s; the first test pays for it.
    pytest.mark.timeout(300),
]

SMALL = {
    "devices": 300,
    "minutes": 1.0,
    "time_scale": 0.05,  # a 60 s heartbeat interval is 3 s; deadlines 15-45 s
    "silent": 0.05,
    "simulators": 1,
    "restart_gap_s": 3.0,
}


@pytest.fixture(scope="module")
def drill(database_server) -> dict:
    report = run_drill(DrillConfig(database_server=database_server, **SMALL))
    print_report(report)
    return report


def _assert_check(drill: dict, name: str, what: str) -> None:
    assert drill["checks"][name], f"{what}: {drill['details'][name]} (logs: {drill['logs']})"


def test_every_heartbeat_the_broker_accepted_is_stored_once(drill):
    _assert_check(
        drill,
        "heartbeats_stored_once",
        "heartbeats acknowledged by the broker at QoS 1 went missing or were stored twice",
    )


def test_every_silent_device_gets_exactly_one_offline_incident(drill):
    _assert_check(drill, "silent_devices_one_incident", "a silent device's incidents")


def test_every_silent_device_owner_is_told_exactly_once(drill):
    _assert_check(drill, "silent_owners_one_notification", "a silent device owner's messages")


def test_no_device_that_kept_beating_is_declared_offline(drill):
    _assert_check(drill, "no_beating_device_offline", "beating devices declared offline")


def test_broker_outage_is_a_blind_spot_where_nobody_goes_offline(drill):
    _assert_check(drill, "none_offline_in_blind_spot", "the blind-spot guard")


def test_outbox_ends_empty_with_everything_sent(drill):
    _assert_check(drill, "outbox_empty_all_sent", "the outbox at the end")


def test_every_notification_reaches_the_sink_once(drill):
    _assert_check(drill, "notifications_received_once", "notifications at the sink")


def test_memory_of_each_process_stays_within_20_percent_of_its_warm_up(drill):
    _assert_check(drill, "memory_within_20pct", "process memory")


def test_the_machine_kept_up_with_the_small_drill(drill):
    machine = drill["machine"]
    assert machine["kept_up"], f"simulators fell behind, so nothing above is conclusive: {machine}"
