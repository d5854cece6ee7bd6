"""The rollup against a real PostgreSQL: heartbeats in, device-days and daily rows out, and
the release-health figures read from them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from support import make_device

from releases.health import read_daily, release_health
from releases.rollup import _ROLLUP_LOCK, SETTLE, roll_up

INTERVAL = 600  # the test model's heartbeat interval: 144 a day
TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
START = TODAY - timedelta(days=2)

# Heartbeats of `devices` every INTERVAL from START for `days`, on `fw`; a device reboots at
# heartbeat n when a hash of (device, n) falls under `per_mille` (deterministic, "random").
_HEARTBEATS = """
WITH beats AS (
    SELECT d AS device_id, n, %(fw)s AS fw,
           (n > 0 AND abs(hashtext(d || ':' || n)) %% 1000 < %(per_mille)s) AS reboot
    FROM unnest(%(devices)s::text[]) AS d, generate_series(0, %(beats)s - 1) AS n
),
booted AS (
    SELECT *, max(n) FILTER (WHERE reboot OR n = 0)
                  OVER (PARTITION BY device_id ORDER BY n) AS boot
    FROM beats
)
INSERT INTO heartbeats (device_id, ts, seq, received_at, fw, uptime_s, metrics)
SELECT device_id, %(start)s + n * interval '600 seconds', n + %(seq)s,
       %(start)s + n * interval '600 seconds', fw, (n - boot) * 600 + 30,
       jsonb_build_object('battery_pct', 100 - n %% 100 * 0.5)
FROM booted
"""


@pytest.fixture
def model(conn):
    conn.execute(
        "INSERT INTO device_models (id, name, device_type, kind, heartbeat_interval_s, "
        "allowed_misses, grace_s) VALUES ('rh-test', 'RH', 'sensor', 'home', %s, 3, 60)",
        (INTERVAL,),
    )
    return "rh-test"


def fleet(conn, model, prefix, n):
    ids = [f"{prefix}-{i:03d}" for i in range(n)]
    for device_id in ids:
        make_device(conn, device_id, model_id=model, customer_id=None)
    return ids


def beat(conn, devices, fw, per_mille, *, start=START, days=2, seq=0):
    conn.execute(
        _HEARTBEATS,
        {
            "devices": devices,
            "fw": fw,
            "per_mille": per_mille,
            "beats": days * 144,
            "start": start,
            "seq": seq,
        },
    )


def roll_all(conn, now):
    steps = 0
    while True:
        result = roll_up(conn, now)
        steps += 1
        if not result.more:
            return steps


def test_twice_the_reboots_reads_near_two_and_equal_reads_near_one(conn, model):
    a, b, same = (
        fleet(conn, model, "a", 150),
        fleet(conn, model, "b", 150),
        fleet(conn, model, "c", 150),
    )
    beat(conn, a, "1.0.0", 7)  # about one reboot a day
    beat(conn, b, "1.1.0", 14)  # about two
    beat(conn, same, "1.2.0", 14)  # as many as 1.1.0
    roll_all(conn, TODAY + SETTLE + timedelta(minutes=1))
    versions = {
        v.firmware: v for v in release_health(read_daily(conn, model, START.date(), TODAY.date()))
    }
    assert versions["1.0.0"].device_days == 300
    reboots = {fw: next(x for x in v.vitals if x.name == "reboots") for fw, v in versions.items()}
    worse = reboots["1.1.0"].ratio
    assert 1.6 < worse.estimate < 2.4 and worse.low > 1.0, worse
    assert reboots["1.1.0"].verdict == "worse"
    equal = reboots["1.2.0"].ratio
    assert versions["1.2.0"].baseline == "1.1.0"
    assert equal.low < 1.0 < equal.high, equal
    # Every heartbeat came when due, and none was missed.
    heartbeats = next(x for x in versions["1.0.0"].vitals if x.name == "heartbeats")
    assert heartbeats.rate == pytest.approx(1.0)


def test_an_update_reboot_is_not_unexpected_and_silence_is_offline_minutes(conn, model):
    (device,) = fleet(conn, model, "u", 1)
    # Day 1 on 1.0.0 without reboots; then 1.1.0 from a fresh boot (the update's reboot).
    beat(conn, [device], "1.0.0", 0, days=1)
    beat(conn, [device], "1.1.0", 0, start=START + timedelta(days=1), days=1, seq=1000)
    # Two hours of silence on day 2: twelve heartbeats gone.
    conn.execute(
        "DELETE FROM heartbeats WHERE device_id = %s AND ts > %s AND ts < %s",
        (device, START + timedelta(days=1, hours=10), START + timedelta(days=1, hours=12)),
    )
    roll_all(conn, TODAY + SETTLE + timedelta(minutes=1))
    rows = conn.execute(
        "SELECT firmware, heartbeats, expected, reboots, update_reboots, offline_s, "
        "battery_samples FROM release_device_days WHERE device_id = %s ORDER BY day",
        (device,),
    ).fetchall()
    # The gap: 10:00 to 12:00 is 7200 s, past the threshold of 600 * 3 + 60 = 1860 s.
    assert rows == [
        ("1.0.0", 144, 144, 0, 0, 0.0, 144),
        ("1.1.0", 144 - 11, 144, 0, 1, 7200 - 1860.0, 133),
    ]
    daily = conn.execute(
        "SELECT firmware, device_days, reboots, update_reboots, battery_days FROM release_daily "
        "WHERE model_id = %s ORDER BY day",
        (model,),
    ).fetchall()
    assert daily == [("1.0.0", 1, 0, 0, 1), ("1.1.0", 1, 0, 1, 1)]


def test_the_rollup_waits_for_the_ingests_and_never_counts_twice(conn, model):
    devices = fleet(conn, model, "w", 3)
    beat(conn, devices, "1.0.0", 0, days=1)
    now = START + timedelta(days=1) + SETTLE + timedelta(minutes=1)
    # The ingest has provably read the broker up to noon of day 1 only.
    conn.execute(
        "INSERT INTO ingest_status (client_id, last_message_at, updated_at, caught_up_at) "
        "VALUES ('i', %s, %s, %s)",
        (now, now, START + timedelta(hours=12)),
    )
    roll_all(conn, now)
    first = conn.execute("SELECT sum(heartbeats) FROM release_device_days").fetchone()[0]
    # Up to noon less the settling time: 00:00 to 11:50; the one at noon waits.
    assert first == 3 * 72
    conn.execute("UPDATE ingest_status SET caught_up_at = %s", (now,))
    roll_all(conn, now)
    roll_all(conn, now)  # nothing new: nothing added
    assert conn.execute("SELECT sum(heartbeats) FROM release_device_days").fetchone()[0] == 3 * 144
    assert conn.execute("SELECT sum(device_days) FROM release_daily").fetchone()[0] == 3


def test_incidents_are_charged_to_the_firmware_the_device_ran(conn, model):
    (device,) = fleet(conn, model, "i", 1)
    beat(conn, [device], "2.0.0", 0, days=1)
    conn.execute(
        "INSERT INTO incidents (scope, device_id, kind, severity, opened_at, summary) "
        "VALUES ('device', %s, 'battery_low', 'warning', %s, 'x')",
        (device, START + timedelta(hours=5)),
    )
    roll_all(conn, TODAY + SETTLE + timedelta(minutes=1))
    assert conn.execute(
        "SELECT incidents FROM release_daily WHERE model_id = %s", (model,)
    ).fetchone()[0] == {"battery_low": 1}


def test_two_monitors_never_roll_the_same_step_twice(conn, model, dsn):
    devices = fleet(conn, model, "t", 2)
    beat(conn, devices, "1.0.0", 0, days=1)
    now = START + timedelta(days=1) + SETTLE + timedelta(minutes=1)
    with psycopg.connect(dsn, autocommit=True) as other, other.transaction():
        # The other monitor is in the middle of a step: this one skips its run.
        assert other.execute("SELECT pg_try_advisory_xact_lock(%s)", (_ROLLUP_LOCK,)).fetchone()[0]
        skipped = roll_up(conn, now)
        assert (skipped.heartbeats, skipped.more, skipped.rolled_to) == (0, False, None)
    roll_all(conn, now)
    assert conn.execute("SELECT sum(heartbeats) FROM release_device_days").fetchone()[0] == 2 * 144
