"""The ingest's contract with its broker, for every broker it may meet: Mosquitto (deploy/),
the embedded amqtt broker, RabbitMQ's MQTT plugin and NATS's MQTT support. The tests are
here; tests/ingest/test_broker_matrix_*.py run them, one or two brokers a file (a RabbitMQ
node alone takes ~10 s to start and as much to restart).

    persistent session   what is published while the ingest is down reaches it once
    acks after commit    a message is acknowledged only once its batch is committed, so
                         what an ingest could not store is sent again to the next one
    stored once          a batch committed but not acknowledged comes again and is
                         recognised, not stored twice
    broker restart       what the broker itself keeps across its own clean restart

Each broker runs privately for this module (its own process, data and free ports), started
with what it needs from here: RabbitMQ a node with the rabbitmq_mqtt plugin enabled in its
own plugins file, NATS a server with JetStream and an mqtt block. A broker missing from the
machine is skipped with the reason. What each broker is expected to do, and lacks, is the
table EXPECTED; the top README's "Brokers" section says the same for operators.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
import psycopg
import pytest
from support import count, make_device, wait_until

from contract.messages import ONLINE, heartbeat_payload, status_payload
from contract.topics import heartbeat_topic, status_topic
from core.mqtt import connect_client, end_session, make_client
from core.settings import MqttTarget, Settings
from fleetwatch.embedded import start_broker_process
from harness.brokers import NatsServer, RabbitMqNode
from harness.mosquitto import MOSQUITTO, Mosquitto
from harness.ports import free_port
from ingest.service import Ingest


@dataclass(frozen=True)
class Expected:
    """What the ingest gets from one broker, as measured here."""

    protocol: str  # the newest MQTT version it speaks, the one the ingest uses on it
    redelivers_unacked: bool  # sends a QoS 1 message again when its PUBACK never came
    # Across the broker's own clean restart: the ingest's persistent session, the QoS 1
    # messages queued in it, and retained messages (the devices' online/offline status).
    keeps_session: bool
    keeps_queued: bool
    keeps_retained: bool
    granted_qos2: int | None  # what a QoS 2 subscription is granted (None: refused)
    lacks: str  # what the ingest or the deploy does without on this broker


EXPECTED = {
    "mosquitto": Expected(
        protocol="5",
        redelivers_unacked=True,
        keeps_session=True,
        keeps_queued=True,
        keeps_retained=True,
        granted_qos2=2,
        lacks="nothing the ingest uses (persistence true; shared subscriptions are not "
        "restored after a restart)",
    ),
    "embedded": Expected(
        protocol="3.1.1",
        redelivers_unacked=False,
        keeps_session=False,
        keeps_queued=False,
        keeps_retained=False,
        granted_qos2=2,
        lacks="MQTT 5, shared subscriptions, passwords, redelivery of unacknowledged "
        "messages and everything across a restart (memory only): for trying, not production",
    ),
    "rabbitmq": Expected(
        protocol="3.1.1",
        redelivers_unacked=True,
        keeps_session=True,
        keeps_queued=True,
        keeps_retained=True,
        granted_qos2=1,
        lacks="MQTT 5 (from RabbitMQ 3.13), QoS 2 (downgraded to 1), shared subscriptions, "
        "session expiry (a persistent session lives until cleaned)",
    ),
    "nats": Expected(
        protocol="3.1.1",
        redelivers_unacked=True,
        keeps_session=True,
        keeps_queued=True,
        keeps_retained=True,
        granted_qos2=1,
        lacks="MQTT 5, QoS 2 (granted 1), shared subscriptions; needs JetStream, and "
        "holds at most max_ack_pending (default 1024) unacknowledged messages a session",
    ),
}


@dataclass
class Broker:
    name: str
    url: str
    restart: Callable[[], None]
    expected: Expected

    @property
    def target(self) -> MqttTarget:
        return MqttTarget.from_url(self.url)

    @property
    def protocol(self) -> str:
        return self.expected.protocol


def _embedded(tmp_path):
    # In a child process, as `fleetwatch serve` runs it: a restart is a new process, and
    # amqtt's event loop never outlives its broker inside the test run.
    port = free_port()
    held = [start_broker_process(port, log_file=tmp_path / "embedded.log")]

    def stop() -> None:
        held[0].terminate()
        held[0].wait(10)

    def restart() -> None:
        stop()
        held[0] = start_broker_process(port, log_file=tmp_path / "embedded.log")

    return f"mqtt://fleetwatch@127.0.0.1:{port}", restart, stop


def _mosquitto(tmp_path):
    broker = Mosquitto(tmp_path, persistence=True).start()

    def restart() -> None:
        broker.stop()
        broker.start()

    return broker.url(), restart, broker.close


def _server(kind):
    def start(tmp_path):
        server = kind(tmp_path).start()

        def restart() -> None:
            server.stop()
            server.start()

        return server.url(), restart, server.close

    return start


STARTERS = {
    "mosquitto": (_mosquitto, lambda: None if MOSQUITTO else "needs mosquitto"),
    "embedded": (_embedded, lambda: None),
    "rabbitmq": (_server(RabbitMqNode), RabbitMqNode.missing),
    "nats": (_server(NatsServer), NatsServer.missing),
}


def broker_fixture(*names: str):
    """The module's `broker` fixture: each of `names` in turn, private to the module (it
    replaces conftest's `broker`), skipped with the reason where it is missing."""

    @pytest.fixture(scope="module", params=names)
    def broker(request, tmp_path_factory) -> Broker:
        start, missing = STARTERS[request.param]
        reason = missing()
        if reason:
            pytest.skip(f"{request.param}: {reason}")
        url, restart, close = start(tmp_path_factory.mktemp(request.param))
        try:
            yield Broker(request.param, url, restart, EXPECTED[request.param])
        finally:
            close()

    return broker


@pytest.fixture
def settings(dsn, broker, prefix) -> Callable[..., Settings]:
    def build(**overrides) -> Settings:
        values = {
            "database_url": dsn,
            "mqtt_url": broker.url,
            "mqtt_protocol": broker.protocol,
            "topic_prefix": prefix,
            "ingest_client_id": f"ingest-{prefix}",
            "ingest_shared_group": "",  # none of the 3.1.1 brokers here has them
            "ingest_flush_ms": 50,
        }
        return Settings(**(values | overrides))

    return build


@pytest.fixture
def ingests(settings, broker, prefix):
    """start() -> a running Ingest on this broker; all stopped, and the session ended."""
    started: list[Ingest] = []

    def start(**overrides) -> Ingest:
        s = settings(**overrides)
        service = Ingest(s, s.database_url, s.mqtt_target()).start()
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()
    forget = make_client(
        broker.target, f"ingest-{prefix}", protocol=broker.protocol, persistent=True
    )
    connect_client(forget, broker.target, persistent=True)
    forget.loop_start()
    end_session(forget, broker.target, f"ingest-{prefix}")


class Peer:
    """A paho client that notes what it receives; `persistent` keeps its session."""

    def __init__(self, broker: Broker, client_id: str, *, persistent: bool = False) -> None:
        self.messages: list[mqtt.MQTTMessage] = []
        self.granted: dict[int, list] = {}
        self.session_present: bool | None = None
        self.changed = threading.Condition()
        self.client = make_client(
            broker.target, client_id, protocol=broker.protocol, persistent=persistent
        )
        self.client.on_message = lambda _c, _u, m: self._note(lambda: self.messages.append(m))
        self.client.on_subscribe = lambda _c, _u, mid, rcs, _p: self._note(
            lambda: self.granted.__setitem__(mid, rcs)
        )
        connected = threading.Event()

        def on_connect(_c, _u, flags, _rc, _p):
            self.session_present = flags.session_present
            connected.set()

        self.client.on_connect = on_connect
        connect_client(self.client, broker.target, persistent=persistent)
        self.client.loop_start()
        assert connected.wait(10), f"no CONNACK from {broker.name}"

    def _note(self, change) -> None:
        with self.changed:
            change()
            self.changed.notify_all()

    def subscribe(self, topic: str, qos: int = 1) -> list:
        _, mid = self.client.subscribe(topic, qos)
        with self.changed:
            assert self.changed.wait_for(lambda: mid in self.granted, 10), "no SUBACK"
        return self.granted[mid]

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)

    def wait_for(self, topic: str, payload: bytes) -> list[bytes]:
        """Wait for `payload` on `topic`; return everything on `topic` up to it, in order."""
        with self.changed:
            assert self.changed.wait_for(
                lambda: any(m.topic == topic and m.payload == payload for m in self.messages),
                10,
            ), f"{payload!r} did not arrive on {topic}"
            on_topic = [m.payload for m in self.messages if m.topic == topic]
        return on_topic[: on_topic.index(payload) + 1]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def peers(broker):
    opened: list[Peer] = []

    def open_peer(client_id: str | None = None, *, persistent: bool = False) -> Peer:
        peer = Peer(broker, client_id or f"peer-{uuid.uuid4().hex[:8]}", persistent=persistent)
        opened.append(peer)
        return peer

    yield open_peer
    for peer in opened:
        peer.close()


def heartbeat(seq: int) -> bytes:
    return heartbeat_payload(seq=seq, ts=datetime.now(UTC), fw="1.0.0", uptime_s=seq)


def test_heartbeats_sent_while_the_ingest_is_down_arrive_once(conn, broker, ingests, peers, prefix):
    make_device(conn, "dev-1")
    ingests().stop()  # leaves its persistent session on the broker
    device = peers()
    for seq in range(200):
        device.publish(heartbeat_topic(prefix, "dev-1"), heartbeat(seq))

    ingest = ingests()
    wait_until(lambda: ingest.counters.stored >= 200, timeout=30)
    assert count(conn, "SELECT count(*) FROM heartbeats") == 200
    assert count(conn, "SELECT count(DISTINCT seq) FROM heartbeats") == 200


def test_nothing_is_acknowledged_before_its_commit(conn, broker, ingests, peers, prefix):
    if not broker.expected.redelivers_unacked:
        pytest.skip(f"{broker.name} does not send an unacknowledged QoS 1 message again")
    make_device(conn, "dev-1")
    failing = ingests()

    def database_gone(*_args):
        raise psycopg.OperationalError("the database went away (test)")

    failing._write = database_gone  # every commit fails: nothing may be acknowledged
    device = peers()
    for seq in range(20):
        device.publish(heartbeat_topic(prefix, "dev-1"), heartbeat(seq))
    wait_until(lambda: failing.counters.db_errors >= 2)
    failing.stop()  # gives up on the batch, unacknowledged
    assert count(conn, "SELECT count(*) FROM heartbeats") == 0

    restarted = ingests()
    wait_until(lambda: restarted.counters.stored >= 20, timeout=30)
    assert count(conn, "SELECT count(DISTINCT seq) FROM heartbeats") == 20


def test_a_batch_committed_but_not_acknowledged_is_stored_once(
    conn, broker, ingests, peers, prefix
):
    if not broker.expected.redelivers_unacked:
        pytest.skip(f"{broker.name} does not send an unacknowledged QoS 1 message again")
    make_device(conn, "dev-1")
    crashing = ingests()
    crashing._ack = lambda batch: None  # as if it died between its commit and its acks
    device = peers()
    for seq in range(50):
        device.publish(heartbeat_topic(prefix, "dev-1"), heartbeat(seq))
    wait_until(lambda: crashing.counters.stored == 50)
    crashing.stop()

    restarted = ingests()
    wait_until(lambda: restarted.counters.duplicates == 50, timeout=30)
    assert restarted.counters.stored == 0
    assert count(conn, "SELECT count(*) FROM heartbeats") == 50


def test_what_the_broker_keeps_across_its_own_restart(conn, broker, ingests, peers, prefix):
    make_device(conn, "dev-1")
    ingests().stop()  # its persistent session, subscribed, on the broker
    probe = peers(f"probe-{prefix}", persistent=True)
    probe.subscribe(f"{prefix}/probe")
    probe.close()
    device = peers()
    for seq in range(20):
        device.publish(heartbeat_topic(prefix, "dev-1"), heartbeat(seq))
    device.publish(status_topic(prefix, "dev-1"), status_payload(ONLINE), retain=True)
    device.close()

    broker.restart()

    probe = peers(f"probe-{prefix}", persistent=True)
    kept_session = probe.session_present
    ingest = ingests()
    # The later marker: sent after the ingest is back, stored after anything it was queued.
    marker = peers()
    marker.publish(heartbeat_topic(prefix, "dev-1"), heartbeat(1000))
    wait_until(lambda: count(conn, "SELECT count(*) FROM heartbeats WHERE seq = 1000") == 1)
    wait_until(lambda: ingest.counters.stored + ingest.counters.duplicates >= 1)
    kept_queued = count(conn, "SELECT count(*) FROM heartbeats WHERE seq < 1000")
    # A retained message comes right after the SUBACK, before anything published later.
    reader = peers()
    reader.subscribe(status_topic(prefix, "dev-1"))
    marker.publish(status_topic(prefix, "dev-1"), b"marker")
    before_marker = reader.wait_for(status_topic(prefix, "dev-1"), b"marker")
    kept_retained = status_payload(ONLINE) in before_marker
    # Cleared, so a rerun on a broker that keeps it does not read this one.
    marker.publish(status_topic(prefix, "dev-1"), b"", retain=True)

    measured = (kept_session, {0: False, 20: True}.get(kept_queued, kept_queued), kept_retained)
    e = broker.expected
    assert measured == (e.keeps_session, e.keeps_queued, e.keeps_retained), (
        f"{broker.name} across its restart: session, queued, retained = {measured}"
    )


def test_what_the_broker_grants_a_qos2_subscription(broker, peers, prefix):
    granted = peers().subscribe(f"{prefix}/+/cmd", qos=2)[0]
    value = None if granted.is_failure else granted.value
    assert value == broker.expected.granted_qos2, f"{broker.name} granted {granted}"
