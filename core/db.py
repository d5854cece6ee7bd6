"""Database connections and the numbered-migration runner.

Migrations are `NNN_name.sql` files applied in order, each once, inside one transaction.
A step that differs between plain PostgreSQL and TimescaleDB comes as a pair,
`NNN_name.postgres.sql` and `NNN_name.timescaledb.sql`; the flavour is chosen once, when
the first migration runs, by what the server can do and FLEETWATCH_DATABASE_FLAVOUR
(core/flavour.py), and kept from then on.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources

import psycopg
from psycopg import conninfo

from core import flavour as flavours
from core.settings import get_settings

log = logging.getLogger(__name__)

# Any constant shared by every process that migrates, so two at once take turns.
_MIGRATION_LOCK = 0x666C6565

_FILE_RE = re.compile(r"^(\d{3})_([a-z0-9_]+?)(?:\.(postgres|timescaledb))?\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


# Every statement is planned for its own parameters and the tables as they are now. A plan
# cached for a prepared statement is otherwise kept until the table is next analyzed: one
# made while `notifications` was nearly empty (a fresh install) scanned the whole table for
# every row of a 300,000-message recall an hour later (a claim took 20 s, not 0.1 s), while
# autovacuum had not yet come round to it. Planning each time costs well under a
# millisecond.
CUSTOM_PLANS = "-c plan_cache_mode=force_custom_plan"


def connect(dsn: str, *, server: dict[str, str] | None = None, **kwargs) -> psycopg.Connection:
    """Open a connection with the settings every Fleetwatch process uses, and `server`'s
    settings for this connection (name: value)."""
    options = conninfo.conninfo_to_dict(dsn).get("options") or ""
    if "plan_cache_mode" not in options:
        options = f"{options} {CUSTOM_PLANS}".strip()
    for name, value in (server or {}).items():
        options = f"{options} -c {name}={value}".strip()
    kwargs.setdefault("options", options)
    return psycopg.connect(dsn, application_name="fleetwatch", **kwargs)


class Connections:
    """One autocommit connection per job of a worker: its jobs run in parallel threads, and
    two transactions must never share a connection. A job's connection is opened on first
    use and dropped after a failure (the next run opens a fresh one)."""

    def __init__(self, dsn: str, *, server: dict[str, str] | None = None) -> None:
        self.dsn = dsn
        # Server settings for every connection (db.connect's `server`).
        self.server = server
        self._conns: dict[str, psycopg.Connection] = {}

    def get(self, job: str) -> psycopg.Connection:
        conn = self._conns.get(job)
        if conn is None or conn.closed:
            conn = self._conns[job] = connect(self.dsn, server=self.server, autocommit=True)
        return conn

    def drop(self, job: str | None = None) -> None:
        """Close one job's connection, or every one."""
        for name in [job] if job else list(self._conns):
            conn = self._conns.pop(name, None)
            if conn is not None:
                conn.close()


def db_now(conn: psycopg.Connection):
    """The database's clock: the one time every process's decisions are judged by."""
    return conn.execute("SELECT now()").fetchone()[0]


def load_migrations(flavour: str) -> list[Migration]:
    """The migrations for a flavour (`postgres` or `timescaledb`), in order."""
    chosen: dict[int, Migration] = {}
    for entry in resources.files("core.migrations").iterdir():
        match = _FILE_RE.match(entry.name)
        if not match:
            continue
        version, name, variant = int(match[1]), match[2], match[3]
        if variant not in (None, flavour):
            continue
        if version in chosen:
            raise RuntimeError(f"two migrations share number {version:03d}")
        chosen[version] = Migration(version, name, entry.read_text(encoding="utf-8"))
    return [chosen[v] for v in sorted(chosen)]


def migrate(
    dsn: str,
    *,
    flavour: str | None = None,
    migrations: list[Migration] | None = None,
    probe=None,
) -> list[str]:
    """Apply every migration not yet applied; return the names applied. Idempotent.

    `flavour` is FLEETWATCH_DATABASE_FLAVOUR (auto, postgres, timescaledb) unless given;
    core/flavour.py decides what it means on this server. A failed migration raises its own
    error: if it took the connection down, the lock went with the session and nothing else
    is tried on it. (`migrations` and `probe` are for tests.)
    """
    setting = flavour or get_settings().database_flavour
    kwargs = {"probe": probe} if probe is not None else {}
    probed = flavours.probe_if_needed(dsn, setting, **kwargs)
    applied: list[str] = []
    with connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK,))
        try:
            conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_migrations (
                       version    integer PRIMARY KEY,
                       name       text NOT NULL,
                       flavour    text NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            chosen = flavours.decide(conn, setting, probed).flavour
            done = {v for (v,) in conn.execute("SELECT version FROM schema_migrations")}
            for migration in migrations if migrations is not None else load_migrations(chosen):
                if migration.version in done:
                    continue
                with conn.transaction():
                    conn.execute(migration.sql)
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name, flavour) "
                        "VALUES (%s, %s, %s)",
                        (migration.version, migration.name, chosen),
                    )
                label = f"{migration.version:03d}_{migration.name}"
                log.info("migration applied: %s (%s)", label, chosen)
                applied.append(label)
        finally:
            _unlock(conn)
    return applied


def _unlock(conn: psycopg.Connection) -> None:
    """Release the migration lock, never hiding the error that got us here."""
    if conn.closed or conn.broken:
        return  # the session ended, and its lock with it
    try:
        conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK,))
    except psycopg.Error as exc:
        log.warning("migrations: could not release the migration lock: %s", exc)
