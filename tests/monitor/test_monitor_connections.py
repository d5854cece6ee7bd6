"""The monitor's connections: the settings every process uses, JIT off, the DSN's own kept."""

import psycopg
from psycopg import conninfo

from core import db
from monitor.service import Monitor


def _show(conn, name: str) -> str:
    return conn.execute(f"SHOW {name}").fetchone()[0]


def test_the_monitor_plans_without_jit_and_keeps_the_dsns_own_options(dsn, make_settings):
    own = conninfo.make_conninfo(dsn, options="-c statement_timeout=12345")
    monitor = Monitor(make_settings(), own)
    try:
        for job in ("tick", "tick-beside", "review"):
            conn = monitor._conns.get(job)
            assert _show(conn, "jit") == "off"
            assert _show(conn, "plan_cache_mode") == "force_custom_plan"
            assert _show(conn, "statement_timeout") == "12345ms"
    finally:
        monitor.stop()
    # Only the monitor's: another process's connection plans as the server is set to.
    with psycopg.connect(dsn) as raw, db.connect(dsn) as other:
        assert _show(other, "jit") == _show(raw, "jit")
        assert _show(other, "plan_cache_mode") == "force_custom_plan"
