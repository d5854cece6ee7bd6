"""The edge/core topology of the harness (harness/bridges.py) and the drill's plan of it."""

from __future__ import annotations

import pytest

from drill.plan import DrillConfig
from harness.bridges import bridge_lines


def test_bridge_sends_device_topics_out_and_commands_in_at_qos_1_on_a_persistent_session():
    lines = bridge_lines("edge-1", "127.0.0.1:1883", "fleet", username="fleetwatch-bridge-edge-1")
    assert lines[:2] == ["connection edge-1", "address 127.0.0.1:1883"]
    topics = [line for line in lines if line.startswith("topic ")]
    assert topics == [
        "topic fleet/+/heartbeat out 1",
        "topic fleet/+/status out 1",
        "topic fleet/+/ota out 1",
        "topic fleet/+/cmd in 1",
    ]
    for setting in ("cleansession false", "local_cleansession false", "remote_username "):
        assert any(line.startswith(setting) for line in lines), setting
    # The core names the session after the login: the bridge asks for that name.
    assert "remote_clientid fleetwatch-bridge-edge-1" in lines


# (devices, edges asked for, simulators asked for) -> (edges, simulators, edge of each)
PLAN_ROWS = (
    ((300, 2, 1), (2, 2, [0, 1])),  # one simulator per edge at least
    # 19,000 a broker at most, and as many simulators on each edge
    ((100_000, None, 0), (6, 12, [0, 1, 2, 3, 4, 5] * 2)),
    ((1_000, 2, 3), (2, 4, [0, 1, 0, 1])),
    ((1_000, None, 0), (2, 2, [0, 1])),  # at least two edges unless told
    ((1_000, 0, 0), (0, 1, None)),  # one broker, no bridges
)


@pytest.mark.parametrize(("given", "expected"), PLAN_ROWS)
def test_drill_deals_simulators_over_edges(given, expected):
    devices, edges, simulators = given
    config = DrillConfig(devices=devices, edges=edges, simulators=simulators)
    assert (config.edge_count, config.simulator_count) == expected[:2]
    if expected[2] is not None:
        assert [config.edge_of(i) for i in range(config.simulator_count)] == expected[2]


def test_without_edges_the_drill_has_no_edge_step():
    assert "edge" not in DrillConfig(devices=100, edges=0).steps
    assert "edge" in DrillConfig(devices=100).steps
