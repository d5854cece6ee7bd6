"""The ingest behind an edge broker bridged to a core (harness/bridges.py, as deploy/).

A Mosquitto bridge publishes every retained message of its topics to the core again each
time it connects (after an edge or a core restart): each device's retained status. Those
are not news, and at 100,000 devices they were 100,000 connectivity events a restart.
"""

from __future__ import annotations

from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import paho.mqtt.client as mqtt
import pytest
from support import count, make_device, wait_until

from contract.messages import OFFLINE, ONLINE, status_payload
from contract.topics import status_topic
from harness.bridges import BridgedBrokers
from harness.mosquitto import MOSQUITTO
from ingest.service import Ingest

pytestmark = [
    pytest.mark.mosquitto,
    pytest.mark.skipif(MOSQUITTO is None, reason="needs mosquitto (Debian package: mosquitto)"),
    pytest.mark.timeout(90),
]


def _device(port: int, client_id: str) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=5)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def _events(conn) -> int:
    return count(conn, "SELECT count(*) FROM connectivity_events")


@contextmanager
def _online_behind_an_edge(conn, make_settings, tmp_path, prefix, *, group: str):
    """One edge bridged to a core, an ingest on the core, and dev-1's retained 'online'
    published on the edge and stored; yields (brokers, settings, ingest)."""
    make_device(conn, "dev-1")
    with BridgedBrokers(tmp_path, edges=1, prefix=prefix) as brokers:
        settings = make_settings(
            mqtt_url=f"mqtt://fleetwatch@127.0.0.1:{brokers.core.port}",
            mqtt_protocol="5",
            ingest_shared_group=group,
        )
        started = [Ingest(settings, settings.database_url, settings.mqtt_target()).start()]
        try:
            device = _device(brokers.edges[0].port, "dev-1")
            topic = status_topic(prefix, "dev-1")
            device.publish(topic, status_payload(ONLINE), qos=1, retain=True).wait_for_publish(5)
            wait_until(lambda: _events(conn) == 1, timeout=20)
            device.disconnect()
            device.loop_stop()
            yield brokers, settings, started
        finally:
            for ingest in started:
                ingest.stop()


def _restart_edge(brokers: BridgedBrokers) -> None:
    """Its bridge connects to the core again and sends the retained 'online' once more
    (Mosquitto queues it again on every connection attempt)."""
    edge = brokers.edges[0]
    edge.stop()
    edge.start()


def test_statuses_a_bridge_sends_again_when_it_reconnects_are_not_new_events(
    conn, make_settings, tmp_path, prefix
):
    with _online_behind_an_edge(conn, make_settings, tmp_path, prefix, group="") as (
        brokers,
        settings,
        started,
    ):
        # A restarted ingest starts from what the database holds, not from nothing.
        started[0].stop()
        ingest = Ingest(settings, settings.database_url, settings.mqtt_target()).start()
        started.append(ingest)
        # The ingest tells the replay apart in memory and writes nothing.
        _restart_edge(brokers)
        wait_until(lambda: ingest.counters.replays_skipped >= 1, timeout=30)
        assert ingest.counters.statuses == 0  # none reached the database
        assert _events(conn) == 1
        state = conn.execute("SELECT connectivity FROM device_state").fetchone()[0]
        assert state == "online"


def test_in_a_shared_group_the_database_alone_tells_replays_apart(
    conn, make_settings, tmp_path, prefix
):
    """Another ingest of the group may have taken a change in between: no memory here,
    and the database's rule (a retained status is stored only if it is news) decides."""
    with _online_behind_an_edge(conn, make_settings, tmp_path, prefix, group=f"g{prefix}") as (
        brokers,
        _,
        started,
    ):
        ingest = started[0]
        _restart_edge(brokers)
        wait_until(lambda: ingest.counters.statuses >= 2, timeout=30)
        assert ingest.counters.replays_skipped == 0
        assert _events(conn) == 1


def _progress(conn, client_id: str) -> tuple:
    """(broker_back_at, caught_up_at) of this ingest; (None, None) before its first batch."""
    row = conn.execute(
        "SELECT broker_back_at, caught_up_at FROM ingest_status WHERE client_id = %s",
        (client_id,),
    ).fetchone()
    return row or (None, None)


def _broker_back(conn, client_id: str):
    return _progress(conn, client_id)[0]


def test_an_edge_going_away_holds_offline_verdicts_while_its_devices_come_back(
    conn, make_settings, make_monitor, tmp_path, prefix
):
    """An edge sends its devices' Last Wills on its way down, and they reconnect only once
    it is back: its bridge's state on the core tells the ingest, and the monitor holds."""
    with _online_behind_an_edge(conn, make_settings, tmp_path, prefix, group="") as (
        brokers,
        settings,
        _,
    ):
        client_id = settings.ingest_client_id
        # The bridge's retained '1', sent when the ingest subscribed, is no news: once a
        # tick the ingest sent after subscribing is stored, it has been read.
        wait_until(lambda: _progress(conn, client_id)[1] is not None, timeout=20)
        assert _broker_back(conn, client_id) is None
        device = _device(brokers.edges[0].port, "dev-1")
        device.will_set(status_topic(prefix, "dev-1"), status_payload(OFFLINE), qos=1, retain=True)
        device.reconnect()
        wait_until(lambda: device.is_connected(), timeout=10)
        edge = brokers.edges[0]
        stopping = datetime.now(UTC)
        edge.stop()
        # The will reached the core, and the bridge's '0' moved broker_back_at.
        wait_until(
            lambda: (
                conn.execute("SELECT connectivity FROM device_state").fetchone()[0] == "offline"
            ),
            timeout=20,
        )
        wait_until(lambda: (_broker_back(conn, client_id) or stopping) > stopping, timeout=20)
        down = _broker_back(conn, client_id)

        # Once the watermark is past the will grace: held, not offline.
        will_at = conn.execute("SELECT connectivity_at FROM device_state").fetchone()[0]
        wait_until(
            lambda: conn.execute(
                "SELECT caught_up_at > %s FROM ingest_status WHERE client_id = %s",
                (will_at + timedelta(seconds=1.5), client_id),
            ).fetchone()[0],
            timeout=20,
        )
        monitor = make_monitor(monitor_will_grace_s=1)
        result = monitor.tick()
        assert result.due == 0 or "offline" not in dict(result.applied.changed)
        assert count(conn, "SELECT count(*) FROM incidents WHERE kind = 'offline'") == 0

        edge.start()
        wait_until(lambda: _broker_back(conn, client_id) > down, timeout=30)  # its '1'
        device.disconnect()
        device.loop_stop()
