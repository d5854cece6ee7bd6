"""The topics: a device's own four under `{prefix}/{device_id}/`, and the service's own.

    {prefix}/{device_id}/heartbeat   device to service   QoS 1
    {prefix}/{device_id}/status      device to service   QoS 1, retained: online | offline
    {prefix}/{device_id}/ota         device to service   QoS 1: update progress
    {prefix}/{device_id}/cmd         service to device   QoS 1: commands
    {prefix}-service/{client_id}/status   an ingest's own birth and Last Will
    {prefix}-service/{client_id}/tick     the ticks an ingest sends itself (its watermark)

Builders do not check the device id: ids come from the registry, which does.
"""

from __future__ import annotations

from dataclasses import dataclass

from contract.ids import DEVICE_ID_RE, DEVICE_ID_RULE

HEARTBEAT = "heartbeat"
STATUS = "status"
OTA = "ota"
CMD = "cmd"
# What devices publish, and the ingest subscribes to.
FROM_DEVICES = (HEARTBEAT, STATUS, OTA)
# The single-level wildcard in place of a device id: every device's topic of a kind.
ANY_DEVICE = "+"


def device_topic(prefix: str, device_id: str, kind: str) -> str:
    """`{prefix}/{device_id}/{kind}`."""
    return f"{prefix}/{device_id}/{kind}"


def heartbeat_topic(prefix: str, device_id: str) -> str:
    return device_topic(prefix, device_id, HEARTBEAT)


def status_topic(prefix: str, device_id: str) -> str:
    return device_topic(prefix, device_id, STATUS)


def ota_topic(prefix: str, device_id: str) -> str:
    return device_topic(prefix, device_id, OTA)


def command_topic(prefix: str, device_id: str) -> str:
    return device_topic(prefix, device_id, CMD)


def every_device(prefix: str, kind: str) -> str:
    """The subscription to one kind of topic of every device: `{prefix}/+/{kind}`."""
    return device_topic(prefix, ANY_DEVICE, kind)


def ingest_subscriptions(prefix: str, shared_group: str = "") -> list[str]:
    """What an ingest subscribes to: heartbeats, status and update reports of every device,
    through `$share/{group}/` when the ingests of a group split the load."""
    topics = [every_device(prefix, kind) for kind in FROM_DEVICES]
    if shared_group:
        topics = [f"$share/{shared_group}/{topic}" for topic in topics]
    return topics


def service_status_topic(prefix: str, client_id: str) -> str:
    """Where an ingest publishes its retained `online`, and its Last Will `offline`."""
    return f"{prefix}-service/{client_id}/status"


def bridge_state_topic(prefix: str, bridge_login: str) -> str:
    """Where an edge's bridge says on the core whether it is connected: `1` when it
    connects, `0` when its edge goes away (its Last Will on the core, or sent on the way
    down). Its `notification_topic` (deploy/mosquitto/bridge.conf.example)."""
    return f"{prefix}-service/{bridge_login}/bridge"


def bridge_states(prefix: str) -> str:
    """The subscription to every bridge's state."""
    return bridge_state_topic(prefix, ANY_DEVICE)


def service_tick_topic(prefix: str, client_id: str) -> str:
    """Where an ingest sends itself ticks through its own session."""
    return f"{prefix}-service/{client_id}/tick"


@dataclass(frozen=True, slots=True)
class DeviceTopic:
    """A topic under a device: whose, and which kind (not checked: any last level)."""

    device_id: str
    kind: str


@dataclass(frozen=True, slots=True)
class BadTopic:
    """Why a topic is not a device's: `reason` is the rejection's, `detail` says more."""

    reason: str  # bad_topic | bad_device_id
    detail: str


def parse_topic(topic: str, prefix: str) -> DeviceTopic | BadTopic:
    """Split `{prefix}/{device_id}/{kind}`; the kind is left to the caller to judge."""
    parts = topic.split("/")
    if len(parts) != 3 or parts[0] != prefix:
        return BadTopic("bad_topic", f"expected {prefix}/<device_id>/<kind>")
    _, device_id, kind = parts
    if not DEVICE_ID_RE.fullmatch(device_id):
        return BadTopic("bad_device_id", f"device id must be {DEVICE_ID_RULE}")
    return DeviceTopic(device_id, kind)
