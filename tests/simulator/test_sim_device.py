"""SimDevice as a pure state machine, driven with plain datetimes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest

from devices.simulator.device import DeviceSpec, Owner, SimDevice
from devices.simulator.profiles import PROFILES
from devices.simulator.scenarios import Link, make_fault

T0 = datetime(2026, 11, 25, 14, 0, tzinfo=UTC)
OWNER = Owner("cust-00001", "Anna Schmidt", "Europe/Berlin", "eu-central")


def make_device(
    model_id: str = "thermostat-v2", *, fault=None, seed: int = 1, time_scale: float = 1.0
) -> SimDevice:
    spec = DeviceSpec(
        device_id="sim-test-00001",
        profile=PROFILES[model_id],
        firmware="9.9.9",
        serial="TST-0001",
        name="Test device",
        owner=OWNER,
        seed=seed,
        fault=fault,
    )
    device = SimDevice(spec, time_scale=time_scale)
    device.start(T0)
    return device


def beats(device: SimDevice, until: datetime) -> list[tuple[datetime, dict]]:
    """Every heartbeat the device sends up to `until`, each at its due time."""
    sent = []
    while device.next_due is not None and device.next_due <= until:
        at = device.next_due
        sent.append((at, device.heartbeat(at)))
    return sent


def test_seq_increments_once_per_heartbeat_at_the_model_interval():
    sent = beats(make_device(), T0 + timedelta(minutes=30))
    assert [body["seq"] for _, body in sent] == list(range(1, len(sent) + 1))
    gaps = {b[0] - a[0] for a, b in pairwise(sent)}
    assert gaps == {timedelta(seconds=60)}
    assert 29 <= len(sent) <= 30


def test_heartbeat_body_follows_the_contract():
    device = make_device("thermostat-v2")
    at = device.next_due
    body = device.heartbeat(at)
    assert set(body) == {"ts", "seq", "fw", "uptime_s", "metrics"}
    assert body["ts"] == at.isoformat(timespec="milliseconds")
    assert body["ts"].endswith("+00:00")
    assert body["fw"] == "9.9.9"
    assert isinstance(body["uptime_s"], int)
    assert body["uptime_s"] > 0
    assert {"battery_pct", "temp_c", "rssi_dbm"} <= set(body["metrics"])
    assert all(isinstance(v, int | float) for v in body["metrics"].values())
    assert -110 <= body["metrics"]["rssi_dbm"] <= -30
    assert isinstance(body["metrics"]["rssi_dbm"], int)


def test_uptime_grows_with_time_between_heartbeats():
    sent = beats(make_device(), T0 + timedelta(minutes=10))
    uptimes = [body["uptime_s"] for _, body in sent]
    assert all(b - a in (59, 60, 61) for a, b in pairwise(uptimes))


def test_same_seed_gives_same_heartbeats_and_other_seed_differs():
    until = T0 + timedelta(minutes=10)
    first = beats(make_device(seed=7), until)
    again = beats(make_device(seed=7), until)
    other = beats(make_device(seed=8), until)
    assert first == again
    assert [b for _, b in first] != [b for _, b in other]


def test_silent_device_stops_at_its_start_time():
    device = make_device(fault=make_fault("silent", start_after_s=600))
    sent = beats(device, T0 + timedelta(hours=2))
    assert sent[-1][0] < T0 + timedelta(seconds=600)
    assert sent[-1][0] >= T0 + timedelta(seconds=540)
    assert device.next_due is None
    with pytest.raises(RuntimeError, match="silent"):
        device.heartbeat(T0 + timedelta(seconds=700))


def test_battery_drains_to_empty_then_device_goes_silent():
    fault = make_fault("battery_drain", start_after_s=300, duration_s=1800)
    device = make_device("camera-v1", fault=fault)
    sent = beats(device, T0 + timedelta(hours=3))
    draining = [(at, body["metrics"]["battery_pct"]) for at, body in sent]
    during = [pct for at, pct in draining if at >= T0 + timedelta(seconds=300)]
    assert during == sorted(during, reverse=True)
    assert during[0] > 30
    assert during[-1] < 5
    assert sent[-1][0] < T0 + timedelta(seconds=2100)
    assert device.next_due is None


def test_reboot_loop_resets_uptime_every_couple_of_minutes():
    device = make_device("alarm-panel-v3", fault=make_fault("reboot_loop", start_after_s=300))
    sent = beats(device, T0 + timedelta(minutes=20))
    before = [b["uptime_s"] for at, b in sent if at < T0 + timedelta(seconds=300)]
    after = [b["uptime_s"] for at, b in sent if at >= T0 + timedelta(seconds=300)]
    assert min(before) > 600  # had been up a while before the fault
    assert max(after) < 120
    resets = sum(1 for a, b in pairwise(after) if b < a)
    assert resets >= 6  # 15 minutes of a 2 minute loop


def test_clock_skew_puts_ts_years_off_from_the_true_time():
    device = make_device(fault=make_fault("clock_skew", start_after_s=120))
    for at, body in beats(device, T0 + timedelta(minutes=5)):
        skew = datetime.fromisoformat(body["ts"]) - at
        if at < T0 + timedelta(seconds=120):
            assert abs(skew) < timedelta(milliseconds=1)  # ts carries milliseconds only
        else:
            assert abs(skew) > timedelta(days=2 * 365)


def test_overheat_climbs_past_80_c_and_stays_there():
    fault = make_fault("overheat", start_after_s=60, duration_s=600)
    sent = beats(make_device(fault=fault), T0 + timedelta(minutes=20))
    temps = [(at, body["metrics"]["temp_c"]) for at, body in sent]
    assert all(t < 30 for at, t in temps if at < T0 + timedelta(seconds=60))
    assert all(t > 80 for at, t in temps if at >= T0 + timedelta(seconds=660))


def test_car_battery_charges_while_driving_and_drains_while_parked():
    device = make_device("car-telematics-v1", seed=3)
    sent = beats(device, T0 + timedelta(days=2))
    rises = falls = 0
    for (_, a), (_, b) in pairwise(sent):
        delta = b["metrics"]["battery_pct"] - a["metrics"]["battery_pct"]
        if a["metrics"]["speed_kmh"] > 0 and b["metrics"]["speed_kmh"] > 0 and delta > 0:
            rises += 1
        # Woken for a drive after a sleep: lower than when it parked.
        if "next_checkin_s" in a and delta < 0:
            falls += 1
    assert rises > 0
    assert falls > 0
    odometer = [body["metrics"]["odometer_km"] for _, body in sent]
    assert odometer == sorted(odometer)
    assert odometer[-1] > odometer[0]


def test_time_scale_shrinks_interval_and_fault_offsets():
    device = make_device(fault=make_fault("silent", start_after_s=600), time_scale=0.1)
    sent = beats(device, T0 + timedelta(minutes=5))
    gaps = {b[0] - a[0] for a, b in pairwise(sent)}
    assert gaps == {timedelta(seconds=6)}
    assert sent[-1][0] < T0 + timedelta(seconds=60)
    assert device.next_due is None


def test_late_caller_skips_missed_slots_instead_of_bunching():
    device = make_device()
    first = device.next_due
    device.heartbeat(first + timedelta(seconds=200))
    assert device.next_due == first + timedelta(seconds=240)


@pytest.mark.parametrize(
    ("scenario", "expected"),
    [
        ("power_loss", [(300, Link.ABRUPT_CLOSE)]),
        ("drop_no_will", [(300, Link.CLEAN_DISCONNECT)]),
        (
            "flapping",
            [(300, Link.ABRUPT_CLOSE), (345, Link.CONNECT), (480, Link.ABRUPT_CLOSE)],
        ),
        ("silent", []),
    ],
)
def test_faults_ask_for_connection_changes_at_their_times(scenario, expected):
    device = make_device(fault=make_fault(scenario, start_after_s=300))
    seen = []
    for seconds in range(0, 500, 5):
        change = device.take_link_change(T0 + timedelta(seconds=seconds))
        if change is not None:
            seen.append((seconds, change))
    assert seen == expected


def test_late_caller_gets_only_the_latest_connection_change():
    device = make_device(fault=make_fault("flapping", start_after_s=300))
    assert device.take_link_change(T0 + timedelta(seconds=350)) is Link.CONNECT
    assert device.next_link_change == (T0 + timedelta(seconds=480), Link.ABRUPT_CLOSE)


def test_heartbeat_needs_start_and_an_aware_now():
    spec = make_device().spec
    device = SimDevice(spec)
    with pytest.raises(RuntimeError, match="not started"):
        device.heartbeat(T0)
    with pytest.raises(ValueError, match="timezone-aware"):
        device.start(datetime(2026, 11, 25, 14, 0))  # naive: the point of the test


def test_device_id_outside_the_contract_is_refused():
    spec = make_device().spec
    with pytest.raises(ValueError, match="device id"):
        DeviceSpec(**{**spec.__dict__, "device_id": "has/slash"})


def test_a_parked_car_announces_its_sleep_and_wakes_for_its_next_drive():
    device = make_device("car-telematics-v1", seed=3)
    sent = beats(device, T0 + timedelta(days=2))
    naps = [(at, body) for at, body in sent if "next_checkin_s" in body]
    assert len(naps) >= 3  # two drives a day
    for at, body in naps:
        assert body["metrics"]["speed_kmh"] == 0
        wake = at + timedelta(seconds=body["next_checkin_s"])
        following = [a for a, _ in sent if a > at]
        if following:
            # Its next heartbeat is the wake-up, within the second the announcement rounds.
            assert timedelta(0) <= wake - following[0] < timedelta(seconds=1)
            assert next(b for a, b in sent if a > at)["metrics"]["speed_kmh"] > 0


def test_a_car_whose_sleep_announcement_did_not_go_out_stays_awake_and_announces_again():
    device = make_device("car-telematics-v1", seed=3)
    sent = beats(device, T0 + timedelta(days=1))
    at, body = next((a, b) for a, b in sent if "next_checkin_s" in b)
    wake = at + timedelta(seconds=body["next_checkin_s"])
    # Again, from scratch, up to that announcement: this time it finds no connection.
    device = make_device("car-telematics-v1", seed=3)
    beats(device, at - timedelta(seconds=1))
    assert "next_checkin_s" in device.heartbeat(at)
    device.announcement_undelivered(at)
    assert device.next_due == at + device.interval  # on its beat, not asleep
    again = device.next_due
    repeated = device.heartbeat(again)
    # The rest of the same sleep, to the same wake-up (within the second it rounds).
    assert timedelta(0) <= again + timedelta(seconds=repeated["next_checkin_s"]) - wake
    assert again + timedelta(seconds=repeated["next_checkin_s"]) - wake < timedelta(seconds=1)


def test_announced_sleep_is_in_wall_clock_seconds():
    device = make_device("car-telematics-v1", seed=3, time_scale=0.01)
    sent = beats(device, T0 + timedelta(days=1))
    n, (at, body) = next((n, (a, b)) for n, (a, b) in enumerate(sent) if "next_checkin_s" in b)
    assert 1 <= body["next_checkin_s"] <= 12 * 3600 * 0.01
    woke = sent[n + 1][0]
    assert (
        timedelta(0) <= at + timedelta(seconds=body["next_checkin_s"]) - woke < timedelta(seconds=1)
    )


def test_a_car_that_fails_to_wake_announces_its_sleep_and_goes_quiet():
    device = make_device(
        "car-telematics-v1", seed=3, fault=make_fault("fails_to_wake", start_after_s=0)
    )
    sent = beats(device, T0 + timedelta(days=3))
    assert "next_checkin_s" in sent[-1][1]
    assert sum("next_checkin_s" in b for _, b in sent) == 1
    assert device.next_due is None and device.asleep_for_good


def test_a_parked_car_with_a_parasitic_drain_stays_awake_reporting_the_fall_then_dies():
    fault = make_fault("parked_drain", start_after_s=0)
    device = make_device("car-telematics-v1", seed=3, fault=fault)
    sent = beats(device, T0 + timedelta(days=1))
    during = sent
    assert not any("next_checkin_s" in b for _, b in during)
    levels = [b["metrics"]["battery_pct"] for _, b in during]
    assert levels == sorted(levels, reverse=True) and levels[-1] < 5
    # Every 5 minutes through the 8 hours: enough points for the battery-drain rule.
    assert len(during) >= 90
    assert device.next_due is None  # it cannot start any more: silent


def test_the_battery_drain_rule_catches_a_parked_drain_before_the_car_dies():
    """The car model's default drain rule (migration 006) fed the simulator's heartbeats,
    as the monitor would at each: it fires hours before the last heartbeat."""
    from monitor.rules import Sample, evaluate_rule, parse_rules

    drain = parse_rules(
        [
            {
                "name": "battery_drain",
                "kind": "drain",
                "metric": "battery_pct",
                "horizon_s": 86400,
                "clear_horizon_s": 129600,
                "window_s": 14400,
                "min_points": 10,
            }
        ]
    )[0]
    device = make_device(
        "car-telematics-v1", seed=3, fault=make_fault("parked_drain", start_after_s=0)
    )
    sent = beats(device, T0 + timedelta(days=1))
    samples = [
        Sample(datetime.fromisoformat(b["ts"]), b["uptime_s"], b["metrics"]) for _, b in sent
    ]
    fired = next(
        s.ts
        for n, s in enumerate(samples, 1)
        if evaluate_rule(drain, samples[:n], open_=False, now=s.ts, interval_s=300).action == "fire"
    )
    assert samples[-1].ts - fired > timedelta(hours=4)
