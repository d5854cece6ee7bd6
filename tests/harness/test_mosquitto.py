"""harness.mosquitto: a private broker that starts, says why when it cannot, and keeps a
persistent session's queue across a restart on the same port."""

from __future__ import annotations

import threading
import uuid

import paho.mqtt.client as mqtt
import pytest

from harness.mosquitto import MOSQUITTO, Mosquitto

pytestmark = [
    pytest.mark.mosquitto,
    pytest.mark.skipif(MOSQUITTO is None, reason="needs the mosquitto binary (Debian: mosquitto)"),
]


def client(port: int, client_id: str, *, persistent: bool = False) -> mqtt.Client:
    """A connected 3.1.1 client; `persistent`: clean session off, so the broker queues."""
    c = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv311,
        clean_session=not persistent,
    )
    connected = threading.Event()
    c.on_connect = lambda *args: connected.set()
    c.connect("127.0.0.1", port)
    c.loop_start()
    assert connected.wait(5), "no CONNACK"
    return c


def close(c: mqtt.Client) -> None:
    c.disconnect()
    c.loop_stop()


def test_a_persistent_broker_keeps_a_queued_message_across_a_restart_on_the_same_port(tmp_path):
    broker = Mosquitto(tmp_path / "broker", persistence=True).start()
    try:
        keeper_id, topic = f"keeper-{uuid.uuid4().hex[:6]}", "drill/dev-1/heartbeat"
        keeper = client(broker.port, keeper_id, persistent=True)
        subscribed = threading.Event()
        keeper.on_subscribe = lambda *args: subscribed.set()
        keeper.subscribe(topic, qos=1)
        assert subscribed.wait(5), "no SUBACK"
        close(keeper)
        publisher = client(broker.port, "publisher")
        publisher.publish(topic, b"beat-1", qos=1).wait_for_publish(5)
        close(publisher)
        port = broker.port

        broker.stop()
        broker.start()

        assert broker.port == port and broker.starts == 2
        got = threading.Event()
        received: list[bytes] = []
        keeper = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=keeper_id,
            protocol=mqtt.MQTTv311,
            clean_session=False,
        )
        keeper.on_message = lambda c, u, m: (received.append(m.payload), got.set())
        keeper.connect("127.0.0.1", broker.port)
        keeper.loop_start()
        assert got.wait(5), f"the queued message did not survive the restart:\n{broker.log_tail()}"
        close(keeper)
        assert received == [b"beat-1"]
    finally:
        broker.close()


def test_a_config_mosquitto_refuses_fails_the_start_saying_why():
    broker = Mosquitto(extra=["no_such_option 1"])
    try:
        with pytest.raises(RuntimeError, match="no_such_option"):
            broker.start(timeout_s=5)
    finally:
        broker.close()


def test_closing_a_broker_removes_the_directory_it_made():
    with Mosquitto() as broker:
        workdir = broker.dir
        assert broker.pid is not None and workdir.exists()

    assert not workdir.exists()
