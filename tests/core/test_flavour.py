"""Choosing the database's flavour by what the server can do, and migrations that fail."""

from __future__ import annotations

import dataclasses
import logging
import uuid

import psycopg
import pytest
from psycopg import conninfo

from core import db
from core import flavour as flavours
from core.flavour import PRELOAD_FIX, Facts, FlavourError, choose_flavour

NOT_PRELOADED = 'extension "timescaledb" must be preloaded'


def facts(**values) -> Facts:
    base = {"migrated_as": None, "available": False, "created": False}
    return Facts(**(base | values))


@pytest.mark.parametrize(
    ("setting", "given", "expected"),
    [
        ("auto", facts(), "postgres"),
        ("auto", facts(available=True, loadable=True), "timescaledb"),
        ("auto", facts(available=True, created=True), "timescaledb"),
        ("auto", facts(available=True, loadable=False, refusal=NOT_PRELOADED), "postgres+note"),
        ("postgres", facts(available=True, loadable=True), "postgres"),
        ("postgres", facts(available=True, created=True), "postgres"),
        ("timescaledb", facts(available=True, loadable=True), "timescaledb"),
        ("timescaledb", facts(available=True, loadable=False, refusal=NOT_PRELOADED), "error"),
        ("timescaledb", facts(), "error"),
        # Once migrated, the flavour stays; a setting that disagrees is an error.
        ("auto", facts(migrated_as="timescaledb", available=False), "timescaledb"),
        ("auto", facts(migrated_as="postgres", available=True, loadable=True), "postgres"),
        ("timescaledb", facts(migrated_as="postgres"), "error"),
        ("postgres", facts(migrated_as="timescaledb"), "error"),
        ("sqlite", facts(), "error"),
    ],
)
def test_the_flavour_follows_the_server_and_the_setting(setting, given, expected):
    if expected == "error":
        with pytest.raises(FlavourError):
            choose_flavour(setting, given)
        return
    choice = choose_flavour(setting, given)
    assert choice.flavour == expected.removesuffix("+note")
    assert (choice.note is not None) == expected.endswith("+note")
    if choice.note:
        assert PRELOAD_FIX in choice.note and NOT_PRELOADED in choice.note


@pytest.fixture
def fresh_database(database_server):
    """An empty database of its own (migrations are what the test is about)."""
    name = f"fleetwatch_flavour_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(database_server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield conninfo.make_conninfo(database_server, dbname=name)
    with psycopg.connect(database_server, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def installed_not_preloaded(monkeypatch):
    """The server as one with TimescaleDB installed but not in shared_preload_libraries: it
    lists the extension, and creating it is refused (FATAL there, closing the connection)."""
    real = flavours.read_facts
    probes = []

    def read_facts(conn, probed=None):
        return dataclasses.replace(real(conn, probed), available=True, created=False)

    def probe(dsn):
        probes.append(dsn)
        return False, NOT_PRELOADED

    monkeypatch.setattr(flavours, "read_facts", read_facts)
    return probe, probes


def test_installed_but_not_preloaded_migrates_as_postgres_and_says_how_to_fix_it(
    fresh_database, installed_not_preloaded, caplog
):
    probe, probes = installed_not_preloaded
    with caplog.at_level(logging.WARNING, logger="core.flavour"):
        applied = db.migrate(fresh_database, flavour="auto", probe=probe)
    assert applied and probes == [fresh_database]
    with psycopg.connect(fresh_database) as conn:
        assert conn.execute("SELECT DISTINCT flavour FROM schema_migrations").fetchall() == [
            ("postgres",)
        ]
    [line] = [r.getMessage() for r in caplog.records if r.name == "core.flavour"]
    assert "shared_preload_libraries" in line and "restart PostgreSQL" in line
    # Migrated as plain PostgreSQL, it stays so: no probe, no line the next time.
    caplog.clear()
    assert db.migrate(fresh_database, flavour="auto", probe=probe) == []
    assert probes == [fresh_database] and not caplog.records


def test_installed_but_not_preloaded_stops_when_timescaledb_is_required(
    fresh_database, installed_not_preloaded
):
    probe, _ = installed_not_preloaded
    with pytest.raises(FlavourError, match="shared_preload_libraries"):
        db.migrate(fresh_database, flavour="timescaledb", probe=probe)
    with psycopg.connect(fresh_database) as conn:
        assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone() == (0,)


def test_plain_postgres_is_not_probed(fresh_database, installed_not_preloaded):
    probe, probes = installed_not_preloaded
    assert db.migrate(fresh_database, flavour="postgres", probe=probe)
    assert probes == []


def test_a_migration_that_takes_the_connection_down_shows_its_own_error(fresh_database):
    # As CREATE EXTENSION does on a server that did not preload TimescaleDB: a FATAL error,
    # the connection gone. The clean-up must not hide it behind "the connection is closed".
    dying = db.Migration(1, "dies", "SELECT pg_terminate_backend(pg_backend_pid())")
    with pytest.raises(psycopg.OperationalError) as raised:
        db.migrate(fresh_database, flavour="postgres", migrations=[dying])
    assert "terminating connection" in str(raised.value)
    assert "connection is closed" not in str(raised.value)
    # The lock went with the session: the next migrate is not kept waiting.
    ok = db.Migration(1, "fine", "SELECT 1")
    assert db.migrate(fresh_database, flavour="postgres", migrations=[ok]) == ["001_fine"]


def test_a_failing_migration_rolls_back_and_raises_its_own_error(fresh_database):
    broken = db.Migration(1, "broken", "CREATE TABLE half (x int); SELECT 1 / 0")
    with pytest.raises(psycopg.errors.DivisionByZero):
        db.migrate(fresh_database, flavour="postgres", migrations=[broken])
    with psycopg.connect(fresh_database) as conn:
        assert conn.execute("SELECT to_regclass('half')").fetchone() == (None,)
        assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone() == (0,)
