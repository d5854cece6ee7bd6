"""Helpers for tests against a real Mosquitto started from deploy/mosquitto/ (its
mosquitto.conf and acl), and MQTT peers that record what the broker tells them.

The deploy config's lines naming its port and paths are swapped for a temp dir and a free
port; every other line is the deploy file's, so an option Mosquitto does not know, or one
placed where it does not apply, fails these tests. The password file is made here by
mosquitto_passwd for the logins `deploy/make-passwords.sh` makes, plus two devices.

With `use_username_as_clientid` the broker names each connection after its login, whatever
client id it asked for: two peers of one login at once would throw each other off, so a
test gives each concurrent peer a login of its own.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.reasoncodes import ReasonCode

from harness.mosquitto import MOSQUITTO, MOSQUITTO_PASSWD, Mosquitto

DEPLOY_MOSQUITTO = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto"
# The service logins of deploy/make-passwords.sh (and deploy/mosquitto/acl), and two devices.
INGEST_1 = "fleetwatch-ingest-1"
INGEST_2 = "fleetwatch-ingest-2"
CAMPAIGNS = "fleetwatch-campaigns"
API = "fleetwatch-api"
HEALTHCHECK = "fleetwatch-healthcheck"
BRIDGE_1 = "fleetwatch-bridge-edge-1"
BRIDGE_2 = "fleetwatch-bridge-edge-2"
SERVICE_LOGINS = (INGEST_1, INGEST_2, CAMPAIGNS, API, HEALTHCHECK, BRIDGE_1, BRIDGE_2)
USERS = (*SERVICE_LOGINS, "dev-a", "dev-b")
# The deploy config's lines that name ports and paths; the test supplies its own.
LOCAL_KEYWORDS = {"listener", "password_file", "acl_file", "persistence_location", "log_dest"}
# Long enough for a loaded CI machine; every wait ends as soon as its condition holds.
DEADLINE_S = 5.0
NOT_AUTHORIZED = 0x87
SUBSCRIBE_REFUSED_311 = 0x80
# Session expiry a persistent peer asks for (MQTT 5), as the ingest does.
SESSION_EXPIRY_S = 3600

needs_mosquitto = pytest.mark.skipif(
    MOSQUITTO is None or MOSQUITTO_PASSWD is None,
    reason="needs the mosquitto broker and mosquitto_passwd (Debian package: mosquitto)",
)


def password(user: str) -> str:
    return f"pw-{user}"


def deploy_config(workdir: Path) -> list[str]:
    """The deploy config without the lines naming its port and paths, and with the test's
    password file and the real ACL."""
    deploy_lines = (DEPLOY_MOSQUITTO / "mosquitto.conf").read_text().splitlines()
    kept = [line for line in deploy_lines if line.split(" ", 1)[0] not in LOCAL_KEYWORDS]
    return [*kept, f"password_file {workdir / 'passwd'}", f"acl_file {DEPLOY_MOSQUITTO / 'acl'}"]


@dataclass
class Peer:
    """A paho client that records what the broker sends it, to wait on with a deadline."""

    client: mqtt.Client
    username: str | None
    connack: ReasonCode | None = None
    session_present: bool | None = None
    disconnects: list[ReasonCode] = field(default_factory=list)
    messages: list[mqtt.MQTTMessage] = field(default_factory=list)
    subacks: dict[int, list[ReasonCode]] = field(default_factory=dict)
    pubacks: dict[int, ReasonCode] = field(default_factory=dict)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def record(self, update) -> None:
        with self.changed:
            update()
            self.changed.notify_all()

    def wait_for(self, condition, what: str) -> None:
        with self.changed:
            if not self.changed.wait_for(condition, timeout=DEADLINE_S):
                pytest.fail(f"{what}: not within {DEADLINE_S} s")

    def payloads(self, topic: str | None = None) -> list[bytes]:
        with self.changed:
            return [m.payload for m in self.messages if topic is None or m.topic == topic]

    def subscribe(self, topic: str, qos: int = 1) -> ReasonCode:
        _, mid = self.client.subscribe(topic, qos)
        self.wait_for(lambda: mid in self.subacks, f"SUBACK for {topic}")
        return self.subacks[mid][0]

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> ReasonCode:
        """Publish at QoS 1 and return the PUBACK's reason code (always Success in 3.1.1)."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        self.wait_for(lambda: info.mid in self.pubacks, f"PUBACK for {topic}")
        return self.pubacks[info.mid]

    def wait_for_payload(self, topic: str, payload: bytes) -> None:
        self.wait_for(
            lambda: any(m.topic == topic and m.payload == payload for m in self.messages),
            f"{payload!r} on {topic}",
        )

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def log_lines(broker: Mosquitto) -> list[str]:
    path = broker.log_path
    return path.read_text(errors="replace").splitlines() if path.exists() else []


def wait_for_log_line(broker: Mosquitto, line: str, *, after: int = 0) -> None:
    """Wait until the broker has logged `line` (after its timestamp) past its first `after`
    lines (`len(log_lines(broker))` taken before the action): it has handled it.

    Its log is a file, which Mosquitto flushes line by line.
    """
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        if any(logged.endswith(f": {line}") for logged in log_lines(broker)[after:]):
            return
        time.sleep(0.02)
    pytest.fail(f"{line!r} not in the broker's log within {DEADLINE_S} s:\n{broker.log_tail()}")


def verdict(reason: ReasonCode) -> str:
    """A PUBACK's reason code as a table entry: Success and "No matching subscribers" both
    mean the broker took the message."""
    if not reason.is_failure:
        return "accepted"
    return "denied" if reason.value == NOT_AUTHORIZED else str(reason)
