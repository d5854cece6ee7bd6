"""Contract 1.1: the announced sleep (`next_checkin_s`) and a model's active hours.

The parser's bound, the pure deadline (`contract.deadline.checkin_deadline`) tested with
plain datetimes across midnight and DST, and the same rule held against the SQL the ingest
stores it with (`overdue_at`, `expected_at`, `fleetwatch_next_active_start`).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta

import pytest
from support import make_device

import contract
from contract.deadline import checkin_deadline, next_active_start
from contract.messages import (
    MAX_NEXT_CHECKIN_S,
    Heartbeat,
    Rejection,
    heartbeat_body,
    heartbeat_payload,
    parse_message,
)
from contract.topics import heartbeat_topic
from ingest.writer import write_batch

T0 = datetime(2026, 11, 25, 14, 0, tzinfo=UTC)
S = timedelta(seconds=1)
H = timedelta(hours=1)
CAR = {"heartbeat_interval_s": 300, "allowed_misses": 3, "grace_s": 300}  # 1200 s


def parse(body: dict) -> Heartbeat | Rejection:
    return parse_message(
        "fleet/car-1/heartbeat", json.dumps(body).encode(), prefix="fleet", received_at=T0
    )


def test_contract_is_version_1_1():
    assert contract.VERSION == "1.1"


@pytest.mark.parametrize(
    ("value", "kept"),
    [(None, None), (1, 1), (6 * 3600, 6 * 3600), (MAX_NEXT_CHECKIN_S, MAX_NEXT_CHECKIN_S)],
)
def test_a_heartbeat_may_announce_its_sleep_and_a_version_1_one_still_parses(value, kept):
    record = parse(heartbeat_body(seq=1, next_checkin_s=value))
    assert isinstance(record, Heartbeat)
    assert record.next_checkin_s == kept


@pytest.mark.parametrize(
    "value", [0, -1, MAX_NEXT_CHECKIN_S + 1, 10**12, 3600.5, "3600", True, [3600]]
)
def test_an_absurd_sleep_is_rejected_saying_the_bound(value):
    record = parse({"seq": 1, "next_checkin_s": value})
    assert isinstance(record, Rejection)
    assert record.reason == "bad_next_checkin"
    assert "604800" in record.detail and "7 days" in record.detail


# -- the pure rule -------------------------------------------------------------------------

# (what, ts, next_checkin_s, expected overdue_at, expected expected_at)
SLEEP = [
    ("no announcement: version 1", T0, None, T0 + 1200 * S, None),
    ("6 h of sleep: wake-up plus grace", T0, 6 * 3600, T0 + 6 * H + 300 * S, T0 + 6 * H),
    ("a short announcement never shortens", T0, 60, T0 + 1200 * S, T0 + 60 * S),
    ("clock behind counts from device time", T0 - 30 * S, 3600, T0 + H + 270 * S, T0 + H - 30 * S),
    ("clock ahead cannot postpone", T0 + 60 * S, 3600, T0 + H + 300 * S, T0 + H),
]


@pytest.mark.parametrize(("what", "ts", "sleep", "overdue", "expected"), SLEEP)
def test_an_announced_sleep_extends_the_deadline_to_its_wake_up_plus_grace(
    what, ts, sleep, overdue, expected
):
    got = checkin_deadline(ts=ts, received_at=T0, next_checkin_s=sleep, **CAR)
    assert (got.overdue_at, got.expected_at) == (overdue, expected), what


BERLIN = "Europe/Berlin"
DAY = (time(6), time(23))  # switched off at night
NIGHT = (time(22), time(6))  # a night-shift device: across midnight


def berlin(y, mo, d, h, mi=0) -> datetime:
    """A Berlin wall-clock time, in UTC (unambiguous times only)."""
    from zoneinfo import ZoneInfo

    return datetime(y, mo, d, h, mi, tzinfo=ZoneInfo(BERLIN)).astimezone(UTC)


# (what, at, hours, expected next start): None when `at` is inside a window.
WINDOWS = [
    ("inside the day", berlin(2026, 11, 25, 12), DAY, None),
    ("late evening: next morning", berlin(2026, 11, 25, 23, 30), DAY, berlin(2026, 11, 26, 6)),
    ("after midnight: this morning", berlin(2026, 11, 26, 1), DAY, berlin(2026, 11, 26, 6)),
    ("at the end: outside", berlin(2026, 11, 25, 23), DAY, berlin(2026, 11, 26, 6)),
    ("at the start: inside", berlin(2026, 11, 26, 6), DAY, None),
    ("night window, after midnight", berlin(2026, 11, 26, 2), NIGHT, None),
    ("night window, before it", berlin(2026, 11, 26, 12), NIGHT, berlin(2026, 11, 26, 22)),
    # DST: Berlin springs forward on 29 Mar 2026 (02:00 -> 03:00) and falls back on 25 Oct.
    ("night before spring forward", berlin(2026, 3, 28, 23, 30), DAY, berlin(2026, 3, 29, 6)),
    ("night before fall back", berlin(2026, 10, 24, 23, 30), DAY, berlin(2026, 10, 25, 6)),
    ("night window over spring forward", berlin(2026, 3, 29, 4), NIGHT, None),
    ("night window over fall back", berlin(2026, 10, 25, 5, 30), NIGHT, None),
]


@pytest.mark.parametrize(("what", "at", "hours", "start"), WINDOWS)
def test_next_active_start_across_midnight_and_dst(what, at, hours, start):
    got = next_active_start(at, timezone=BERLIN, active_from=hours[0], active_until=hours[1])
    assert got == start, what


def test_the_window_follows_dst_in_utc():
    # 06:00 in Berlin is 05:00 UTC in winter and 04:00 UTC in summer.
    assert berlin(2026, 3, 29, 6) == datetime(2026, 3, 29, 4, tzinfo=UTC)
    assert berlin(2026, 3, 28, 6) == datetime(2026, 3, 28, 5, tzinfo=UTC)


def test_silence_outside_active_hours_moves_the_deadline_to_the_next_window_plus_grace():
    last = berlin(2026, 11, 25, 22, 55)  # normal deadline 23:15: outside 06:00-23:00
    got = checkin_deadline(
        ts=last, received_at=last, timezone=BERLIN, active_from=DAY[0], active_until=DAY[1], **CAR
    )
    assert got.overdue_at == berlin(2026, 11, 26, 6) + 300 * S
    assert got.expected_at == berlin(2026, 11, 26, 6)
    noon = berlin(2026, 11, 25, 12)  # inside: as without a schedule
    got = checkin_deadline(
        ts=noon, received_at=noon, timezone=BERLIN, active_from=DAY[0], active_until=DAY[1], **CAR
    )
    assert (got.overdue_at, got.expected_at) == (noon + 1200 * S, None)


# -- held against the SQL ------------------------------------------------------------------


@pytest.mark.parametrize(("what", "at", "hours", "start"), WINDOWS)
def test_the_sql_window_function_is_next_active_start(conn, what, at, hours, start):
    got = conn.execute(
        "SELECT fleetwatch_next_active_start(%s, %s, %s, %s)", (at, BERLIN, *hours)
    ).fetchone()[0]
    assert got == start, what


def test_the_sql_window_function_agrees_every_half_hour_for_a_year(conn):
    """Every half hour of 2026 in three zones, both kinds of window: one query."""
    cases = []
    for tz in (BERLIN, "America/New_York", "Australia/Sydney"):
        for hours in (DAY, NIGHT, (time(2, 30), time(7))):
            at = datetime(2026, 1, 1, tzinfo=UTC)
            while at.year == 2026:
                cases.append((at, tz, *hours))
                at += timedelta(minutes=30 if at.month in (3, 4, 10, 11) else 317)
    rows = conn.execute(
        "SELECT fleetwatch_next_active_start(a, tz, f, u) FROM unnest("
        "%s::timestamptz[], %s::text[], %s::time[], %s::time[]) AS t(a, tz, f, u)",
        [list(col) for col in zip(*cases, strict=True)],
    ).fetchall()
    for (at, tz, f, u), (got,) in zip(cases, rows, strict=True):
        assert got == next_active_start(at, timezone=tz, active_from=f, active_until=u), (at, tz)


NOW = datetime.now(UTC).replace(microsecond=0)


def test_stored_deadline_and_expected_check_in_are_checkin_deadline(conn):
    conn.execute(
        "UPDATE device_models SET active_from = '06:00', active_until = '23:00' "
        "WHERE id = 'thermostat-v2'"
    )
    cases = {  # device: (model, timezone, device clock minus receipt, next_checkin_s)
        "car-awake": ("car-telematics-v1", "UTC", timedelta(0), None),
        "car-asleep": ("car-telematics-v1", "Europe/Berlin", -30 * S, 6 * 3600),
        "car-short-nap": ("car-telematics-v1", "UTC", timedelta(0), 60),
        "car-week": ("car-telematics-v1", "UTC", 2 * timedelta(minutes=1), MAX_NEXT_CHECKIN_S),
        "thermo-tokyo": ("thermostat-v2", "Asia/Tokyo", timedelta(0), None),
        "thermo-ny": ("thermostat-v2", "America/New_York", timedelta(0), 3600),
        "thermo-berlin": ("thermostat-v2", BERLIN, -timedelta(seconds=5), 12 * 3600),
    }
    beats = []
    for n, (device_id, (model, tz, clock, sleep)) in enumerate(cases.items()):
        make_device(conn, device_id, model_id=model, timezone=tz)
        at = NOW - n * S
        payload = heartbeat_payload(seq=1, ts=at + clock, next_checkin_s=sleep)
        beat = parse_message(
            heartbeat_topic("fleet", device_id), payload, prefix="fleet", received_at=at
        )
        assert isinstance(beat, Heartbeat) and beat.next_checkin_s == sleep
        beats.append(beat)

    assert write_batch(conn, beats, [], []).stored == len(cases)

    models = {
        r[0]: r[1:]
        for r in conn.execute(
            "SELECT d.id, m.heartbeat_interval_s, m.allowed_misses, m.grace_s, d.offline_after_s, "
            "d.timezone, m.active_from, m.active_until "
            "FROM devices d JOIN device_models m ON m.id = d.model_id"
        )
    }
    stored = {
        r[0]: (r[1], r[2])
        for r in conn.execute("SELECT device_id, overdue_at, expected_at FROM device_state")
    }
    for beat in beats:
        interval, misses, grace, own, tz, start, end = models[beat.device_id]
        want = checkin_deadline(
            ts=beat.ts,
            received_at=beat.received_at,
            heartbeat_interval_s=interval,
            allowed_misses=misses,
            grace_s=grace,
            offline_after_s=own,
            next_checkin_s=beat.next_checkin_s,
            timezone=tz,
            active_from=start,
            active_until=end,
        )
        assert stored[beat.device_id] == (want.overdue_at, want.expected_at), beat.device_id
    assert stored["car-awake"][1] is None
    assert stored["car-asleep"][1] == beats[1].ts + 6 * H


def test_a_heartbeat_without_an_announcement_clears_the_expected_check_in(conn):
    make_device(conn, "car-1", model_id="car-telematics-v1")
    topic = heartbeat_topic("fleet", "car-1")
    asleep = parse_message(
        topic,
        heartbeat_payload(seq=1, ts=NOW - H, next_checkin_s=3600),
        prefix="fleet",
        received_at=NOW - H,
    )
    awake = parse_message(topic, heartbeat_payload(seq=2, ts=NOW), prefix="fleet", received_at=NOW)
    write_batch(conn, [asleep], [], [])
    assert conn.execute("SELECT expected_at FROM device_state").fetchone()[0] == NOW
    write_batch(conn, [awake], [], [])
    overdue, expected = conn.execute("SELECT overdue_at, expected_at FROM device_state").fetchone()
    assert expected is None and overdue == NOW + 900 * S  # the car model: 2 x 300 s + 300 s
