"""Degraded health through the database: incidents, status, timeline and the owner's notice."""

import itertools
import logging
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg.types.json import Jsonb
from support import add_channel, count, make_device

from alerts.templates import render
from contract.messages import Heartbeat
from ingest.writer import write_batch
from monitor.health import _DUE, apply_health, evaluate_health, plan_health
from monitor.rules import parse_rules
from monitor.service import Monitor

# Heartbeats are partitioned by day, a few days around today: stay near the clock.
NOW = datetime.now(UTC).replace(microsecond=0)
MIN = timedelta(minutes=1)
_SEQ = itertools.count(1)


@pytest.fixture
def health(make_settings, dsn, route):
    """Run one health check at a given `now`, as a fresh monitor process would, and route
    the notices it recorded."""

    def run(now, **overrides):
        overrides.setdefault("monitor_health_min_interval_s", 0)
        monitor = Monitor(make_settings(**overrides), dsn)
        try:
            result = monitor.check_health(now)
            route(now)
            return result
        finally:
            monitor.stop()

    return run


def beats(conn, device_id: str, rows) -> None:
    """Store heartbeats (at, uptime_s, metrics), received when sent, and what the ingest
    keeps in device_state about the newest."""
    rows = list(rows)
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO heartbeats (device_id, ts, seq, received_at, uptime_s, metrics) "
            "VALUES (%s, %s, %s, %s, %s, %s)",
            [(device_id, at, next(_SEQ), at, up, Jsonb(m)) for at, up, m in rows],
        )
    conn.execute(
        "UPDATE device_state SET "
        "status = CASE WHEN status = 'provisioned' THEN 'online' ELSE status END, "
        "last_received_at = greatest(last_received_at, %(t)s), "
        "last_seen_at = greatest(last_seen_at, %(t)s), overdue_at = %(t)s + interval '1 hour' "
        "WHERE device_id = %(id)s",
        {"t": max(at for at, _, _ in rows), "id": device_id},
    )


def every_minute(first: int, last: int, **metrics):
    """Minutes `first`..`last` relative to NOW, one heartbeat each; uptime never restarts."""
    return [(NOW + m * MIN, 100_000 + 60 * m, metrics) for m in range(first, last + 1)]


def status(conn, device_id: str) -> str:
    return conn.execute(
        "SELECT status FROM device_state WHERE device_id = %s", (device_id,)
    ).fetchone()[0]


def open_kinds(conn, device_id: str) -> set[str]:
    return {
        k
        for (k,) in conn.execute(
            "SELECT kind FROM incidents WHERE device_id = %s AND status <> 'resolved'",
            (device_id,),
        )
    }


def timeline(conn, device_id: str) -> list[tuple[str, str, dict]]:
    return conn.execute(
        "SELECT i.kind, e.kind, e.detail FROM incident_events e "
        "JOIN incidents i ON i.id = e.incident_id WHERE i.device_id = %s ORDER BY e.id",
        (device_id,),
    ).fetchall()


def notices(conn, device_id: str) -> list[tuple[str, str, dict]]:
    return conn.execute(
        "SELECT template, severity, context FROM notifications WHERE device_id = %s ORDER BY id",
        (device_id,),
    ).fetchall()


def test_low_battery_degrades_the_device_tells_its_owner_and_clears_only_above_20(conn, health):
    make_device(conn, "cam-1", model_id="camera-v1", name="Porch", serial="SN-1", customer_id="c1")
    add_channel(conn, "c1", "json://127.0.0.1:9/owner")
    beats(conn, "cam-1", every_minute(-30, -11, battery_pct=40))
    beats(conn, "cam-1", every_minute(-10, -5, battery_pct=12))

    # Low for 5 minutes of the 10 it must last.
    assert health(NOW - 5 * MIN).opened == 0
    assert status(conn, "cam-1") == "online"

    beats(conn, "cam-1", every_minute(-4, 0, battery_pct=12))
    result = health(NOW)
    assert (result.opened, result.degraded, result.notifications) == (1, 1, 1)
    assert status(conn, "cam-1") == "degraded"
    assert open_kinds(conn, "cam-1") == {"low_battery"}
    [(kind, event, detail)] = timeline(conn, "cam-1")
    assert (kind, event, detail["value"]) == ("low_battery", "opened", 12)
    assert detail["reason"] == "battery_pct 12 below 15 for 10 min"

    [(template, severity, context)] = notices(conn, "cam-1")
    assert (template, severity) == ("device_low_battery", "warning")
    assert context["device_name"] == "Porch" and context["identity"] == "serial SN-1"
    title, body = render(template, context)
    assert title == "Your camera Porch battery is low (12%)"
    assert "Your camera Porch (Outdoor camera v1, serial SN-1) battery is at 12%" in body
    assert "below 15% for 10 min" in body and "Recharge or replace its battery" in body

    # 18 % is no longer low, but not yet recovered: the incident stays open.
    beats(conn, "cam-1", every_minute(1, 5, battery_pct=18))
    assert health(NOW + 5 * MIN).resolved == 0
    assert status(conn, "cam-1") == "degraded"

    beats(conn, "cam-1", every_minute(6, 6, battery_pct=21))
    result = health(NOW + 6 * MIN)
    assert (result.resolved, result.recovered) == (1, 1)
    assert status(conn, "cam-1") == "online"
    assert open_kinds(conn, "cam-1") == set()
    kind, event, detail = timeline(conn, "cam-1")[-1]
    assert (kind, event, detail["value"]) == ("low_battery", "resolved", 21)
    assert detail["reason"] == "battery_pct 21 above 20 for 0 s"
    # The owner hears when it fires, not when it clears.
    assert len(notices(conn, "cam-1")) == 1


def _drain(conn):
    # A car reports every 5 min; its battery fell 2 %/h for 4 h, to 42 %: empty in 21 h.
    rows = [
        (NOW - m * 5 * MIN, 50_000 + 300 * (48 - m), {"battery_pct": 42 + 2 * m * 5 / 60})
        for m in range(48, -1, -1)
    ]
    beats(conn, "dev-1", rows)


def _reboots(conn):
    # Heard from for 40 min; uptime starts again from 5 s at minutes -25, -15 and -5.
    uptime, rows = 10_000, []
    for m in range(-40, 1):
        uptime = 5 if m in (-25, -15, -5) else uptime + 60
        rows.append((NOW + m * MIN, uptime, {}))
    beats(conn, "dev-1", rows)


def _flaky(conn):
    # Heard from for 70 min; in the last hour every 4th heartbeat is missing: 15 of 60.
    beats(conn, "dev-1", [r for r in every_minute(-70, 0) if (r[0] - NOW) // MIN % 4 != 0])


def _hot(conn):
    beats(conn, "dev-1", every_minute(-10, -7, temp_c=21.0))
    beats(conn, "dev-1", every_minute(-6, 0, temp_c=52.0))


RULE_CASES = [
    # (model, heartbeats, incident kind, what the owner reads)
    (
        "car-telematics-v1",
        _drain,
        "battery_drain",
        "battery is at 42% and falling by about 2% an hour: at this rate it will run out "
        "in about 21 h",
    ),
    ("camera-v1", _reboots, "reboot_loop", "has restarted 3 times within 30 min"),
    (
        "camera-v1",
        _flaky,
        "flaky_link",
        "is online, but 25% of the check-ins we expected from it within 1 h did not arrive "
        "(45 of 60 did",
    ),
    ("thermostat-v2", _hot, "temperature", "reports 52 °C, above the 45 °C it is built for"),
]


@pytest.mark.parametrize(("model", "store", "kind", "text"), RULE_CASES)
def test_each_default_rule_opens_its_incident_and_tells_the_owner(
    conn, health, model, store, kind, text
):
    make_device(conn, "dev-1", model_id=model, name="Home", customer_id="c1")
    add_channel(conn, "c1", "json://127.0.0.1:9/owner")
    store(conn)

    result = health(NOW)
    assert open_kinds(conn, "dev-1") == {kind}
    assert (result.opened, result.degraded) == (1, 1)
    assert status(conn, "dev-1") == "degraded"
    [(_, event, detail)] = timeline(conn, "dev-1")
    assert event == "opened" and detail["reason"]
    [(template, _, context)] = notices(conn, "dev-1")
    assert template == f"device_{kind}"
    _, body = render(template, context)
    assert text in body, body
    assert "Home" in body


def test_default_models_carry_valid_rules_from_their_thresholds(conn):
    rules = {
        model: parse_rules(data)
        for model, data in conn.execute("SELECT id, health_rules FROM device_models")
    }
    common = ["temperature", "reboot_loop", "flaky_link"]
    battery = ["low_battery", "battery_drain", *common]
    assert {m: [r.name for r in rs] for m, rs in rules.items()} == {
        "thermostat-v2": battery,
        "alarm-panel-v3": battery,
        "camera-v1": battery,
        "ev-charger-v1": common,
        "car-telematics-v1": battery,
        # Migration 027's hub: connectivity only (its devices' health is their own).
        "hub-v1": [],
    }
    low = next(r for r in rules["alarm-panel-v3"] if r.name == "low_battery")
    assert (low.fire_below, low.clear_above, low.for_s) == (20, 25, 600)
    temperature = next(r for r in rules["car-telematics-v1"] if r.name == "temperature")
    assert (temperature.fire_below, temperature.fire_above) == (-30, 85)


def test_a_device_override_replaces_its_models_rules(conn, health):
    for device_id in ("th-model", "th-own", "th-none"):
        make_device(conn, device_id, model_id="thermostat-v2", customer_id="c1")
    own = [
        {
            "name": "low_battery",
            "kind": "threshold",
            "metric": "battery_pct",
            "fire_below": 13,
            "clear_above": 14,
        }
    ]
    conn.execute("UPDATE devices SET health_rules = %s WHERE id = 'th-own'", (Jsonb(own),))
    conn.execute("UPDATE devices SET health_rules = '[]' WHERE id = 'th-none'")
    for device_id in ("th-model", "th-own", "th-none"):
        beats(conn, device_id, every_minute(-4, 0, battery_pct=12))

    assert health(NOW).opened == 1
    # The model's rule wants 10 minutes; the device's own fires at once.
    assert open_kinds(conn, "th-model") == set()
    assert open_kinds(conn, "th-own") == {"low_battery"}
    assert open_kinds(conn, "th-none") == set()

    beats(conn, "th-model", every_minute(1, 6, battery_pct=12))
    beats(conn, "th-none", every_minute(1, 20, battery_pct=3))
    health(NOW + 20 * MIN)
    assert open_kinds(conn, "th-model") == {"low_battery"}
    assert open_kinds(conn, "th-none") == set()


def test_two_monitors_racing_open_and_resolve_each_incident_once(conn, dsn):
    make_device(conn, "cam-1", model_id="camera-v1", name="Porch", customer_id="c1")
    add_channel(conn, "c1", "json://127.0.0.1:9/owner")
    beats(conn, "cam-1", every_minute(-15, 0, battery_pct=12))

    with psycopg.connect(dsn, autocommit=True) as other:
        # Both read and decide before either writes: the worst interleaving.
        mine, theirs = plan_health(conn, NOW, limit=100), plan_health(other, NOW, limit=100)
        assert len(mine.fire) == len(theirs.fire) == 1
        first, second = apply_health(conn, mine), apply_health(other, theirs)
        assert (first.opened, first.degraded, first.notifications) == (1, 1, 1)
        assert (second.opened, second.degraded, second.notifications) == (0, 0, 0)
        assert count(conn, "SELECT count(*) FROM incidents") == 1
        assert count(conn, "SELECT count(*) FROM notices") == 1
        assert [e for _, e, _ in timeline(conn, "cam-1")] == ["opened"]
        assert status(conn, "cam-1") == "degraded"

        beats(conn, "cam-1", every_minute(1, 1, battery_pct=30))
        later = NOW + MIN
        mine, theirs = plan_health(conn, later, limit=100), plan_health(other, later, limit=100)
        first, second = apply_health(conn, mine), apply_health(other, theirs)
    assert (first.resolved, first.recovered) == (1, 1)
    assert (second.resolved, second.recovered) == (0, 0)
    assert [e for _, e, _ in timeline(conn, "cam-1")] == ["opened", "resolved"]
    assert status(conn, "cam-1") == "online"


def test_only_devices_heard_from_since_their_last_evaluation_are_due(conn, health):
    make_device(conn, "th-1", model_id="thermostat-v2", customer_id="c1")
    make_device(conn, "th-2", model_id="thermostat-v2", customer_id="c1")
    make_device(conn, "th-never", model_id="thermostat-v2", customer_id="c1")
    beats(conn, "th-1", every_minute(-3, 0, battery_pct=80))
    beats(conn, "th-2", every_minute(-3, 0, battery_pct=80))
    conn.execute("UPDATE device_state SET status = 'offline' WHERE device_id = 'th-2'")

    assert health(NOW).due == 1
    assert health(NOW).due == 0
    beats(conn, "th-1", every_minute(1, 1, battery_pct=80))
    assert health(NOW + MIN, monitor_health_min_interval_s=120).due == 1
    # Evaluated with the heartbeat of NOW + 1 min: not again before NOW + 3 min.
    beats(conn, "th-1", every_minute(2, 3, battery_pct=80))
    assert health(NOW + 3 * MIN, monitor_health_min_interval_s=120).due == 0
    beats(conn, "th-1", every_minute(4, 4, battery_pct=80))
    assert health(NOW + 4 * MIN, monitor_health_min_interval_s=120).due == 1


def test_the_due_devices_are_read_on_their_partial_index(conn):
    with conn.transaction():
        conn.execute("SET LOCAL enable_seqscan = off")
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + _DUE, {"limit": 10}))
    assert "device_state_health" in plan, plan


def test_the_ingests_write_makes_a_device_due(conn):
    make_device(conn, "th-1", model_id="thermostat-v2", customer_id="c1")
    heartbeat = Heartbeat("th-1", NOW, 1, NOW, "2.4.1", 100, '{"battery_pct": 80}')
    write_batch(conn, [heartbeat], [], [])
    assert evaluate_health(conn, NOW, limit=10).due == 1
    assert evaluate_health(conn, NOW, limit=10).due == 0
    later = NOW + MIN
    write_batch(conn, [Heartbeat("th-1", later, 2, later, None, 160, "{}")], [], [])
    assert evaluate_health(conn, later, limit=10).due == 1


def test_invalid_rules_are_logged_and_decide_nothing(conn, health, caplog):
    make_device(conn, "th-1", model_id="thermostat-v2", customer_id="c1")
    beats(conn, "th-1", every_minute(-15, 0, battery_pct=5))
    health(NOW)
    assert open_kinds(conn, "th-1") == {"low_battery"}

    bad = [{"name": "low_battery", "kind": "threshold", "metric": "battery_pct"}]
    conn.execute("UPDATE devices SET health_rules = %s WHERE id = 'th-1'", (Jsonb(bad),))
    beats(conn, "th-1", every_minute(1, 1, battery_pct=90))
    with caplog.at_level(logging.WARNING, logger="monitor.health"):
        result = health(NOW + MIN)
    assert (result.due, result.invalid, result.resolved) == (1, 1, 0)
    # Its open incident is not resolved by a rule list that cannot be read.
    assert open_kinds(conn, "th-1") == {"low_battery"}
    assert "th-1" in caplog.text and "set fire_below, fire_above or both" in caplog.text


def test_a_degraded_device_back_from_offline_is_degraded_again(conn, health):
    make_device(conn, "th-1", model_id="thermostat-v2", customer_id="c1")
    beats(conn, "th-1", every_minute(-15, 0, battery_pct=5))
    health(NOW)
    assert status(conn, "th-1") == "degraded"
    # The tick took it offline and, on its next heartbeat, back 'online'.
    conn.execute("UPDATE device_state SET status = 'online' WHERE device_id = 'th-1'")
    beats(conn, "th-1", every_minute(30, 30, battery_pct=5))
    assert health(NOW + 30 * MIN).degraded == 1
    assert status(conn, "th-1") == "degraded"
    assert count(conn, "SELECT count(*) FROM incidents") == 1
