"""Shared fixtures: a real PostgreSQL and a real MQTT broker.

FLEETWATCH_TEST_DATABASE_URL names a PostgreSQL server (a fresh database is created on it
for the run and dropped afterwards); FLEETWATCH_TEST_MQTT_URL names a broker. When either is
unset, the embedded one is started, as on a fresh machine with only Python.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg import conninfo
from psycopg.types.json import Jsonb
from support import forget_session, mqtt_client

from alerts.dispatcher import Dispatcher
from alerts.router import route_notices
from alerts.service import Alerts
from api.app import create_app
from api.auth import create_key
from core import db
from core.settings import MqttTarget, Settings
from fleetwatch.embedded import EmbeddedBroker, start_embedded_postgres
from harness.ports import free_port
from harness.sinks import HttpSink, NtfySink, SmtpSink
from ingest.service import Ingest
from monitor.service import Monitor

# Every table a test may fill; emptied before each test that uses the database.
DATA_TABLES = (
    "heartbeats",
    "rejected_messages",
    "connectivity_events",
    "device_state",
    "devices",
    "sites",
    "contact_channels",
    "customers",
    "staff_channels",
    "incidents",
    "incident_events",
    "notifications",
    "ingest_status",
    "api_keys",
    "silences",
    "fleet_history",
    "monitor_runs",
    "campaigns",
    "ota_reports",
    "notices",
    "worker_jobs",
    "channel_tests",
    "signin_links",
    "customer_sessions",
    "channel_codes",
    "message_links",
    "message_link_subjects",
    "release_rollup_state",
    "release_cursor",
    "release_device_days",
    "release_daily",
    "release_digests",
)


@pytest.fixture(scope="session")
def database_server(tmp_path_factory) -> str:
    url = os.environ.get("FLEETWATCH_TEST_DATABASE_URL")
    if url:
        return url
    return start_embedded_postgres(Path(tmp_path_factory.mktemp("pg")) / "data")


@pytest.fixture(scope="session")
def dsn(database_server) -> str:
    """A fresh, migrated database for this test run."""
    name = f"fleetwatch_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(database_server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = conninfo.make_conninfo(database_server, dbname=name)
    db.migrate(url)
    yield url
    with psycopg.connect(database_server, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def default_models(dsn) -> list[tuple]:
    """The device models as migrated, so each test starts with exactly these."""
    with psycopg.connect(dsn) as connection:
        return connection.execute("SELECT * FROM device_models ORDER BY id").fetchall()


@pytest.fixture
def conn(dsn, default_models):
    """An autocommit connection to an emptied database with the default models."""
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(f"TRUNCATE {', '.join(DATA_TABLES)} CASCADE")
        restore_models(connection, default_models)
        yield connection


def restore_models(connection: psycopg.Connection, models: list[tuple]) -> None:
    """Put device_models back to `models` (tests may add or change models through the API)."""
    current = connection.execute("SELECT * FROM device_models ORDER BY id").fetchall()
    if current == models:
        return
    with connection.transaction():
        connection.execute("TRUNCATE device_models CASCADE")
        with connection.cursor().copy("COPY device_models FROM STDIN") as copy:
            for row in models:
                copy.write_row([Jsonb(v) if isinstance(v, dict | list) else v for v in row])


@pytest.fixture(scope="session")
def broker():
    """(target, protocol) of the broker for this run."""
    url = os.environ.get("FLEETWATCH_TEST_MQTT_URL")
    if url:
        yield MqttTarget.from_url(url), os.environ.get("FLEETWATCH_TEST_MQTT_PROTOCOL", "5")
        return
    embedded = EmbeddedBroker(free_port()).start()
    yield MqttTarget(host="127.0.0.1", port=embedded.port, username="fleetwatch"), "3.1.1"
    embedded.stop()


@pytest.fixture
def prefix() -> str:
    """A topic prefix of this test's own, so tests never see each other's messages."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def make_settings(dsn, broker, prefix):
    """Settings for a process under test, pointed at the test database and broker."""
    target, protocol = broker
    shared = "" if protocol == "3.1.1" else f"g{prefix}"

    def build(**overrides) -> Settings:
        values = {
            "database_url": dsn,
            "mqtt_url": f"mqtt://{target.username or 'fleetwatch'}@{target.host}:{target.port}",
            "mqtt_protocol": protocol,
            "topic_prefix": prefix,
            "ingest_client_id": f"ingest-{prefix}",
            "ingest_shared_group": shared,
            "ingest_flush_ms": 50,
            # The tests' HTTP and SMTP sinks listen on 127.0.0.1, which alerts may not reach
            # by default: allowed here, as an operator allows an inside network. Tests of
            # the default pass alerts_allowed_networks="".
            "alerts_allowed_networks": "127.0.0.0/8",
        }
        values.update(overrides)
        return Settings(**values)

    return build


@pytest.fixture
def publisher(broker):
    """A connected MQTT client for publishing test messages (username 'tester')."""
    client = mqtt_client(*broker)
    yield client
    client.disconnect()
    client.loop_stop()


@pytest.fixture
def run_ingest(make_settings, broker):
    """Start an ingest (several times if a test restarts it); all stopped afterwards."""
    started: list[Ingest] = []

    def start(**overrides) -> Ingest:
        settings = make_settings(**overrides)
        service = Ingest(settings, settings.database_url, settings.mqtt_target()).start()
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()
    if started:
        forget_session(*broker, started[0].settings.ingest_client_id)


@pytest.fixture
def make_monitor(make_settings, dsn):
    """Monitors (not started: tests call their jobs with a `now`), stopped afterwards."""
    made: list[Monitor] = []

    def build(**overrides) -> Monitor:
        made.append(Monitor(make_settings(**overrides), dsn))
        return made[-1]

    yield build
    for monitor in made:
        monitor.stop()


def route_all(dsn: str, now) -> int:
    """Route every notice waiting, as the alerts process's router would; how many."""
    routed = 0
    with psycopg.connect(dsn, autocommit=True) as connection:
        while batch := route_notices(connection, now, limit=5000).notices:
            routed += batch
    return routed


@pytest.fixture
def tick(make_settings, dsn):
    """Run one monitor tick at `now` and route the notices it recorded, as a fresh monitor
    and the alerts process's router would."""

    def run(now, **overrides):
        monitor = Monitor(make_settings(**overrides), dsn)
        try:
            result = monitor.tick(now)
            route_all(dsn, now)
            return result
        finally:
            monitor.stop()

    return run


@pytest.fixture
def route(dsn):
    """Route the notices waiting at `now` (`route(now)`): the alerts process's router."""
    return lambda now: route_all(dsn, now)


@pytest.fixture
def make_alerts(make_settings, dsn):
    """Alerts processes (not started: tests call `route`, `review` and the dispatcher with a
    `now`), closed afterwards."""
    made: list[Alerts] = []

    def build(**overrides) -> Alerts:
        made.append(Alerts(make_settings(**overrides), dsn))
        return made[-1]

    yield build
    for alerts in made:
        alerts.close()


@pytest.fixture
def smtp():
    """A real SMTP server (aiosmtpd) keeping what it receives."""
    sink = SmtpSink().start()
    yield sink
    sink.stop()


@pytest.fixture
def http_sink():
    """A local HTTP endpoint for Apprise json:// URLs."""
    sink = HttpSink().start()
    yield sink
    sink.stop()


@pytest.fixture
def ntfy():
    """A local ntfy server's publish API, for Apprise's ntfy:// URLs."""
    sink = NtfySink().start()
    yield sink
    sink.stop()


class RoutingDispatcher(Dispatcher):
    """A dispatcher whose `run_once` first routes the notices waiting at `now`, as the alerts
    process's router job does between its dispatch passes."""

    def run_once(self, now=None):
        route_all(self.dsn, now or datetime.now(UTC))
        return super().run_once(now)


@pytest.fixture
def make_dispatcher(make_settings, dsn):
    """Alert dispatchers (not started: tests call run_once with a `now`), closed afterwards."""
    made = []

    def build(**overrides) -> Dispatcher:
        dispatcher = RoutingDispatcher(make_settings(**overrides), dsn)
        made.append(dispatcher)
        return dispatcher

    yield build
    for dispatcher in made:
        dispatcher.close()


@pytest.fixture
def api(make_settings, dsn, conn, broker):
    """FastAPI's TestClient on a fresh app over the test database (send keys with `auth`)."""
    target, protocol = broker
    settings = make_settings(api_summary_refresh_s=3600)
    app = create_app(settings, dsn, mqtt_target=target, mqtt_protocol=protocol)
    with TestClient(app) as client:
        yield client


@pytest.fixture
def keys(conn):
    """One key per staff role, and a factory for customer keys."""

    class Keys:
        def __init__(self):
            self.admin = create_key(conn, "admin", label="test admin")[1]
            self.staff = create_key(conn, "staff", label="test staff")[1]
            self.firmware = create_key(conn, "firmware")[1]

        def customer(self, customer_id: str) -> str:
            return create_key(conn, "customer", customer_id=customer_id)[1]

    return Keys()
