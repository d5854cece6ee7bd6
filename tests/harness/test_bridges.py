"""The edge/core topology of the harness (harness/bridges.py) and the drill's plan of it."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from drill.plan import DrillConfig
from drill.run import BRIDGE_RESTART_TIMEOUT
from harness.bridges import BridgedBrokers, bridge_lines
from harness.mosquitto import MOSQUITTO


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


def test_the_drill_bridges_back_off_as_the_deploys_do():
    example = Path(__file__).resolve().parents[2] / "deploy/mosquitto/bridge.conf.example"
    line = next(x for x in example.read_text().splitlines() if x.startswith("restart_timeout "))
    assert tuple(int(v) for v in line.split()[1:]) == BRIDGE_RESTART_TIMEOUT


def test_without_edges_the_drill_has_no_edge_step():
    assert "edge" not in DrillConfig(devices=100, edges=0).steps
    assert "edge" in DrillConfig(devices=100).steps


def _peer(port: int, client_id: str, *, subscribe: str | None = None):
    """A looping MQTT 5 client; with `subscribe`, a persistent session noting payloads."""
    got: list[bytes] = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=5)
    client.on_message = lambda _c, _u, m: got.append(m.payload)
    subscribed = threading.Event()
    client.on_subscribe = lambda *_a: subscribed.set()
    client.on_connect = lambda c, *_a: subscribe and c.subscribe(subscribe, 1)
    client.reconnect_delay_set(0.1, 0.5)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    client.connect("127.0.0.1", port, clean_start=subscribe is None, properties=props)
    client.loop_start()
    if subscribe:
        assert subscribed.wait(10)
    return client, got


# How the edge ends while the core is away -> how many of the 50 heartbeats it acknowledged
# reach the core afterwards. A clean stop saves the bridge's queue; kill -9 loses what came
# since the last autosave (autosave_interval: 60 s in deploy/mosquitto/edge.conf).
EDGE_END_ROWS = (("SIGTERM", 50), ("SIGKILL", 0))


@pytest.mark.mosquitto
@pytest.mark.skipif(MOSQUITTO is None, reason="needs mosquitto")
@pytest.mark.parametrize(("how", "arrive"), EDGE_END_ROWS)
def test_what_an_edge_queued_for_the_core_survives_its_clean_stop_only(tmp_path, how, arrive):
    with BridgedBrokers(tmp_path, edges=1, prefix="p") as brokers:
        ingest, got = _peer(brokers.core.port, "ingest", subscribe="p/+/heartbeat")
        device, _ = _peer(brokers.edges[0].port, "dev-1")
        brokers.core.stop()
        for seq in range(50):
            device.publish("p/dev-1/heartbeat", b"%d" % seq, qos=1).wait_for_publish(5)
        device.disconnect()
        device.loop_stop()
        edge = brokers.edges[0]
        if how == "SIGKILL":
            os.kill(edge.proc.pid, signal.SIGKILL)
            edge.proc.wait()
            edge.proc = None
        else:
            edge.stop()
        edge.start()
        brokers.core.start()
        # The later marker: published on the edge after its restart, it travels the same
        # bridge behind anything the edge still held.
        marker, _ = _peer(edge.port, "dev-2")
        marker.publish("p/dev-2/heartbeat", b"marker", qos=1).wait_for_publish(10)
        deadline = time.monotonic() + 20
        while b"marker" not in got and time.monotonic() < deadline:
            time.sleep(0.05)
        marker.disconnect()
        marker.loop_stop()
        ingest.disconnect()
        ingest.loop_stop()
    assert b"marker" in got
    assert len([p for p in got if p != b"marker"]) == arrive
