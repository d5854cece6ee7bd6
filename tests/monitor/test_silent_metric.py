"""Silent sensors: a named metric that stops arriving while heartbeats continue.

The pure decision (`evaluate_rule` on the `silent_metric` kind) table-driven, then through
the database tick by tick: it fires after its time, tells the owner, and clears when the
metric comes back.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from psycopg.types.json import Jsonb
from support import add_channel, make_device

from alerts.templates import render
from monitor.rules import RuleError, Sample, evaluate_rule, parse_rules
from monitor.service import Monitor

T = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)
SILENT_TEMP = {
    "name": "temp_sensor_silent",
    "kind": "silent_metric",
    "metric": "temp_c",
    "for_s": 900,
    "clear_readings": 2,
    "label": "temperature sensor",
}


def minutes(pattern: str) -> list[Sample]:
    """One heartbeat a minute, the last at T: 'x' carries temp_c, '.' does not, ' ' is
    no heartbeat at all."""
    n = len(pattern)
    return [
        Sample(T - (n - 1 - i) * MIN, 1000 + i, {"temp_c": 21.5} if c == "x" else {"rssi": -60})
        for i, c in enumerate(pattern)
        if c != " "
    ]


RULE = parse_rules([SILENT_TEMP])[0]

# (case, heartbeats, incident open, expected action)
ROWS = [
    ("arriving", "x" * 20, False, "hold"),
    ("gone 14 min of 15", "x" * 6 + "." * 14, False, "hold"),
    ("gone 15 min while beating", "x" * 5 + "." * 15, False, "fire"),
    ("never seen for the whole time", "." * 20, False, "fire"),
    ("heard from only lately", "." * 10, False, "hold"),
    ("the device itself went quiet", "x" * 4 + " " * 16, False, "hold"),
    ("one reading back: not yet", "." * 19 + "x", True, "hold"),
    ("two readings back in a row: clears", "." * 18 + "xx", True, "clear"),
    ("back, then gone again", "." * 17 + "xx.", True, "hold"),
    ("still silent", "." * 20, True, "hold"),
]


@pytest.mark.parametrize(("case", "pattern", "open_", "action"), ROWS, ids=[r[0] for r in ROWS])
def test_silent_metric_fires_after_its_time_while_beating_and_clears_when_back(
    case, pattern, open_, action
):
    verdict = evaluate_rule(RULE, minutes(pattern), open_=open_, now=T, interval_s=60)
    assert verdict.action == action, (case, verdict.reason)


def test_silent_metric_verdict_names_the_sensor_and_how_long():
    verdict = evaluate_rule(RULE, minutes("x" * 5 + "." * 25), open_=False, now=T, interval_s=60)
    assert verdict.action == "fire"
    assert verdict.facts["metric"] == "temperature sensor"
    assert verdict.facts["silent_s"] == 25 * 60
    assert verdict.reason == "no temp_c for 25 min while heartbeats continue"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({**SILENT_TEMP, "for_s": 0}, "for_s: Input should be greater than 0"),
        ({**SILENT_TEMP, "clear_readings": 0}, "clear_readings: Input should be greater than 0"),
        ({**SILENT_TEMP, "metric": "temp c"}, "metric: String should match pattern"),
        ({**SILENT_TEMP, "label": "{device_name}"}, "label: String should match pattern"),
        ({**SILENT_TEMP, "label": "x" * 65}, "label: String should have at most 64"),
    ],
)
def test_bad_silent_metric_rules_give_a_clear_error(data, message):
    with pytest.raises(RuleError, match="invalid health rules") as raised:
        parse_rules([data])
    assert message in str(raised.value)


def test_any_rule_name_uses_the_silent_sensor_message():
    assert RULE.notice_template == "device_metric_silent"


# -- through the database ------------------------------------------------------------------

# Heartbeats are partitioned by day, a few days around today: stay near the clock.
NOW = datetime.now(UTC).replace(microsecond=0)
_SEQ = itertools.count(1)


@pytest.fixture
def health(make_settings, dsn, route):
    """One health check at `now`, as a fresh monitor would, then the router."""

    def run(now):
        monitor = Monitor(make_settings(monitor_health_min_interval_s=0), dsn)
        try:
            result = monitor.check_health(now)
            route(now)
            return result
        finally:
            monitor.stop()

    return run


def beats(conn, device_id: str, first: int, last: int, **metrics) -> None:
    """Heartbeats each minute `first`..`last` from NOW, and the state the ingest keeps."""
    rows = [(NOW + m * MIN, metrics) for m in range(first, last + 1)]
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO heartbeats (device_id, ts, seq, received_at, uptime_s, metrics) "
            "VALUES (%s, %s, %s, %s, 1000, %s)",
            [(device_id, at, next(_SEQ), at, Jsonb(m)) for at, m in rows],
        )
    conn.execute(
        "UPDATE device_state SET "
        "status = CASE WHEN status = 'provisioned' THEN 'online' ELSE status END, "
        "last_received_at = %(t)s, last_seen_at = %(t)s, overdue_at = %(t)s + interval '1 hour' "
        "WHERE device_id = %(id)s",
        {"t": rows[-1][0], "id": device_id},
    )


def one(conn, sql: str, *params):
    return conn.execute(sql, params).fetchone()


def open_kinds(conn, device_id: str) -> set[str]:
    rows = conn.execute(
        "SELECT kind FROM incidents WHERE device_id = %s AND status <> 'resolved'", (device_id,)
    )
    return {kind for (kind,) in rows}


def status(conn, device_id: str) -> str:
    return one(conn, "SELECT status FROM device_state WHERE device_id = %s", device_id)[0]


def test_a_metric_that_stops_arriving_fires_after_its_time_and_clears_when_back(conn, health):
    make_device(conn, "th-1", name="Hall", serial="SN-9", customer_id="c1")
    conn.execute(
        "UPDATE device_models SET health_rules = %s WHERE id = 'thermostat-v2'",
        (Jsonb([SILENT_TEMP]),),
    )
    add_channel(conn, "c1", "json://127.0.0.1:9/owner")
    beats(conn, "th-1", -40, -20, temp_c=21.0, rssi_dbm=-60)
    beats(conn, "th-1", -19, -6, rssi_dbm=-60)  # the sensor goes quiet

    # Silent 14 minutes of the 15 it must last: nothing.
    assert health(NOW - 6 * MIN).opened == 0
    beats(conn, "th-1", -5, 0, rssi_dbm=-61)
    result = health(NOW)
    assert (result.opened, result.degraded, result.notifications) == (1, 1, 1)
    assert open_kinds(conn, "th-1") == {"temp_sensor_silent"}
    assert status(conn, "th-1") == "degraded"
    [(template, context)] = conn.execute(
        "SELECT template, context FROM notifications WHERE device_id = 'th-1'"
    ).fetchall()
    title, body = render(template, context)
    assert title == "Your thermostat Hall stopped reporting its temperature sensor"
    assert "is online, but its temperature sensor has not reported for 20 min" in body

    # One reading back of the two it takes: still open.
    beats(conn, "th-1", 1, 1, temp_c=21.2, rssi_dbm=-60)
    assert health(NOW + MIN).resolved == 0
    beats(conn, "th-1", 2, 2, temp_c=21.3, rssi_dbm=-60)
    result = health(NOW + 2 * MIN)
    assert (result.resolved, result.recovered) == (1, 1)
    assert open_kinds(conn, "th-1") == set() and status(conn, "th-1") == "online"
