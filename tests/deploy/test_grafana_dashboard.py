"""deploy/grafana/fleetwatch.json: every panel reads a datasource the importer chooses, every
PromQL expression names metrics /metrics serves, and every SQL query runs against the
migrated database (tables and columns exist), with Grafana's macros expanded as Grafana
expands them for plain PostgreSQL."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from metric_names import names_in, scraped_names, timescaledb_names

from ingest.writer import WriteResult, record_progress

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "fleetwatch.json"
DATASOURCES = {"${DS_PROMETHEUS}": "prometheus", "${DS_POSTGRES}": "grafana-postgresql-datasource"}
SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# The dashboard's time range, as Grafana passes it to a query.
FROM, TO = "'2025-01-01T00:00:00Z'", "'2025-01-01T06:00:00Z'"


def targets() -> list[tuple[str, dict]]:
    """(panel title, target) for every query of every panel, rows' panels included."""

    def walk(panels):
        for panel in panels:
            yield from ((panel["title"], t) for t in panel.get("targets", []))
            yield from walk(panel.get("panels", []))

    return list(walk(json.loads(DASHBOARD.read_text())["panels"]))


def of_type(kind: str) -> list[tuple[str, dict]]:
    return [(title, t) for title, t in targets() if DATASOURCES[t["datasource"]["uid"]] == kind]


def seconds(interval: str) -> int:
    number, unit = re.fullmatch(r"'?(\d+)([smhd])'?", interval.strip()).groups()
    return int(number) * SECONDS[unit]


def expand_macros(sql: str) -> str:
    """Grafana's PostgreSQL macros as it expands them without the TimescaleDB option (with
    it, $__timeGroup is time_bucket: same columns, same types)."""
    sql = re.sub(
        r"\$__timeGroupAlias\(\s*([\w.]+)\s*,\s*([^)]+)\)",
        lambda m: f'floor(extract(epoch from {m[1]})/{seconds(m[2])})*{seconds(m[2])} AS "time"',
        sql,
    )
    sql = re.sub(
        r"\$__timeGroup\(\s*([\w.]+)\s*,\s*([^)]+)\)",
        lambda m: f"floor(extract(epoch from {m[1]})/{seconds(m[2])})*{seconds(m[2])}",
        sql,
    )
    sql = re.sub(r"\$__timeFilter\(\s*([\w.]+)\s*\)", rf"\1 BETWEEN {FROM} AND {TO}", sql)
    sql = sql.replace("$__timeFrom()", FROM).replace("$__timeTo()", TO)
    assert "$" not in sql, f"a macro this test does not know: {sql}"
    return sql


def test_every_panel_reads_a_datasource_chosen_at_import():
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == variables["DS_POSTGRES"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    assert variables["DS_POSTGRES"]["query"] == "grafana-postgresql-datasource"
    for title, target in targets():
        assert target["datasource"]["uid"] in DATASOURCES, title
    assert of_type("prometheus") and of_type("grafana-postgresql-datasource")


def test_every_promql_expression_names_metrics_that_metrics_serves(api, conn, keys):
    now = datetime.now(UTC)
    record_progress(
        conn, "ingest-a", now, messages=1, result=WriteResult(stored=1), caught_up_at=now
    )
    served = scraped_names(api, keys.staff) | timescaledb_names()
    for title, target in of_type("prometheus"):
        used = names_in(target["expr"])
        assert used, f"{title}: no Fleetwatch metric in {target['expr']}"
        assert used <= served, f"{title}: not served by /metrics: {sorted(used - served)}"


@pytest.mark.parametrize(
    ("title", "target"), of_type("grafana-postgresql-datasource"), ids=lambda v: str(v)[:40]
)
def test_every_sql_query_runs_on_the_migrated_database(conn, title, target):
    sql = expand_macros(target["rawSql"])
    with conn.transaction():
        conn.execute("SET TRANSACTION READ ONLY")
        conn.execute("EXPLAIN " + sql)
        ran = conn.execute(sql)  # planned and run: every table, column and type exists
        columns = [column.name for column in ran.description]
        ran.fetchall()
    # Grafana draws a time series from the column named "time"; a table shows every column.
    if target["format"] == "time_series":
        assert "time" in columns, f"{title}: no time column in {columns}"
    else:
        assert target["format"] == "table" and columns, title


def test_a_query_on_a_missing_column_would_fail(conn):
    # The check above is only as good as its expansion: a misspelt column must not pass.
    with pytest.raises(Exception, match="does not exist"):
        conn.execute(
            "EXPLAIN "
            + expand_macros("SELECT count(*) FROM incidents WHERE $__timeFilter(opend_at)")
        )


@pytest.mark.parametrize(
    ("macro", "expanded"),
    [
        ("$__timeGroupAlias(bucket, '5m')", 'floor(extract(epoch from bucket)/300)*300 AS "time"'),
        ("$__timeGroup(a.at, 1h)", "floor(extract(epoch from a.at)/3600)*3600"),
        ("$__timeFilter(at)", f"at BETWEEN {FROM} AND {TO}"),
    ],
)
def test_grafana_macros_expand_as_grafana_does(macro, expanded):
    assert expand_macros(macro) == expanded
