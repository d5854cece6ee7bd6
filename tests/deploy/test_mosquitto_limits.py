"""The deploy broker's size limit against a real Mosquitto (deploy/mosquitto's config).

`max_packet_size` refuses a packet as its length arrives: an 8 MB message never reaches the
ingest (nor the broker's memory), while a payload a little over the ingest's own limit still
gets through, to be recorded as `oversize` with its first bytes and size.
"""

from __future__ import annotations

import pytest
from deploy_mosquitto import INGEST_1, needs_mosquitto

pytestmark = [pytest.mark.mosquitto, needs_mosquitto]

HUGE = 8 * 1024 * 1024
# Over the ingest's 4 KiB (FLEETWATCH_INGEST_MAX_PAYLOAD_BYTES), under the broker's limit.
OVER_THE_INGEST_LIMIT = 5000


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_an_8_mb_message_never_gets_past_the_broker(connect, protocol):
    ingest = connect(INGEST_1)
    ingest.subscribe("fleet/+/heartbeat")
    device = connect("dev-a", protocol=protocol)

    # The broker reads the packet's length, not the packet, and drops the connection (MQTT 5
    # announced the limit in CONNACK; paho sends it anyway).
    device.client.publish("fleet/dev-a/heartbeat", b"x" * HUGE, qos=1)
    device.wait_for(lambda: device.disconnects, "the oversized packet's sender thrown off")
    device.close()
    again = connect("dev-a", protocol=protocol)
    again.publish("fleet/dev-a/heartbeat", b"y" * OVER_THE_INGEST_LIMIT)
    again.publish("fleet/dev-a/heartbeat", b"marker")

    ingest.wait_for_payload("fleet/dev-a/heartbeat", b"marker")
    sizes = [len(p) for p in ingest.payloads("fleet/dev-a/heartbeat")]
    assert sizes == [OVER_THE_INGEST_LIMIT, len(b"marker")]
