"""deploy/prometheus: the alerting rules are valid, each fires on the series it should and
not on those just short of it (promtool), and they read only metrics /metrics serves."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from metric_names import names_in, scraped_names, timescaledb_names

from ingest.writer import WriteResult, record_progress

PROMETHEUS = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
RULES = PROMETHEUS / "fleetwatch-rules.yml"
RULE_TESTS = PROMETHEUS / "fleetwatch-rules.test.yml"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not installed (Debian: apt-get install prometheus); .ci/run installs it",
)


def alerts() -> list[dict]:
    return [
        rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]
    ]


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PROMTOOL, *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=60
    )


@needs_promtool
def test_promtool_finds_the_rules_valid():
    checked = promtool("check", "rules", RULES.name)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in checked.stdout


@needs_promtool
def test_every_alert_fires_and_stays_quiet_as_its_unit_tests_say():
    tested = promtool("test", "rules", RULE_TESTS.name)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_says_how_urgent_it_is_and_what_to_check():
    for alert in alerts():
        assert alert["labels"]["severity"] in ("page", "ticket"), alert["alert"]
        for key in ("summary", "description", "runbook"):
            assert alert["annotations"].get(key, "").strip(), (alert["alert"], key)


def test_every_alert_has_a_case_that_fires_and_one_that_does_not():
    cases = [
        check
        for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for check in test["alert_rule_test"]
    ]
    for alert in alerts():
        name = alert["alert"]
        mine = [c for c in cases if c["alertname"] == name]
        assert any(c["exp_alerts"] for c in mine), f"{name}: no case where it fires"
        assert any(not c["exp_alerts"] for c in mine), f"{name}: no case where it stays quiet"


def test_the_rules_read_only_metrics_that_metrics_serves(api, conn, keys):
    # An ingest with a watermark, so its labelled family has a sample to show.
    now = datetime.now(UTC)
    record_progress(
        conn, "ingest-a", now, messages=1, result=WriteResult(stored=1), caught_up_at=now
    )
    served = scraped_names(api, keys.staff) | timescaledb_names()
    used = {name for alert in alerts() for name in names_in(alert["expr"])}
    assert used, "no metric names found in the rules"
    assert used <= served, f"not served by /metrics: {sorted(used - served)}"
    # The served names are exact: a typo is not among them.
    assert "fleetwatch_delivery_failures_total" in served
    assert "fleetwatch_delivery_failure_total" not in served


def test_metric_names_are_read_out_of_expressions_whole():
    used = names_in(
        'rate(fleetwatch_delivery_failure_total[5m]) > 0 or fleetwatch_x_bucket{le="1"}'
    )
    assert used == {"fleetwatch_delivery_failure_total", "fleetwatch_x_bucket"}
