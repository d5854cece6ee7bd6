"""Topic builders and the topic parser: pure, no broker."""

from __future__ import annotations

import pytest

from contract.topics import (
    CMD,
    HEARTBEAT,
    OTA,
    STATUS,
    BadTopic,
    DeviceTopic,
    command_topic,
    device_topic,
    every_device,
    heartbeat_topic,
    ingest_subscriptions,
    ota_topic,
    parse_topic,
    service_status_topic,
    service_tick_topic,
    status_topic,
)

# (built, expected): each topic of the contract, as README's table writes it.
BUILT = [
    (heartbeat_topic("fleet", "dev-1"), "fleet/dev-1/heartbeat"),
    (status_topic("fleet", "dev-1"), "fleet/dev-1/status"),
    (ota_topic("fleet", "dev-1"), "fleet/dev-1/ota"),
    (command_topic("fleet", "dev-1"), "fleet/dev-1/cmd"),
    (every_device("fleet", CMD), "fleet/+/cmd"),
    (service_status_topic("fleet", "ingest-1"), "fleet-service/ingest-1/status"),
    (service_tick_topic("fleet", "ingest-1"), "fleet-service/ingest-1/tick"),
]


@pytest.mark.parametrize(("built", "expected"), BUILT)
def test_builders_make_the_contract_topics(built, expected):
    assert built == expected


def test_the_ingest_subscribes_to_what_devices_publish_shared_only_in_a_group():
    assert ingest_subscriptions("fleet") == ["fleet/+/heartbeat", "fleet/+/status", "fleet/+/ota"]
    assert ingest_subscriptions("fleet", "g1") == [
        "$share/g1/fleet/+/heartbeat",
        "$share/g1/fleet/+/status",
        "$share/g1/fleet/+/ota",
    ]


@pytest.mark.parametrize("kind", [HEARTBEAT, STATUS, OTA, CMD])
def test_a_built_device_topic_parses_back(kind):
    device_id = "Dev_1.a-B"
    assert parse_topic(device_topic("fleet", device_id, kind), "fleet") == DeviceTopic(
        device_id, kind
    )


# (topic, expected reason): what is not a device's topic under the prefix `fleet`.
NOT_DEVICE_TOPICS = [
    ("fleet/dev-1/heartbeat/extra", "bad_topic"),
    ("fleet/dev-1", "bad_topic"),
    ("other/dev-1/heartbeat", "bad_topic"),
    ("fleet-service/ingest-1/tick", "bad_topic"),
    ("$share/g1/fleet/dev-1/heartbeat", "bad_topic"),
    ("fleet/bad id!/heartbeat", "bad_device_id"),
    ("fleet/+/heartbeat", "bad_device_id"),
    ("fleet//heartbeat", "bad_device_id"),
    ("fleet/" + "d" * 65 + "/heartbeat", "bad_device_id"),
    ("fleet/dev-1\n/heartbeat", "bad_device_id"),
]


@pytest.mark.parametrize(("topic", "reason"), NOT_DEVICE_TOPICS)
def test_anything_else_is_a_bad_topic_saying_why(topic, reason):
    parsed = parse_topic(topic, "fleet")
    assert isinstance(parsed, BadTopic)
    assert parsed.reason == reason and parsed.detail


def test_the_kind_is_left_to_the_caller():
    assert parse_topic("fleet/dev-1/telemetry", "fleet") == DeviceTopic("dev-1", "telemetry")
