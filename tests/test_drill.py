"""The fault drill (drill/, `python -m drill`), small: 300 devices over two edge brokers
bridged to a core, for 75 s at time scale 0.05, with every fault of the full drill in turn
(the core's restart and an edge's among them) and every one of its checks asserted.

Needs the `mosquitto` binary (the drill restarts its own broker, so it cannot use
FLEETWATCH_TEST_MQTT_URL's) and the PostgreSQL server of the `database_server` fixture, on
which the drill makes its own database and drops it afterwards. The drill runs once for the
module; each check is a test of its own, so a run shows every check that failed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The drill is not installed with Fleetwatch: it is found in the checkout.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from drill.plan import DrillConfig
from drill.run import print_report, run_drill
from harness.mosquitto import MOSQUITTO

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
    "minutes": 1.25,  # eight steps; the core restart alone takes ~9 s
    "time_scale": 0.05,  # a 60 s heartbeat interval is 3 s; deadlines 15-45 s
    "silent": 0.05,
    "simulators": 2,  # one per edge
    "edges": 2,
    "restart_gap_s": 3.0,
}


@pytest.fixture(scope="module")
def drill(database_server) -> dict:
    report = run_drill(DrillConfig(database_server=database_server, **SMALL))
    print_report(report)
    return report


# Each check of the drill, and what a failure of it means; one test each, so a run shows
# every check that failed.
CHECKS = {
    "heartbeats_stored_once": "heartbeats acknowledged by the broker at QoS 1 went missing "
    "or were stored twice",
    "silent_devices_one_incident": "a silent device's incidents",
    "silent_owners_one_notification": "a silent device owner's messages",
    "no_beating_device_offline": "beating devices declared offline",
    "no_site_incident": "site correlation (a broker restart is not a home offline)",
    "none_offline_in_blind_spot": "the blind-spot guard",
    "outbox_empty_all_sent": "the outbox at the end",
    "notifications_received_once": "notifications at the sink",
    "memory_within_20pct": "process memory",
}


@pytest.mark.parametrize(("name", "what"), CHECKS.items(), ids=list(CHECKS))
def test_drill_check_passes(drill, name, what):
    assert drill["checks"][name], f"{what}: {drill['details'][name]} (logs: {drill['logs']})"


def test_the_small_drill_ran_through_two_edges_and_restarted_one(drill):
    topology = drill["topology"]
    assert topology["edges"] == 2 and topology["devices_per_edge"] == [150, 150], topology
    restart = topology["edge_restart"]
    # Its devices wait for it (each knows one address) and are all back within a minute.
    assert restart["all_reconnected_s"] is not None, restart


def test_the_machine_kept_up_with_the_small_drill(drill):
    machine = drill["machine"]
    assert machine["kept_up"], f"simulators fell behind, so nothing above is conclusive: {machine}"


def test_the_drill_reports_the_machines_memory_while_it_ran(drill):
    machine = drill["machine"]
    used = machine["memory_used_mb"]
    assert 0 < used["first"] <= used["peak"] < machine["memory_total_mb"], machine
    assert used["first"] <= used["peak"] and used["p50"] <= used["peak"], machine
