"""Announced sleep through the ingest's writer and the monitor, tick by tick with `now`.

Two parked cars announce 6 h of sleep. Nothing is said about either for 6 h plus the
model's grace; the one that wakes stays online, the other goes offline at that moment and
its owner is told it did not wake up as expected, at the announced time in their own
local time.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from support import add_channel, count, make_device

from contract.messages import Heartbeat, heartbeat_payload, parse_message
from contract.topics import heartbeat_topic
from ingest.writer import record_progress, write_batch

# Heartbeats are partitioned by day, a few days around today: stay near the clock.
NOW = datetime.now(UTC).replace(microsecond=0)
S = timedelta(seconds=1)
H = timedelta(hours=1)
SLEEP_S = 6 * 3600
CAR_GRACE = 300 * S  # car-telematics-v1 (migration 003)


def beat(conn, device_id: str, seq: int, at: datetime, next_checkin_s: int | None = None):
    """What the ingest stores when `device_id`'s heartbeat arrives at `at`; the fleet's
    other devices keep the ingest receiving (the monitor is not blind)."""
    payload = heartbeat_payload(seq=seq, ts=at, next_checkin_s=next_checkin_s)
    record = parse_message(
        heartbeat_topic("fleet", device_id), payload, prefix="fleet", received_at=at
    )
    assert isinstance(record, Heartbeat)
    write_batch(conn, [record], [], [])


def receiving(conn, at: datetime) -> None:
    record_progress(conn, "test-ingest", at, caught_up_at=at)


def status(conn, device_id: str) -> str:
    return conn.execute(
        "SELECT status FROM device_state WHERE device_id = %s", (device_id,)
    ).fetchone()[0]


def test_a_sleeping_car_is_not_offline_and_one_that_does_not_wake_is_reported_once(
    conn, tick, make_dispatcher, http_sink
):
    for car in ("car-wakes", "car-sleeps-on"):
        make_device(
            conn,
            car,
            model_id="car-telematics-v1",
            name=car,
            customer_id="ann",
            timezone="Europe/Berlin",
        )
    conn.execute("UPDATE customers SET timezone = 'Europe/Berlin' WHERE id = 'ann'")
    add_channel(conn, "ann", http_sink.url("ann"))
    parked = NOW
    for car in ("car-wakes", "car-sleeps-on"):
        beat(conn, car, 1, parked, next_checkin_s=SLEEP_S)
    wake = parked + SLEEP_S * S
    dispatcher = make_dispatcher()

    # Tick through the night: every 30 min, then the last second before the deadline.
    moments = [parked + n * 30 * 60 * S for n in range(1, 13)] + [wake + CAR_GRACE - S]
    for at in moments:
        receiving(conn, at)
        if at > wake:
            continue
        assert tick(at).due == 0, at
    beat(conn, "car-wakes", 2, wake + 20 * S)  # it wakes on time
    receiving(conn, wake + CAR_GRACE - S)
    assert tick(wake + CAR_GRACE - S).due == 0
    assert count(conn, "SELECT count(*) FROM incidents") == 0

    receiving(conn, wake + CAR_GRACE)
    result = tick(wake + CAR_GRACE)
    assert dict(result.applied.changed) == {"offline": 1}
    assert (status(conn, "car-sleeps-on"), status(conn, "car-wakes")) == ("offline", "online")
    details = conn.execute(
        "SELECT details FROM incidents WHERE device_id = 'car-sleeps-on' AND kind = 'offline'"
    ).fetchone()[0]
    assert details["reason"] == "missed_checkin"
    assert datetime.fromisoformat(details["expected_at"]) == wake

    assert dispatcher.run_once(wake + CAR_GRACE) == 1
    # Later ticks change nothing and say nothing more.
    for seq, later in enumerate((wake + CAR_GRACE + 60 * S, wake + 2 * H), 3):
        beat(conn, "car-wakes", seq, later - 10 * S)  # driving: beating as usual
        receiving(conn, later)
        assert tick(later).due == 0
        dispatcher.run_once(later)
    sent = http_sink.by_path()["/ann"]
    assert len(sent) == 1
    title, body = sent[0]
    assert title == "Your car car-sleeps-on did not wake up as expected"
    local = wake.astimezone(ZoneInfo("Europe/Berlin"))
    assert f"did not wake up as expected at {local:%H:%M} on {local.day} {local:%b %Y}" in body
    assert "(Europe/Berlin)" in body


def test_a_device_switched_off_at_night_is_not_offline_until_its_day_begins(
    conn, tick, make_dispatcher, http_sink
):
    """A model active 06:00-23:00 in its devices' local time: the last heartbeat of the
    evening is followed by silence until the morning, and a device that does not come back
    by then (plus grace) is reported as not having woken up at 06:00."""
    tz = ZoneInfo("Asia/Tokyo")
    conn.execute(
        "UPDATE device_models SET active_from = '06:00', active_until = '23:00' "
        "WHERE id = 'ev-charger-v1'"
    )
    make_device(
        conn,
        "evc-1",
        model_id="ev-charger-v1",
        name="Garage",
        customer_id="bo",
        timezone="Asia/Tokyo",
    )
    conn.execute("UPDATE customers SET timezone = 'Asia/Tokyo' WHERE id = 'bo'")
    add_channel(conn, "bo", http_sink.url("bo"))
    # Its last heartbeat: 22:59 tonight (or last night, if that is nearer the clock).
    local_now = NOW.astimezone(tz)
    evening = datetime.combine(local_now.date(), time(22, 59), tzinfo=tz)
    if evening - NOW > 12 * H:
        evening -= 24 * H
    last = evening.astimezone(UTC)
    morning = datetime.combine(evening.date() + timedelta(days=1), time(6), tzinfo=tz)
    grace = count(conn, "SELECT grace_s FROM device_models WHERE id = 'ev-charger-v1'") * S
    beat(conn, "evc-1", 1, last)

    for at in (last + H, last + 4 * H, morning + grace - S):
        receiving(conn, at)
        assert tick(at).due == 0, at
    receiving(conn, morning + grace)
    assert dict(tick(morning + grace).applied.changed) == {"offline": 1}
    make_dispatcher().run_once(morning + grace)
    ((title, body),) = http_sink.by_path()["/bo"]
    assert title == "Your EV charger Garage did not wake up as expected"
    assert "did not wake up as expected at 06:00" in body and "(Asia/Tokyo)" in body
