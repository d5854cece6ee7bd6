"""One simulated device's MQTT connection: its own paho client, birth message and Last Will.

The session is clean (`connect_client` without `persistent`): the cmd subscription is made
again on every connect, and a command published while the device is offline (a flapping
fault, a reboot) is lost: a campaign has to send a new attempt. Acceptable here; persistent
sessions would leave one session per simulated device on the broker after every run.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
from enum import StrEnum

import paho.mqtt.client as mqtt

from contract.messages import OFFLINE, encode_body, status_payload
from contract.topics import command_topic, heartbeat_topic, ota_topic, status_topic
from core.mqtt import connect_client, make_client
from core.settings import MqttTarget
from devices.simulator.device import SimDevice
from devices.simulator.ota import OtaUpdater

# How long the blocking TCP connect may hold up the whole loop (paho's default is 5 s).
CONNECT_TIMEOUT_S = 3.0
# Heartbeats paho may hold for one device while the broker is not acknowledging; beyond
# this a publish fails (and is counted) instead of growing memory without bound.
MAX_QUEUED_PUBLISHES = 32


class LinkState(StrEnum):
    """Where a device's connection is; the runner moves it along."""

    QUEUED = "queued"  # waiting for its turn to connect
    CONNECTING = "connecting"  # CONNECT sent, no CONNACK yet
    CONNECTED = "connected"
    WAITING = "waiting"  # lost; reconnects when its backoff runs out
    DOWN = "down"  # down on purpose (a fault, or the simulator stopping)


class DeviceLink:
    """A device, its client and where its connection stands."""

    __slots__ = (
        "backoff_s",
        "client",
        "closing_since",
        "command_topic",
        "device",
        "ever_connected",
        "heartbeat_topic",
        "ota",
        "ota_steps",
        "ota_topic",
        "state",
        "status_topic",
        "unacked",
        "wake",
        "wanted_down",
    )

    def __init__(self, device: SimDevice, client: mqtt.Client, prefix: str) -> None:
        self.device = device
        self.client = client
        self.heartbeat_topic = heartbeat_topic(prefix, device.device_id)
        self.status_topic = status_topic(prefix, device.device_id)
        self.command_topic = command_topic(prefix, device.device_id)
        self.ota_topic = ota_topic(prefix, device.device_id)
        self.state = LinkState.QUEUED
        self.wanted_down = False  # a fault took the link down; do not reconnect
        self.backoff_s = 0.0
        self.ever_connected = False
        self.unacked = 0  # QoS 1 publishes still waiting for their PUBACK
        self.closing_since: float | None = None  # a clean disconnect waits for those acks
        self.ota: OtaUpdater | None = None  # set by the runner when devices take commands
        self.ota_steps: list = []  # the runner's pending update steps, in time order
        self.wake: tuple[float, int] | None = None  # the runner's one live wake-up (mono, id)


def make_link(
    device: SimDevice,
    target: MqttTarget,
    *,
    prefix: str,
    protocol: str,
    keepalive_s: int,
) -> DeviceLink:
    """A link whose client has its will set and its connect parameters stored (not connected)."""
    device_id = device.device_id
    client = make_client(target, device_id, protocol=protocol, username=device_id)
    link = DeviceLink(device, client, prefix)
    client.user_data_set(link)
    client.will_set(link.status_topic, status_payload(OFFLINE), qos=1, retain=True)
    client.connect_timeout = CONNECT_TIMEOUT_S
    client.max_queued_messages_set(MAX_QUEUED_PUBLISHES)
    # Only stores host, port and session flags; `client.reconnect()` opens the socket.
    connect_client(client, target, keepalive=keepalive_s, asynchronous=True)
    return link


def publish_status(link: DeviceLink, status: str) -> mqtt.MQTTMessageInfo:
    """A retained `online` (birth, after connecting) or `offline` (before a clean stop)."""
    return _publish(link, link.status_topic, status_payload(status), retain=True)


def publish_heartbeat(link: DeviceLink, body: dict) -> mqtt.MQTTMessageInfo:
    """One heartbeat body as compact JSON at QoS 1."""
    return _publish(link, link.heartbeat_topic, encode_body(body))


def publish_ota(link: DeviceLink, body: dict) -> mqtt.MQTTMessageInfo:
    """One update progress message as compact JSON at QoS 1."""
    return _publish(link, link.ota_topic, encode_body(body))


def subscribe_commands(link: DeviceLink) -> None:
    """Subscribe to the device's own cmd topic at QoS 1 (on every connect: clean session)."""
    link.client.subscribe(link.command_topic, qos=1)


def _publish(link: DeviceLink, topic: str, payload: bytes, retain: bool = False):
    info = link.client.publish(topic, payload, qos=1, retain=retain)
    if info.rc == mqtt.MQTT_ERR_SUCCESS:
        link.unacked += 1
    return info


def acked(link: DeviceLink) -> None:
    """A PUBACK came in; a clean disconnect waiting for the last one may now go out."""
    link.unacked = max(0, link.unacked - 1)
    if link.unacked == 0 and link.closing_since is not None:
        disconnect_now(link)


def disconnect_now(link: DeviceLink) -> None:
    """Send DISCONNECT; the broker then discards the will."""
    link.closing_since = None
    link.client.disconnect()


def close_abruptly(link: DeviceLink) -> None:
    """End the TCP stream without DISCONNECT, as a power cut would: the broker sends the will."""
    sock = link.client.socket()
    if sock is None:
        return
    with contextlib.suppress(OSError):  # already gone: the broker saw the end either way
        sock.shutdown(socket.SHUT_RDWR)
    # paho reads the end of stream and closes its side the usual way (on_disconnect).
    link.client.loop_read()


class SocketWatcher:
    """Keeps each client's socket in one selector, watched for writing only when needed."""

    def __init__(self, selector: selectors.BaseSelector) -> None:
        self.selector = selector

    def attach(self, client: mqtt.Client) -> None:
        """Have paho report its socket's life to this watcher."""
        client.on_socket_open = self._opened
        client.on_socket_close = self._closed
        client.on_socket_register_write = self._want_write
        client.on_socket_unregister_write = self._written

    def forget(self, sock) -> None:
        """Stop watching `sock` (closed, or about to be); fine if it was not watched."""
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(sock)

    def _opened(self, client, link: DeviceLink, sock) -> None:
        self.selector.register(sock, selectors.EVENT_READ, link)

    def _closed(self, client, link: DeviceLink, sock) -> None:
        self.forget(sock)

    def _want_write(self, client, link: DeviceLink, sock) -> None:
        self.selector.modify(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, link)

    def _written(self, client, link: DeviceLink, sock) -> None:
        with contextlib.suppress(KeyError, ValueError):  # closing: already unwatched
            self.selector.modify(sock, selectors.EVENT_READ, link)
