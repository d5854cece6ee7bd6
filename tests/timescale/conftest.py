"""Fixtures for tests that need TimescaleDB: a PGlite server started by `pglite_server`.

Skipped, with the reason, where node/npm are missing or the first npm install fails.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pglite_server import Unavailable, ensure_installed, running_server


@pytest.fixture(scope="module")
def pglite_dsn(tmp_path_factory) -> Iterator[str]:
    """The DSN of a fresh, empty in-memory TimescaleDB, one per test module.

    One connection at a time: open them with `pglite_server.pglite_connection`.
    """
    try:
        modules = ensure_installed()
    except Unavailable as exc:
        pytest.skip(f"TimescaleDB (PGlite) unavailable: {exc}")
    with running_server(modules, tmp_path_factory.mktemp("pglite") / "server.log") as dsn:
        yield dsn
