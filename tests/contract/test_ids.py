"""The device-id pattern: Python's one constant and the migrations' CHECK say the same."""

from __future__ import annotations

import re

import pytest

from contract.ids import DEVICE_ID_PATTERN, is_device_id

# The tables whose ids the Python side checks with DEVICE_ID_PATTERN: devices, and device
# models (api/models.py, campaigns/targeting.py).
TABLES = ["devices", "device_models"]


def check_pattern(conn, table: str) -> str:
    """The pattern of the CHECK on `table.id`, as the database holds it after the migrations."""
    definitions = [
        d
        for (d,) in conn.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = %s::regclass AND contype = 'c'",
            (table,),
        )
    ]
    patterns = [m.group(1) for d in definitions if (m := re.search(r"\(id ~ '(.*)'::text\)", d))]
    assert len(patterns) == 1, definitions
    return patterns[0]


@pytest.mark.parametrize("table", TABLES)
def test_the_migrations_check_the_python_pattern(conn, table):
    assert check_pattern(conn, table) == DEVICE_ID_PATTERN


CANDIDATES = [
    "dev-1",
    "Sim_thermo.00001",
    "a",
    "d" * 64,
    "d" * 65,
    "",
    "dev 1",
    "dev/1",
    "dev+1",
    "dév-1",
    "dev-1\n",
    "\ndev-1",
]


def test_python_and_postgresql_agree_on_every_candidate(conn):
    pattern = check_pattern(conn, "devices")
    verdicts = {
        candidate: conn.execute("SELECT %s ~ %s", (candidate, pattern)).fetchone()[0]
        for candidate in CANDIDATES
    }
    assert {c: is_device_id(c) for c in CANDIDATES} == verdicts
    assert sum(verdicts.values()) == 4  # the first four
