"""The offline deadline: the pure rule, and the rule held against the SQL that stores it.

The ingest computes `device_state.overdue_at` in SQL (ingest/writer.py) and the registry
the never-seen deadline of a new device (devices/registry.py); `contract.deadline` says
the same in Python. If either side changes alone, these tests fail.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from support import make_device

from contract.deadline import allowed_silence, offline_deadline
from contract.messages import Heartbeat, heartbeat_payload, parse_message
from contract.topics import heartbeat_topic
from ingest.writer import write_batch

T0 = datetime(2026, 11, 25, 14, 0, tzinfo=UTC)
S = timedelta(seconds=1)
THERMOSTAT = {"heartbeat_interval_s": 60, "allowed_misses": 3, "grace_s": 60}  # 240 s

# (what, ts, received_at, offline_after_s, expected deadline): the pure rule.
PURE = [
    ("on time", T0, T0, None, T0 + 240 * S),
    ("device clock behind counts", T0 - 30 * S, T0, None, T0 + 210 * S),
    ("device clock ahead cannot postpone", T0 + 120 * S, T0, None, T0 + 240 * S),
    ("own offline_after_s overrides the model", T0, T0, 900, T0 + 900 * S),
    ("own offline_after_s, clock ahead", T0 + 60 * S, T0, 45, T0 + 45 * S),
]


@pytest.mark.parametrize(("what", "ts", "received_at", "own", "expected"), PURE)
def test_offline_deadline_counts_from_the_earlier_time(what, ts, received_at, own, expected):
    deadline = offline_deadline(ts=ts, received_at=received_at, offline_after_s=own, **THERMOSTAT)
    assert deadline == expected, what


def test_allowed_silence_is_misses_times_interval_plus_grace_unless_the_device_says():
    assert allowed_silence(heartbeat_interval_s=300, allowed_misses=2, grace_s=300) == 900 * S
    assert allowed_silence(**THERMOSTAT, offline_after_s=30) == 30 * S


# -- held against the SQL ------------------------------------------------------------------

# Heartbeats are partitioned by day, a few days around today: stay near the clock.
NOW = datetime.now(UTC).replace(microsecond=0)

# (device, model, offline_after_s, device clock minus receipt or None for no `ts`,
#  whether the stored time is the receipt's). Every default model, both directions of a
# device clock, a heartbeat without `ts`, clocks so wrong the ingest replaces them, and
# devices with a deadline of their own.
CASES = [
    ("on-time", "thermostat-v2", None, timedelta(0), False),
    ("clock-ahead", "thermostat-v2", None, timedelta(minutes=4), False),
    ("clock-behind", "alarm-panel-v3", None, -timedelta(seconds=50), False),
    ("backlog", "camera-v1", None, -timedelta(hours=3), False),
    ("no-ts", "alarm-panel-v3", None, None, True),
    ("skewed-ahead", "ev-charger-v1", None, timedelta(hours=2), True),
    ("skewed-behind", "car-telematics-v1", None, -timedelta(days=30), True),
    ("own-deadline", "thermostat-v2", 900, -timedelta(seconds=30), False),
    ("own-deadline-ahead", "car-telematics-v1", 45, timedelta(minutes=1), False),
]


def received(seq: int, device_id: str, clock: timedelta | None, at: datetime) -> Heartbeat:
    """A heartbeat as the ingest makes it of what the device sent and when it arrived."""
    ts = None if clock is None else at + clock
    payload = heartbeat_payload(seq=seq, ts=ts, fw="1.0.0", uptime_s=seq)
    record = parse_message(
        heartbeat_topic("fleet", device_id), payload, prefix="fleet", received_at=at
    )
    assert isinstance(record, Heartbeat), record
    return record


def deadline_of(conn, heartbeat: Heartbeat) -> datetime:
    """offline_deadline for `heartbeat`, from its device's and model's registered values."""
    interval, misses, grace, own = conn.execute(
        "SELECT m.heartbeat_interval_s, m.allowed_misses, m.grace_s, d.offline_after_s "
        "FROM devices d JOIN device_models m ON m.id = d.model_id WHERE d.id = %s",
        (heartbeat.device_id,),
    ).fetchone()
    return offline_deadline(
        ts=heartbeat.ts,
        received_at=heartbeat.received_at,
        heartbeat_interval_s=interval,
        allowed_misses=misses,
        grace_s=grace,
        offline_after_s=own,
    )


def stored_deadlines(conn) -> dict[str, datetime]:
    return dict(conn.execute("SELECT device_id, overdue_at FROM device_state").fetchall())


def test_stored_overdue_at_is_offline_deadline_for_every_case(conn):
    beats = []
    for n, (device_id, model, own, clock, from_receipt) in enumerate(CASES):
        make_device(conn, device_id, model_id=model, offline_after_s=own)
        beat = received(1, device_id, clock, NOW - n * S)  # each received at its own moment
        assert beat.ts_from_receipt is from_receipt, device_id
        beats.append(beat)

    result = write_batch(conn, beats, [], [])

    assert result.stored == len(CASES)
    expected = {beat.device_id: deadline_of(conn, beat) for beat in beats}
    assert stored_deadlines(conn) == expected


def test_the_newest_heartbeat_sets_the_deadline_and_a_late_older_one_does_not_move_it(conn):
    make_device(conn, "dev-1", model_id="camera-v1")
    make_device(conn, "dev-2", model_id="alarm-panel-v3", offline_after_s=600)
    older = [received(1, d, -timedelta(minutes=2), NOW - 10 * S) for d in ("dev-1", "dev-2")]
    newer = [received(2, d, -timedelta(seconds=5), NOW) for d in ("dev-1", "dev-2")]

    write_batch(conn, [older[0], newer[0]], [], [])  # both in one batch
    write_batch(conn, [newer[1]], [], [])
    write_batch(conn, [older[1]], [], [])  # a late one from a backlog

    assert stored_deadlines(conn) == {b.device_id: deadline_of(conn, b) for b in newer}


def test_a_new_device_is_never_seen_after_its_allowed_silence_from_provisioning(conn):
    cases = {"fresh-panel": ("alarm-panel-v3", None), "fresh-car": ("car-telematics-v1", 120)}
    for device_id, (model, own) in cases.items():
        make_device(conn, device_id, model_id=model, offline_after_s=own)
    rows = conn.execute(
        "SELECT d.id, d.provisioned_at, st.overdue_at, m.heartbeat_interval_s, "
        "m.allowed_misses, m.grace_s, d.offline_after_s FROM devices d "
        "JOIN device_models m ON m.id = d.model_id JOIN device_state st ON st.device_id = d.id"
    ).fetchall()
    assert len(rows) == len(cases)
    for device_id, provisioned, overdue, interval, misses, grace, own in rows:
        silence = allowed_silence(
            heartbeat_interval_s=interval, allowed_misses=misses, grace_s=grace, offline_after_s=own
        )
        assert overdue == provisioned + silence, device_id
