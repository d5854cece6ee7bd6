"""The Simulator against a real broker: heartbeats, birth messages, wills, restarts.

Needs an MQTT broker at FLEETWATCH_TEST_MQTT_URL (default mqtt://127.0.0.1:1883; skipped
when nothing listens there). The restart test starts a Mosquitto of its own and needs the
`mosquitto` binary.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import replace
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
import pytest
from support import wait_until

from contract.messages import OFFLINE, ONLINE, Heartbeat, parse_message, status_payload
from contract.topics import HEARTBEAT, STATUS, DeviceTopic, every_device, parse_topic, status_topic
from core.settings import MqttTarget
from devices.simulator import pacing, runner
from devices.simulator.device import SimDevice
from devices.simulator.fleet import build_fleet
from devices.simulator.runner import Simulator
from devices.simulator.scenarios import make_fault
from harness.mosquitto import MOSQUITTO, Mosquitto

# A 60 s heartbeat interval becomes 0.6 s, a car's 300 s becomes 3 s.
TIME_SCALE = 0.01
# What a status topic carries: `online` (birth), `offline` (Last Will, or a clean stop).
ONLINE_BYTES, OFFLINE_BYTES = status_payload(ONLINE), status_payload(OFFLINE)


class Listener:
    """A plain paho subscriber that records (topic, payload, retained) of what it gets."""

    def __init__(self, target: MqttTarget, topic: str, protocol: str = "5") -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        subscribed = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"listen-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5 if protocol == "5" else mqtt.MQTTv311,
        )
        self.client.username_pw_set("tester", target.password)
        self.client.on_message = self._record
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.connect(target.host, target.port)
        self.client.subscribe(topic, qos=1)
        self.client.loop_start()
        assert subscribed.wait(5), "no SUBACK"

    def _record(self, client, userdata, message) -> None:
        with self._lock:
            self.messages.append((message.topic, message.payload, message.retain))

    def on(self, topic: str) -> list[tuple[bytes, bool]]:
        with self._lock:
            return [(payload, retained) for t, payload, retained in self.messages if t == topic]

    def heartbeats(self) -> dict[str, list[Heartbeat]]:
        """Heartbeats by device id, in arrival order, as the ingest's parser reads them."""
        found: dict[str, list[Heartbeat]] = {}
        with self._lock:
            for topic, payload, _ in self.messages:
                prefix = topic.split("/", 1)[0]
                where = parse_topic(topic, prefix)
                if isinstance(where, DeviceTopic) and where.kind == HEARTBEAT:
                    record = parse_message(
                        topic, payload, prefix=prefix, received_at=datetime.now(UTC)
                    )
                    found.setdefault(where.device_id, []).append(record)
        return found

    def wait_for_marker(self, topic: str) -> None:
        """Publish to `topic`, under this listener's subscription, and wait until it is back.

        The broker sends a subscription's retained messages before anything published after
        its SUBACK, so once the marker is back every retained message is in.
        """
        self.client.publish(topic, b"marker", qos=1)
        wait_until(lambda: self.on(topic), timeout=5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def target(broker) -> MqttTarget:
    """The test broker (tests/conftest.py): the configured one, else the embedded one."""
    return broker[0]


@pytest.fixture
def protocol(broker) -> str:
    return broker[1]


@pytest.fixture
def topic_prefix(target, protocol):
    """A prefix of this test's own; retained statuses under it are cleared afterwards."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    yield prefix
    seen = Listener(target, every_device(prefix, STATUS), protocol)
    marker = status_topic(prefix, f"marker-{uuid.uuid4().hex[:8]}")
    seen.wait_for_marker(marker)
    cleaner = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        protocol=mqtt.MQTTv5 if protocol == "5" else mqtt.MQTTv311,
    )
    cleaner.username_pw_set("tester", target.password)
    cleaner.connect(target.host, target.port)
    cleaner.loop_start()
    for topic in {t for t, _, _ in seen.messages} - {marker}:
        cleaner.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)
    cleaner.disconnect()
    cleaner.loop_stop()
    seen.close()


def small_fleet(n: int, **faults: tuple[int, float]) -> list[SimDevice]:
    """n fault-free devices with ids of their own, none of which sleeps; `faults` maps
    scenario to (index, start). (A parked car announces hours of sleep: at TIME_SCALE that
    is minutes, longer than any wait here. Which models the n are varies with the id
    prefix, and whether a car is parked with the time of day: the tests failed at night.)"""
    fleet = [
        SimDevice(replace(d.spec, profile=replace(d.spec.profile, sleeps_when_idle=False)))
        for d in build_fleet(n, seed=11, fault_share=0, id_prefix=f"d{uuid.uuid4().hex[:8]}")
    ]
    for name, (index, start_after_s) in faults.items():
        fault = make_fault(name, start_after_s=start_after_s)
        fleet[index] = SimDevice(replace(fleet[index].spec, fault=fault))
    return fleet


def retained_statuses(
    target: MqttTarget, prefix: str, count: int, protocol: str
) -> dict[str, bytes]:
    """What a newcomer sees retained on every status topic under prefix."""
    listener = Listener(target, every_device(prefix, STATUS), protocol)
    try:
        wait_until(lambda: len(listener.messages) >= count, timeout=5)
        assert all(retained for _, _, retained in listener.messages)
        return {parse_topic(t, prefix).device_id: payload for t, payload, _ in listener.messages}
    finally:
        listener.close()


def test_heartbeats_births_and_wills_reach_the_broker(target, topic_prefix, protocol):
    # power_loss after 1 s, drop_no_will after 0.5 s (device seconds x TIME_SCALE).
    fleet = small_fleet(20, power_loss=(0, 100), drop_no_will=(1, 50))
    power_lost, dropped = fleet[0].device_id, fleet[1].device_id
    healthy = {d.device_id for d in fleet[2:]}
    live = Listener(target, f"{topic_prefix}/#", protocol)
    sim = Simulator(
        target, prefix=topic_prefix, fleet=fleet, protocol=protocol, time_scale=TIME_SCALE
    )
    sim.start()
    try:
        wait_until(lambda: healthy <= set(live.heartbeats()), timeout=8)
        wait_until(
            lambda: (OFFLINE_BYTES, False) in live.on(status_topic(topic_prefix, power_lost))
        )
        retained = retained_statuses(target, topic_prefix, len(fleet), protocol)
        stats = sim.stats()
    finally:
        sim.stop()
        live.close()

    for device_id, beats in live.heartbeats().items():
        assert device_id in healthy | {dropped, power_lost}
        # Every heartbeat is one the ingest accepts, timed by the device, with all its fields.
        assert all(isinstance(beat, Heartbeat) for beat in beats), beats
        seqs = [beat.seq for beat in beats]
        assert seqs == sorted(seqs)
        assert len(set(seqs)) == len(seqs)
        for beat in beats:
            assert not beat.ts_from_receipt
            assert beat.fw is not None and beat.uptime_s is not None
            assert "rssi_dbm" in json.loads(beat.metrics_json)
    assert (ONLINE_BYTES, False) in live.on(status_topic(topic_prefix, dropped))
    assert OFFLINE_BYTES not in [p for p, _ in live.on(status_topic(topic_prefix, dropped))]
    assert retained[power_lost] == OFFLINE_BYTES
    assert retained[dropped] == ONLINE_BYTES  # a clean DISCONNECT discards the will
    assert {retained[device_id] for device_id in healthy} == {ONLINE_BYTES}
    assert stats.connected == len(healthy)
    assert stats.fault_disconnects == 2
    assert stats.heartbeats_sent >= len(healthy)
    assert (stats.errors, stats.publish_failures, stats.connections_lost) == (0, 0, 0)


def test_stopping_leaves_a_retained_offline_for_each_connected_device(
    target, topic_prefix, protocol
):
    fleet = small_fleet(5, drop_no_will=(0, 0))
    sim = Simulator(
        target, prefix=topic_prefix, fleet=fleet, protocol=protocol, time_scale=TIME_SCALE
    )
    live = Listener(target, every_device(topic_prefix, STATUS), protocol)
    sim.start()
    wait_until(lambda: sim.stats().all_connected_s is not None and sim.stats().connected == 4)
    sim.stop()
    # Some brokers (amqtt) finish handling the last publishes after the sockets closed.
    wait_until(lambda: [p for _, p, _ in live.messages].count(OFFLINE_BYTES) == 4, timeout=5)
    live.close()

    assert sim.stats().running is False
    retained = retained_statuses(target, topic_prefix, len(fleet), protocol)
    assert retained.pop(fleet[0].device_id) == ONLINE_BYTES
    assert set(retained.values()) == {OFFLINE_BYTES}


def test_one_device_failing_does_not_stop_the_others(target, topic_prefix, protocol, monkeypatch):
    fleet = small_fleet(5)
    victim = fleet[0].device_id
    real_make_link = runner.make_link

    def make_link(device, *args, **kwargs):
        link = real_make_link(device, *args, **kwargs)
        if device.device_id == victim:
            real_read, failures = link.client.loop_read, iter([RuntimeError("boom")])

            def loop_read(*args, **kwargs):
                error = next(failures, None)
                if error is not None:
                    raise error  # once, on the CONNACK
                return real_read(*args, **kwargs)

            link.client.loop_read = loop_read
        return link

    monkeypatch.setattr(runner, "make_link", make_link)
    monkeypatch.setattr(pacing, "RECONNECT_MIN_S", 0.05)
    live = Listener(target, every_device(topic_prefix, HEARTBEAT), protocol)
    sim = Simulator(
        target, prefix=topic_prefix, fleet=fleet, protocol=protocol, time_scale=TIME_SCALE
    )
    sim.start()
    try:
        wait_until(lambda: len(live.heartbeats()) == 5, timeout=8)
        stats = sim.stats()
    finally:
        sim.stop()
        live.close()

    assert stats.errors == 1  # the victim's socket was dropped; it reconnected and beats
    assert victim in live.heartbeats()
    assert stats.connected == 5
    assert sim.failure is None


@pytest.mark.mosquitto
@pytest.mark.skipif(MOSQUITTO is None, reason="needs the mosquitto binary")
def test_simulator_reconnects_after_a_broker_restart(monkeypatch):
    monkeypatch.setattr(pacing, "RECONNECT_MIN_S", 0.05)
    broker = Mosquitto().start()
    target = MqttTarget(host="127.0.0.1", port=broker.port)
    sim = Simulator(target, prefix="fleet", fleet=small_fleet(5), time_scale=TIME_SCALE)
    try:
        sim.start()
        wait_until(lambda: sim.stats().connected == 5 and sim.stats().heartbeats_sent >= 5)
        broker.stop()
        wait_until(lambda: sim.stats().connected == 0, timeout=5)
        broker.start()  # on the same port
        live = Listener(target, every_device("fleet", HEARTBEAT))
        wait_until(lambda: sim.stats().connected == 5, timeout=8)
        # A loaded machine is slow to reconnect and beat: wait for it, the test still fails
        # if any device never beats again.
        wait_until(lambda: len(live.heartbeats()) == 5, timeout=15)
        live.close()
        stats = sim.stats()
    finally:
        sim.stop()
        broker.close()

    assert stats.connects == 10
    assert stats.connections_lost == 5
    assert stats.errors == 0
    assert sim.failure is None
