"""The code's shape, held by tests: one owner per table."""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The product's packages: everything a test or a benchmark is not.
PRODUCT = (
    "core",
    "contract",
    "fleetwatch",
    "incidents",
    "ingest",
    "monitor",
    "alerts",
    "api",
    "devices",
    "campaigns",
    "portal",
    "releases",
)
# Which package alone may write each table.
OWNERS = {
    "incidents": "incidents",
    "incident_events": "incidents",
    "notices": "alerts",
    "notifications": "alerts",
    "delivery_attempts": "alerts",
    "recall_links": "campaigns",
    "message_links": "portal",
    "message_link_subjects": "portal",
    "silences": "alerts",
    "worker_jobs": "core",
    "signin_links": "portal",
    "customer_sessions": "portal",
    "channel_codes": "portal",
    "sites": "devices",
    "release_rollup_state": "releases",
    "release_cursor": "releases",
    "release_device_days": "releases",
    "release_daily": "releases",
    "release_digests": "releases",
}
_WRITE = re.compile(
    r"\b(?:INSERT\s+INTO|DELETE\s+FROM|COPY|TRUNCATE)\s+(\w+)|\bUPDATE\s+(\w+)(?:\s+(?:AS\s+)?\w+)?\s+SET\b",
    re.IGNORECASE,
)


def writes_in(path: Path) -> set[str]:
    """Tables a module's string constants (its SQL) write."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            for match in _WRITE.finditer(node.value):
                found.add((match[1] or match[2]).lower())
    return found


def writers() -> dict[str, set[str]]:
    """{table: the product packages whose modules write it}."""
    by_table = defaultdict(set)
    for package in PRODUCT:
        for path in (ROOT / package).rglob("*.py"):
            for table in writes_in(path):
                by_table[table].add(f"{package}:{path.relative_to(ROOT)}")
    return by_table


def test_each_owned_table_is_written_by_its_package_alone():
    by_table = writers()
    strays = {
        table: sorted(w for w in by_table.get(table, ()) if w.split(":")[0] != owner)
        for table, owner in OWNERS.items()
    }
    assert {t: w for t, w in strays.items() if w} == {}
    # The check itself sees the owners' writes (a pattern that finds nothing proves nothing).
    assert all(by_table.get(table) for table in OWNERS), {t: by_table.get(t) for t in OWNERS}


def test_the_check_catches_a_stray_write(tmp_path):
    stray = tmp_path / "stray.py"
    stray.write_text(
        'SQL = """UPDATE incidents SET status = \'resolved\' WHERE id = %s"""\n'
        'MORE = "INSERT INTO incident_events (incident_id) VALUES (1)"\n'
        "READ = \"SELECT * FROM notifications WHERE status = 'pending'\"\n"
    )
    assert writes_in(stray) == {"incidents", "incident_events"}
