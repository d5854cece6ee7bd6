"""A client may connect from a local address of its own (`?source=`): each address has its
own ephemeral ports, and paho binds every socket to one."""

import os

import paho.mqtt.client as mqtt
import pytest

from core.mqtt import connect_client, make_client
from core.settings import MqttTarget


def test_the_source_address_is_read_from_the_url_and_nothing_else_is_accepted():
    target = MqttTarget.from_url("mqtt://dev:pw@127.0.0.1:1883?source=127.0.0.7")
    assert (target.host, target.port, target.source) == ("127.0.0.1", 1883, "127.0.0.7")
    assert MqttTarget.from_url("mqtt://127.0.0.1:1883").source == ""
    with pytest.raises(ValueError, match="unknown parameter"):
        MqttTarget.from_url("mqtt://127.0.0.1:1883?sauce=1")


@pytest.mark.skipif(not os.environ.get("FLEETWATCH_TEST_MQTT_URL"), reason="needs a broker")
def test_a_client_connects_from_its_source_address():
    broker = MqttTarget.from_url(os.environ["FLEETWATCH_TEST_MQTT_URL"])
    if broker.host != "127.0.0.1":
        pytest.skip("the broker is not on this machine's loopback")
    target = broker.model_copy(update={"source": "127.0.0.9"})
    client = make_client(target, "source-test", protocol=mqtt.MQTTv5)
    connect_client(client, target)
    try:
        assert client.socket().getsockname()[0] == "127.0.0.9"
    finally:
        client.disconnect()
