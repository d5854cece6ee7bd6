"""deploy/make-passwords.sh, run on a copy of deploy/: every login the ACL names gets a
password the broker accepts, every secret compose.yaml asks for is in .env, and an install
from before (one shared `fleetwatch` login) is brought along without losing its secrets."""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from deploy_mosquitto import DEADLINE_S, LOCAL_KEYWORDS, SERVICE_LOGINS, needs_mosquitto

from harness.mosquitto import MOSQUITTO_PASSWD, Mosquitto

pytestmark = [pytest.mark.mosquitto, needs_mosquitto]

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


@pytest.fixture
def deploy_copy(tmp_path: Path) -> Path:
    """deploy/ as an operator has it after an install from before: the shared login."""
    copy = tmp_path / "deploy"
    (copy / "mosquitto").mkdir(parents=True)
    shutil.copy(DEPLOY / "make-passwords.sh", copy)
    shutil.copy(DEPLOY / "compose.yaml", copy)
    for name in ("acl", "mosquitto.conf", "bridge.conf.example"):
        shutil.copy(DEPLOY / "mosquitto" / name, copy / "mosquitto")
    (copy / ".env").write_text("POSTGRES_PASSWORD=kept\nFLEETWATCH_MQTT_PASSWORD=old\n")
    passwd = copy / "mosquitto" / "passwd"
    subprocess.run([MOSQUITTO_PASSWD, "-c", "-b", str(passwd), "fleetwatch", "old"], check=True)
    return copy


def run_script(deploy: Path, *devices: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["sh", str(deploy / "make-passwords.sh"), *devices],
        capture_output=True,
        text=True,
        check=False,
    )


def env_file(deploy: Path) -> dict[str, str]:
    lines = (deploy / ".env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def accepts(port: int, user: str, secret: str) -> bool:
    answered, verdict = threading.Event(), []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=user)
    client.username_pw_set(user, secret)
    client.on_connect = lambda _c, _u, _f, rc, _p: (verdict.append(rc), answered.set())
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        assert answered.wait(DEADLINE_S), f"no CONNACK for {user}"
        return not verdict[0].is_failure
    finally:
        client.disconnect()
        client.loop_stop()


def test_every_login_gets_a_password_the_broker_accepts_and_compose_finds(deploy_copy):
    done = run_script(deploy_copy, "dev-0001")
    assert done.returncode == 0, done.stderr

    acl_users = set(re.findall(r"^user (\S+)$", (deploy_copy / "mosquitto/acl").read_text(), re.M))
    passwd = (deploy_copy / "mosquitto" / "passwd").read_text()
    logins = {line.split(":", 1)[0] for line in passwd.splitlines()}
    assert acl_users == set(SERVICE_LOGINS)
    assert logins == acl_users | {"dev-0001"}  # the shared `fleetwatch` is gone
    env = env_file(deploy_copy)
    wanted = set(re.findall(r"\$\{(\w+):\?", (deploy_copy / "compose.yaml").read_text()))
    assert wanted <= set(env), wanted - set(env)
    assert env["POSTGRES_PASSWORD"] == "kept"
    # Each edge's bridge block, with its bridge login's password (tests/deploy/
    # test_mosquitto_bridge.py runs the block itself against a core).
    for edge in ("edge-1", "edge-2"):
        block = (deploy_copy / "mosquitto" / f"bridge-{edge}" / "bridge.conf").read_text()
        secret = env[f"FLEETWATCH_MQTT_PASSWORD_BRIDGE_{edge.replace('-', '_').upper()}"]
        assert f"connection {edge}\n" in block
        assert f"remote_username fleetwatch-bridge-{edge}\n" in block
        assert f"remote_password {secret}\n" in block

    conf = (deploy_copy / "mosquitto" / "mosquitto.conf").read_text().splitlines()
    kept = [line for line in conf if line.split(" ", 1)[0] not in LOCAL_KEYWORDS]
    workdir = deploy_copy / "broker"
    broker = Mosquitto(
        workdir,
        anonymous=None,
        persistence=None,
        extra=[
            *kept,
            f"password_file {deploy_copy / 'mosquitto' / 'passwd'}",
            f"acl_file {deploy_copy / 'mosquitto' / 'acl'}",
        ],
    ).start(timeout_s=DEADLINE_S)
    try:
        for login in SERVICE_LOGINS:
            variable = (
                "FLEETWATCH_MQTT_PASSWORD_"
                + login.removeprefix("fleetwatch-").replace("-", "_").upper()
            )
            assert accepts(broker.port, login, env[variable]), login
        assert not accepts(broker.port, "fleetwatch", "old")
    finally:
        broker.stop()

    again = run_script(deploy_copy)
    assert again.returncode == 0, again.stderr
    assert env_file(deploy_copy) == env  # nothing made twice


@pytest.mark.parametrize("device", ["fleetwatch", "fleetwatch-ingest-3", "a/b", "dev#1", ""])
def test_a_device_id_that_is_a_service_login_or_not_a_topic_level_is_refused(deploy_copy, device):
    before = (deploy_copy / "mosquitto" / "passwd").read_text()

    done = run_script(deploy_copy, device)

    assert done.returncode == 2 and "refusing device id" in done.stderr
    assert (deploy_copy / "mosquitto" / "passwd").read_text() == before
