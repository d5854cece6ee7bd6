"""Private RabbitMQ and NATS servers on 127.0.0.1 speaking MQTT, for the ingest's broker
matrix (tests/ingest/test_ingest_broker_matrix.py). Each runs as a process of its own with
its own data directory and free ports, never touching a server the machine already runs,
and restarts on the same ports keeping what its data directory holds.

    RabbitMqNode(workdir)   a RabbitMQ node with the rabbitmq_mqtt plugin enabled from its
                            own enabled_plugins file; one login (USERNAME, PASSWORD)
    NatsServer(workdir)     nats-server with JetStream (its MQTT support stores sessions
                            and QoS 1 messages there) and an mqtt block

`missing()` on each class says why it cannot run here (None when it can), so a test can
skip with that reason.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

from harness.ports import free_port, port_open

SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])
# The node's own start script: /usr/sbin/rabbitmq-server switches to the rabbitmq user and
# the machine's node directory; this one runs as we are, with our environment.
RABBITMQ_SERVER = next(
    (p for p in ("/usr/lib/rabbitmq/bin/rabbitmq-server",) if os.access(p, os.X_OK)),
    shutil.which("rabbitmq-server", path=SEARCH_PATH),
)
NATS_SERVER = shutil.which("nats-server", path=SEARCH_PATH)
USERNAME = "fleetwatch"
PASSWORD = "matrix-secret"  # noqa: S105 - a private test broker on 127.0.0.1


class _Server:
    """A child process listening on `port` (MQTT) once it is ready."""

    name = "server"

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def output_path(self) -> Path:
        return self.dir / "output.log"

    def log_tail(self, chars: int = 3000) -> str:
        path = self.output_path
        return path.read_text(errors="replace")[-chars:] if path.exists() else "(no output)"

    def url(self) -> str:
        return f"mqtt://{USERNAME}:{PASSWORD}@127.0.0.1:{self.port}"

    def _command(self) -> tuple[list[str], dict[str, str]]:
        raise NotImplementedError

    def start(self, timeout_s: float = 60.0) -> _Server:
        command, env = self._command()
        with self.output_path.open("ab") as output:
            self.proc = subprocess.Popen(
                command,
                env=env,
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its helpers (epmd, erl_child_setup) end with it
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start:\n{self.log_tail()}")
            if port_open(self.port):
                self.starts += 1
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} did not listen within {timeout_s} s:\n{self.log_tail()}")

    def stop(self, timeout_s: float = 60.0) -> None:
        """A clean stop (SIGTERM), as a service manager stops it."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        # A port still held by a helper of the stopped process would refuse the restart.
        deadline = time.monotonic() + 10
        while port_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.1)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class RabbitMqNode(_Server):
    """A RabbitMQ node of our own: its own node name, ports, data and cookie (HOME)."""

    name = "rabbitmq"

    @staticmethod
    def missing() -> str | None:
        if RABBITMQ_SERVER is None:
            return "needs RabbitMQ (Debian package rabbitmq-server)"
        plugins = Path("/usr/lib/rabbitmq/lib")
        if plugins.exists() and not any(plugins.glob("*/plugins/rabbitmq_mqtt-*")):
            return "needs RabbitMQ's rabbitmq_mqtt plugin"
        return None

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.amqp_port = free_port()
        self.dist_port = free_port()
        self.node = f"fwmatrix{uuid.uuid4().hex[:8]}@localhost"
        (self.dir / "rabbitmq.conf").write_text(
            "\n".join(
                [
                    f"listeners.tcp.default = 127.0.0.1:{self.amqp_port}",
                    f"mqtt.listeners.tcp.default = 127.0.0.1:{self.port}",
                    # Every client logs in, as on Mosquitto in deploy/.
                    "mqtt.allow_anonymous = false",
                    # Unacknowledged messages delivered to one MQTT session at a time
                    # (default 10). The ingest acknowledges after its commit, so this caps
                    # its batch, as max_inflight_messages does on Mosquitto: above
                    # FLEETWATCH_INGEST_BATCH_SIZE.
                    "mqtt.prefetch = 10000",
                    # Made on the node's first boot only; kept in its data directory.
                    f"default_user = {USERNAME}",
                    f"default_pass = {PASSWORD}",
                ]
            )
            + "\n"
        )
        # The plugin enabled from the node's own file, not the machine's.
        (self.dir / "enabled_plugins").write_text("[rabbitmq_mqtt].\n")

    def _command(self) -> tuple[list[str], dict[str, str]]:
        env = {
            **os.environ,
            "HOME": str(self.dir),  # its own Erlang cookie
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_PID_FILE": str(self.dir / "pid"),
            "RABBITMQ_PLUGINS_EXPAND_DIR": str(self.dir / "plugins-expand"),
        }
        return [RABBITMQ_SERVER], env


class NatsServer(_Server):
    """nats-server with JetStream in its own store directory and MQTT on a free port."""

    name = "nats"
    # How long the server waits for a PUBACK before it sends a QoS 1 message again (NATS'
    # default is 30 s): short, so a test sees the redelivery of what an ingest left
    # unacknowledged without waiting long.
    ACK_WAIT = "2s"

    @staticmethod
    def missing() -> str | None:
        if NATS_SERVER is None:
            return "needs nats-server (Debian package nats-server)"
        return None

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.client_port = free_port()
        (self.dir / "nats.conf").write_text(
            "\n".join(
                [
                    f"listen: 127.0.0.1:{self.client_port}",
                    # MQTT needs JetStream, and JetStream a server name.
                    f"server_name: fwmatrix{uuid.uuid4().hex[:8]}",
                    f'jetstream {{ store_dir: "{self.dir / "jetstream"}" }}',
                    f'authorization {{ user: "{USERNAME}", password: "{PASSWORD}" }}',
                    # max_ack_pending: QoS 1 messages sent to one subscription without
                    # their PUBACK (default 1024). The ingest acknowledges after its commit,
                    # so this caps its batch: above FLEETWATCH_INGEST_BATCH_SIZE. At most
                    # 65535 a session over all its subscriptions (the ingest has four).
                    f'mqtt {{ listen: "127.0.0.1:{self.port}", ack_wait: "{self.ACK_WAIT}", '
                    "max_ack_pending: 10000 }",
                ]
            )
            + "\n"
        )

    def _command(self) -> tuple[list[str], dict[str, str]]:
        return [NATS_SERVER, "-c", str(self.dir / "nats.conf")], dict(os.environ)
