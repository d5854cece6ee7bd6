"""Fixtures: the deploy broker (deploy/mosquitto's config and ACL) and MQTT peers on it;
the helpers and the logins are in deploy_mosquitto.py."""

from __future__ import annotations

import subprocess
import time

import paho.mqtt.client as mqtt
import pytest
from deploy_mosquitto import (
    DEADLINE_S,
    SESSION_EXPIRY_S,
    USERS,
    Peer,
    deploy_config,
    password,
)
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from harness.mosquitto import MOSQUITTO_PASSWD, Mosquitto


@pytest.fixture(scope="module")
def deploy_broker(tmp_path_factory: pytest.TempPathFactory):
    """Mosquitto with deploy/mosquitto's config and ACL, every login of USERS in its passwd."""
    workdir = tmp_path_factory.mktemp("mosquitto")
    passwd = workdir / "passwd"
    passwd.touch(mode=0o600)
    for user in USERS:
        subprocess.run(
            [MOSQUITTO_PASSWD, "-b", str(passwd), user, password(user)],
            check=True,
            capture_output=True,
        )
    # Anonymous access and persistence as the deploy config says (None: not overridden).
    mosquitto = Mosquitto(
        workdir, anonymous=None, persistence=None, extra=deploy_config(workdir), log_types=["all"]
    )
    try:
        yield mosquitto.start(timeout_s=DEADLINE_S)
    finally:
        mosquitto.stop()


@pytest.fixture
def connect(deploy_broker: Mosquitto):
    """connect(username, ...) -> Peer after its CONNACK; every peer is closed afterwards.

    The client id asked for is the login's name unless `client_id` says otherwise;
    `persistent` asks to resume (or keep) a session, as the ingest does.
    """
    peers: list[Peer] = []

    def _connect(
        username: str | None,
        *,
        secret: str | None = None,
        protocol: str = "5",
        client_id: str | None = None,
        persistent: bool = False,
        will: tuple[str, bytes] | None = None,
        expect_refusal: bool = False,
    ) -> Peer:
        v5 = protocol == "5"
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id or username or "anonymous",
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else not persistent,
        )
        if username is not None:
            client.username_pw_set(username, secret if secret is not None else password(username))
        if will is not None:
            client.will_set(will[0], will[1], qos=1, retain=True)
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
        peers.append(peer)
        kwargs = {}
        if v5:
            props = Properties(PacketTypes.CONNECT)
            if persistent:
                props.SessionExpiryInterval = SESSION_EXPIRY_S
            kwargs = {"clean_start": not persistent, "properties": props}
        client.connect("127.0.0.1", deploy_broker.port, keepalive=30, **kwargs)
        if expect_refusal:
            # Driven by hand: paho's loop thread would wait to reconnect a refused client.
            deadline = time.monotonic() + DEADLINE_S
            while peer.connack is None and time.monotonic() < deadline:
                client.loop(timeout=0.05)
            assert peer.connack is not None, f"no CONNACK for {username}"
            return peer
        client.loop_start()
        peer.wait_for(lambda: peer.connack is not None, f"CONNACK for {username}")
        if peer.connack.is_failure:
            pytest.fail(f"{username} was refused: {peer.connack}\n{deploy_broker.log_tail()}")
        return peer

    yield _connect
    for peer in peers:
        peer.close()
