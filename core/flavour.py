"""Which flavour a database is migrated as: plain PostgreSQL or TimescaleDB.

Chosen once, before the first migration, by what the server can actually do, and then kept
(the schema differs: `NNN_name.postgres.sql` against `NNN_name.timescaledb.sql`):

    already migrated                  -> that flavour, whatever the setting
    extension created in the database -> timescaledb (it is loaded)
    extension available and loadable  -> timescaledb, unless FLEETWATCH_DATABASE_FLAVOUR=postgres
    available but not loadable        -> auto: postgres, with one log line saying how to fix it;
      (installed, not preloaded)         timescaledb: stop with that message
    not available                     -> auto or postgres: postgres; timescaledb: stop

"Loadable" is learnt by creating the extension on a connection of its own, before the
migrating connection is opened: a TimescaleDB that is installed but not in
`shared_preload_libraries` refuses with a FATAL error that closes the connection, and some
servers (PGlite) take one connection at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import psycopg

log = logging.getLogger(__name__)

SETTINGS = ("auto", "postgres", "timescaledb")
PRELOAD_FIX = (
    "TimescaleDB is installed on the server but not loaded: add timescaledb to "
    "shared_preload_libraries in postgresql.conf and restart PostgreSQL"
)


class FlavourError(RuntimeError):
    """The flavour asked for cannot be had on this server (the message says how to fix it)."""


@dataclass(frozen=True)
class Facts:
    """What the server says, read before the first migration."""

    migrated_as: str | None  # the flavour of an earlier migration, if any
    available: bool  # pg_available_extensions lists timescaledb
    created: bool  # the extension exists in this database
    # Creating it works on this server (None: not tried, e.g. not available or not wanted).
    loadable: bool | None = None
    # Why creating it failed, as the server said.
    refusal: str | None = None


@dataclass(frozen=True)
class Choice:
    flavour: str
    # A line for the log when the choice is not the one a reader would expect.
    note: str | None = None


def choose_flavour(setting: str, facts: Facts) -> Choice:
    """The flavour to migrate as; FlavourError when the setting cannot be honoured."""
    if setting not in SETTINGS:
        raise FlavourError(f"FLEETWATCH_DATABASE_FLAVOUR must be one of {', '.join(SETTINGS)}")
    if facts.migrated_as is not None:
        if setting != "auto" and setting != facts.migrated_as:
            raise FlavourError(
                f"this database was migrated as {facts.migrated_as}; the flavour of a "
                f"database cannot change (FLEETWATCH_DATABASE_FLAVOUR={setting})"
            )
        return Choice(facts.migrated_as)
    if setting == "postgres":
        return Choice("postgres")
    if facts.created or facts.loadable:
        return Choice("timescaledb")
    if not facts.available:
        if setting == "timescaledb":
            raise FlavourError("the timescaledb extension is not available on this server")
        return Choice("postgres")
    why = facts.refusal or "creating the extension failed"
    if setting == "timescaledb":
        raise FlavourError(f"{PRELOAD_FIX} ({why})")
    return Choice(
        "postgres",
        f"{PRELOAD_FIX}; migrating as plain PostgreSQL for now ({why}). A database migrated "
        "as plain PostgreSQL stays so: set FLEETWATCH_DATABASE_FLAVOUR=timescaledb to stop "
        "instead.",
    )


_FACTS = """
SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'),
       EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')
"""
_MIGRATED_AS = "SELECT flavour FROM schema_migrations ORDER BY version LIMIT 1"


def read_facts(conn: psycopg.Connection, probed: tuple[bool, str | None] | None = None) -> Facts:
    """The server's answers (and a probe's, if one was made)."""
    available, created = conn.execute(_FACTS).fetchone()
    migrated_as = None
    if conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()[0]:
        row = conn.execute(_MIGRATED_AS).fetchone()
        migrated_as = row[0] if row else None
    loadable, refusal = probed if probed is not None else (None, None)
    return Facts(migrated_as, available, created, loadable, refusal)


def needs_probe(facts: Facts, setting: str) -> bool:
    """Whether the choice depends on trying to create the extension."""
    return (
        facts.migrated_as is None
        and facts.available
        and not facts.created
        and setting != "postgres"
    )


def probe_extension(dsn: str) -> tuple[bool, str | None]:
    """Try to create the extension on a connection of its own: (worked, the refusal)."""
    try:
        with psycopg.connect(dsn, autocommit=True, application_name="fleetwatch") as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    except psycopg.Error as exc:
        return False, str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return True, None


def probe_if_needed(
    dsn: str, setting: str, probe: Callable[[str], tuple[bool, str | None]] = probe_extension
) -> tuple[bool, str | None] | None:
    """Look (one short connection), and try the extension where the choice depends on it.
    Run before the migrating connection is opened."""
    with psycopg.connect(dsn, autocommit=True, application_name="fleetwatch") as conn:
        facts = read_facts(conn)
    return probe(dsn) if needs_probe(facts, setting) else None


def decide(
    conn: psycopg.Connection, setting: str, probed: tuple[bool, str | None] | None
) -> Choice:
    """Choose on the migrating connection (under the migration lock) and log the note."""
    choice = choose_flavour(setting, read_facts(conn, probed))
    if choice.note:
        log.warning("database flavour: %s", choice.note)
    return choice
