"""The edge/core topology of deploy/mosquitto: a core with mosquitto.conf and acl, two
edges with edge.conf, edge-acl and the bridge block of bridge.conf.example (as
make-passwords.sh writes it), all real Mosquittos on 127.0.0.1.

What must hold on every edge is what holds on the core: a device reaches only its own
topics and its own session; what the edge acknowledged reaches the core once, also when
the core was away meanwhile; commands come back to their own device only.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from deploy_mosquitto import (
    BRIDGE_1,
    BRIDGE_2,
    CAMPAIGNS,
    DEADLINE_S,
    DEPLOY_MOSQUITTO,
    INGEST_1,
    LOCAL_KEYWORDS,
    SESSION_EXPIRY_S,
    USERS,
    Peer,
    deploy_config,
    needs_mosquitto,
    password,
    verdict,
)
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from harness.mosquitto import MOSQUITTO_PASSWD, Mosquitto

pytestmark = [needs_mosquitto, pytest.mark.timeout(120)]

# The edge config's lines that name ports and paths, and its include of the bridge block.
EDGE_LOCAL_KEYWORDS = LOCAL_KEYWORDS | {"include_dir"}


def bridge_block(edge: str, core_port: int) -> list[str]:
    """bridge.conf.example as make-passwords.sh fills it in, pointed at the test's core."""
    text = (DEPLOY_MOSQUITTO / "bridge.conf.example").read_text()
    login = f"fleetwatch-bridge-{edge}"
    lines = text.replace("EDGE", edge).replace("PASSWORD", password(login)).splitlines()
    return [
        f"address 127.0.0.1:{core_port}" if line.startswith("address ") else line for line in lines
    ]


def edge_config(workdir: Path, edge: str, core_port: int) -> list[str]:
    lines = (DEPLOY_MOSQUITTO / "edge.conf").read_text().splitlines()
    kept = [line for line in lines if line.split(" ", 1)[0] not in EDGE_LOCAL_KEYWORDS]
    return [
        *kept,
        f"password_file {workdir / 'passwd'}",
        f"acl_file {DEPLOY_MOSQUITTO / 'edge-acl'}",
        *bridge_block(edge, core_port),
    ]


class Topology:
    def __init__(self, core: Mosquitto, edges: list[Mosquitto]) -> None:
        self.core, self.edges = core, edges
        self.peers: list[Peer] = []

    def connect(
        self,
        broker: Mosquitto,
        username: str,
        *,
        client_id: str | None = None,
        persistent: bool = False,
    ) -> Peer:
        """A peer logged in as `username` (its password), after its CONNACK."""
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id or username,
            protocol=mqtt.MQTTv5,
        )
        client.username_pw_set(username, password(username))
        peer = Peer(client, username)

        def on_connect(_c, _u, flags, rc, _p):
            def note():
                peer.connack = rc
                peer.session_present = flags.session_present

            peer.record(note)

        client.on_connect = on_connect
        client.on_disconnect = lambda _c, _u, _f, rc, _p: peer.record(
            lambda: peer.disconnects.append(rc)
        )
        client.on_message = lambda _c, _u, msg: peer.record(lambda: peer.messages.append(msg))
        client.on_subscribe = lambda _c, _u, mid, rcs, _p: peer.record(
            lambda: peer.subacks.__setitem__(mid, rcs)
        )
        client.on_publish = lambda _c, _u, mid, rc, _p: peer.record(
            lambda: peer.pubacks.__setitem__(mid, rc)
        )
        props = Properties(PacketTypes.CONNECT)
        if persistent:
            props.SessionExpiryInterval = SESSION_EXPIRY_S
        # paho reconnects on its own after a broker restart (loop_start), resuming the
        # session it asked for.
        client.reconnect_delay_set(min_delay=0.1, max_delay=0.5)
        client.connect(
            "127.0.0.1", broker.port, keepalive=30, clean_start=not persistent, properties=props
        )
        client.loop_start()
        self.peers.append(peer)
        peer.wait_for(lambda: peer.connack is not None, f"CONNACK for {username}")
        assert not peer.connack.is_failure, f"{username} refused: {peer.connack}"
        return peer

    def close_peers(self) -> None:
        for peer in self.peers:
            peer.close()
        self.peers.clear()


def wait_for_bridges(core: Mosquitto, count: int) -> None:
    """Until the core has logged `count` bridge logins connecting (edge start-up is async)."""
    deadline = time.monotonic() + 3 * DEADLINE_S
    while time.monotonic() < deadline:
        log = core.log_path.read_text(errors="replace") if core.log_path.exists() else ""
        if sum(f"u'{b}'" in log for b in (BRIDGE_1, BRIDGE_2)) >= count:
            return
        time.sleep(0.05)
    pytest.fail(f"the edges' bridges did not connect to the core:\n{core.log_tail()}")


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory):
    workdir = tmp_path_factory.mktemp("bridged")
    passwd = workdir / "passwd"
    passwd.touch(mode=0o600)
    for user in USERS:
        subprocess.run(
            [MOSQUITTO_PASSWD, "-b", str(passwd), user, password(user)],
            check=True,
            capture_output=True,
        )
    core = Mosquitto(
        workdir / "core",
        anonymous=None,
        persistence=None,
        extra=deploy_config(workdir),
        log_types=["all"],
    ).start(timeout_s=DEADLINE_S)
    edges = [
        Mosquitto(
            workdir / edge,
            anonymous=None,
            persistence=None,
            extra=edge_config(workdir, edge, core.port),
            log_types=["all"],
        )
        for edge in ("edge-1", "edge-2")
    ]
    try:
        for edge in edges:
            edge.start(timeout_s=DEADLINE_S)
        wait_for_bridges(core, 2)
        yield Topology(core, edges)
    finally:
        for edge in edges:
            edge.stop()
        core.stop()


@pytest.fixture
def net(topology: Topology):
    yield topology
    topology.close_peers()


def fresh() -> bytes:
    return f"hb-{uuid.uuid4().hex}".encode()


def test_heartbeats_from_devices_on_every_edge_reach_the_ingest_on_the_core(net):
    ingest = net.connect(net.core, INGEST_1)
    ingest.subscribe("fleet/+/heartbeat")
    for edge, device in zip(net.edges, ("dev-a", "dev-b"), strict=True):
        payload = fresh()
        assert verdict(net.connect(edge, device).publish(f"fleet/{device}/heartbeat", payload)) == (
            "accepted"
        )
        ingest.wait_for_payload(f"fleet/{device}/heartbeat", payload)


def test_an_edge_holds_each_device_to_its_own_topics(net):
    ingest = net.connect(net.core, INGEST_1)
    ingest.subscribe("fleet/+/heartbeat")
    device = net.connect(net.edges[0], "dev-a")
    forged = fresh()

    assert verdict(device.publish("fleet/dev-b/heartbeat", forged)) == "denied"
    # Its own heartbeat, sent after the forged one on the same bridge, is the marker.
    marker = fresh()
    device.publish("fleet/dev-a/heartbeat", marker)
    ingest.wait_for_payload("fleet/dev-a/heartbeat", marker)
    assert forged not in ingest.payloads()


def test_an_edge_binds_the_client_id_to_the_login(net):
    edge = net.edges[0]
    owner = net.connect(edge, "dev-a")
    # Another device asking for dev-a's client id, and for the bridge's local one, gets a
    # session named after its own login: dev-a stays connected, the bridge goes on.
    net.connect(edge, "dev-b", client_id="dev-a")
    net.connect(edge, "dev-b", client_id="fleetwatch-bridge-edge-1-local")
    ingest = net.connect(net.core, INGEST_1)
    ingest.subscribe("fleet/+/heartbeat")
    marker = fresh()
    owner.publish("fleet/dev-a/heartbeat", marker)

    ingest.wait_for_payload("fleet/dev-a/heartbeat", marker)
    assert owner.disconnects == []


def test_commands_from_the_core_reach_their_own_device_on_its_edge_only(net):
    target = net.connect(net.edges[0], "dev-a")
    target.subscribe("fleet/dev-a/cmd")
    snoop = net.connect(net.edges[1], "dev-b")
    snoop.subscribe("fleet/#")  # granted, and only its own commands are delivered
    runner = net.connect(net.core, CAMPAIGNS)

    runner.publish("fleet/dev-a/cmd", b"reboot-a")
    target.wait_for_payload("fleet/dev-a/cmd", b"reboot-a")
    runner.publish("fleet/dev-b/cmd", b"marker-b")
    snoop.wait_for_payload("fleet/dev-b/cmd", b"marker-b")
    assert snoop.payloads("fleet/dev-a/cmd") == []


def test_what_an_edge_acknowledged_while_the_core_was_down_reaches_it_once(net):
    ingest = net.connect(net.core, INGEST_1, persistent=True)
    ingest.subscribe("fleet/+/heartbeat")
    device = net.connect(net.edges[1], "dev-b")
    sent = [fresh() for _ in range(50)]

    net.core.stop()
    try:
        for payload in sent:
            assert verdict(device.publish("fleet/dev-b/heartbeat", payload)) == "accepted"
    finally:
        net.core.start(timeout_s=DEADLINE_S)
    # The edge's bridge reconnects (restart_timeout 2 s), the ingest resumes its session.
    with ingest.changed:
        arrived = ingest.changed.wait_for(
            lambda: set(sent) <= set(ingest.payloads("fleet/dev-b/heartbeat")),
            timeout=6 * DEADLINE_S,
        )
    got = ingest.payloads("fleet/dev-b/heartbeat")
    assert arrived, f"{len(set(got) & set(sent))} of 50 arrived:\n{net.edges[1].log_tail()}"
    assert sorted(got) == sorted(sent)  # each once
