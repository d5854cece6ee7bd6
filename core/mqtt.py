"""Making paho-mqtt clients the same way everywhere (ingest, simulator, benchmarks)."""

from __future__ import annotations

import ssl
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from core.settings import MqttTarget

# The largest Receive Maximum MQTT 5 allows: the broker may then keep this many QoS 1
# messages unacknowledged towards us, which is what lets acks wait for the commit. The
# ingest asks for less (FLEETWATCH_INGEST_RECEIVE_MAXIMUM): it holds them in memory.
RECEIVE_MAXIMUM = 65535
# A persistent session outlives an ingest restart by this much (seconds).
SESSION_EXPIRY_S = 7 * 24 * 3600


def make_client(
    target: MqttTarget,
    client_id: str,
    *,
    protocol: str = "5",
    persistent: bool = False,
    manual_ack: bool = False,
    username: str | None = None,
) -> mqtt.Client:
    """A paho client for `target`; call `connect_client` to connect it."""
    version = mqtt.MQTTv5 if protocol == "5" else mqtt.MQTTv311
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=version,
        clean_session=None if version == mqtt.MQTTv5 else not persistent,
        manual_ack=manual_ack,
    )
    user = username or target.username
    if user:
        client.username_pw_set(user, target.password)
    if target.tls:
        client.tls_set(cert_reqs=ssl.CERT_REQUIRED)
    return client


def connect_properties(
    client: mqtt.Client, *, persistent: bool, receive_maximum: int = RECEIVE_MAXIMUM
) -> Properties | None:
    """CONNECT properties for MQTT 5: session expiry for persistence, a large Receive Maximum."""
    if client.protocol != mqtt.MQTTv5:
        return None
    props = Properties(PacketTypes.CONNECT)
    props.ReceiveMaximum = receive_maximum
    if persistent:
        props.SessionExpiryInterval = SESSION_EXPIRY_S
    return props


def connect_client(
    client: mqtt.Client,
    target: MqttTarget,
    *,
    persistent: bool = False,
    keepalive: int = 30,
    asynchronous: bool = False,
    receive_maximum: int = RECEIVE_MAXIMUM,
) -> None:
    """Connect with the session flags for the protocol version (pass `persistent` as made)."""
    kwargs = {}
    if client.protocol == mqtt.MQTTv5:
        kwargs["clean_start"] = not persistent
        kwargs["properties"] = connect_properties(
            client, persistent=persistent, receive_maximum=receive_maximum
        )
    connect = client.connect_async if asynchronous else client.connect
    if target.source:
        kwargs["bind_address"] = target.source
    connect(target.host, target.port, keepalive=keepalive, **kwargs)


def end_session(client: mqtt.Client, target: MqttTarget, client_id: str) -> None:
    """Disconnect a connected, looping client and have the broker drop its session and queue."""
    props = None
    if client.protocol == mqtt.MQTTv5:
        props = Properties(PacketTypes.DISCONNECT)
        props.SessionExpiryInterval = 0
    try:
        client.disconnect(properties=props)
    finally:
        client.loop_stop()
    if client.protocol == mqtt.MQTTv5:
        return
    # 3.1.1 has no session expiry: a clean connect with the same id discards it (after a
    # pause: amqtt keeps a session whose last client is still leaving).
    time.sleep(0.5)
    clean = make_client(target, client_id, protocol="3.1.1")
    connect_client(clean, target)
    clean.loop_start()
    deadline = time.monotonic() + 10
    while not clean.is_connected() and time.monotonic() < deadline:
        time.sleep(0.05)
    clean.disconnect()
    clean.loop_stop()


def subscribe_options(client: mqtt.Client, qos: int = 1, *, retain_as_published: bool = False):
    """QoS 1; on MQTT 5, retained messages only for a subscription the session did not hold
    already: a persistent session resubscribing after a reconnect is not sent every
    device's retained status again (100,000 of them at a fleet of that size).

    `retain_as_published` (MQTT 5) keeps the retain flag a message was published with. A
    Mosquitto bridge publishes every retained message of its topics again each time it
    connects to the core (an edge or core restart); without the flag they would reach the
    ingest as live news."""
    if client.protocol != mqtt.MQTTv5:
        return qos
    return SubscribeOptions(
        qos=qos,
        retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB,
        retainAsPublished=retain_as_published,
    )
