"""The ingest's broker contract (tests/broker_matrix.py) on NATS's MQTT support, on a server
of its own with JetStream."""

from __future__ import annotations

import pytest
from broker_matrix import (  # noqa: F401 - pytest collects the tests and fixtures imported
    broker_fixture,
    ingests,
    peers,
    settings,
    test_a_batch_committed_but_not_acknowledged_is_stored_once,
    test_heartbeats_sent_while_the_ingest_is_down_arrive_once,
    test_nothing_is_acknowledged_before_its_commit,
    test_what_the_broker_grants_a_qos2_subscription,
    test_what_the_broker_keeps_across_its_own_restart,
)

pytestmark = [pytest.mark.timeout(120)]

broker = broker_fixture("nats")
