"""Metric names: those a real /metrics answer exposes, and those a PromQL expression reads.

Shared by the tests of deploy/prometheus's rules and deploy/grafana's dashboard, which must
name only metrics Fleetwatch serves.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from support import auth

from api.metrics import _timescaledb_metrics
from ingest.upkeep import JobState

# What a sample of each family type may be called beyond the family's own name.
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("_sum", "_count", "_created"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
}
METRIC_NAME = re.compile(r"\bfleetwatch_[A-Za-z0-9_]+")


def exposed_names(text: str) -> set[str]:
    """Every name a query may use against this exposition: families, their samples, and the
    suffixed names of each family's type (a family may have no sample at this moment)."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ()))
        names.update(sample.name for sample in family.samples)
    return names


def scraped_names(api, key: str) -> set[str]:
    """The names in the app's own /metrics answer (read with a staff key)."""
    answer = api.get("/metrics", headers=auth(key))
    assert answer.status_code == 200, answer.text
    return exposed_names(answer.text)


def timescaledb_names() -> set[str]:
    """The names /metrics adds on TimescaleDB only (the test database is plain PostgreSQL):
    what api/metrics.py yields for one job, exposed as /metrics would."""
    now = datetime(2025, 1, 1, tzinfo=UTC)
    job = JobState(
        job_id=1000,
        proc_name="policy_compression",
        target="heartbeats",
        schedule_interval=timedelta(hours=12),
        next_start=now,
        scheduler_ok_at=now,
        scheduler_failures=0,
    )

    class Jobs:
        def collect(self):
            return _timescaledb_metrics([job], now)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Jobs())
    return exposed_names(generate_latest(registry).decode())


def names_in(expr: str) -> set[str]:
    """The Fleetwatch metric names a PromQL expression reads."""
    return set(METRIC_NAME.findall(expr))
