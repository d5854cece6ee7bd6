"""Simulated over-the-air updates: the pure plan (no broker), then devices on a real broker.

The broker tests use the broker of tests/conftest.py (FLEETWATCH_TEST_MQTT_URL, else the
embedded amqtt one) at TIME_SCALE, where a whole update takes about two seconds.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest
from support import mqtt_client, wait_until

from contract.commands import UpdateCommand
from contract.messages import ONLINE, OtaReport, parse_message, status_payload
from contract.topics import (
    HEARTBEAT,
    OTA,
    STATUS,
    DeviceTopic,
    command_topic,
    device_topic,
    every_device,
    parse_topic,
    status_topic,
)
from devices.simulator import ota
from devices.simulator.device import DeviceSpec, Owner, SimDevice
from devices.simulator.fleet import build_fleet
from devices.simulator.ota import (
    DEFAULT_RATES,
    OtaProfile,
    OtaRates,
    OtaUpdater,
    Outcome,
    load_ota_profile,
)
from devices.simulator.profiles import PROFILES
from devices.simulator.runner import Simulator
from devices.simulator.scenarios import Link, make_fault

T0 = datetime(2026, 11, 25, 14, 0, tzinfo=UTC)
OWNER = Owner("cust-00001", "Anna Schmidt", "Europe/Berlin", "eu-central")
SHA = "0123456789abcdef" * 4
NOTHING_FAILS = OtaProfile({("*", "*"): {}})
TIME_SCALE = 0.01
ONLINE_BYTES = status_payload(ONLINE)


def make_command(command_id: str = "c12-dev-001-1", version: str = "2.5.0") -> UpdateCommand:
    return UpdateCommand(
        command_id=command_id,
        campaign=12,
        version=version,
        url=f"https://updates.example.com/fw/{version}.bin",
        sha256=SHA,
        attempt=1,
    )


def make_device(model_id: str = "thermostat-v2", *, time_scale: float = 1.0) -> SimDevice:
    spec = DeviceSpec(
        device_id="sim-test-00001",
        profile=PROFILES[model_id],
        firmware="2.4.1",
        serial="TST-0001",
        name="Test device",
        owner=OWNER,
        seed=1,
    )
    device = SimDevice(spec, time_scale=time_scale)
    device.start(T0)
    return device


def states(plan) -> list[str]:
    return [m.state for m in plan.messages]


# -- the plan, without a broker -------------------------------------------------------------


def test_happy_path_reports_every_step_in_order_then_reboots_onto_the_new_firmware():
    plan = OtaUpdater(NOTHING_FAILS).receive(make_command(), make_device(), T0)

    assert plan.outcome is Outcome.UPDATED
    kinds = states(plan)
    assert kinds[0] == "accepted" and kinds[-2:] == ["installing", "rebooting"]
    assert set(kinds[1:-2]) == {"downloading"} and 2 <= len(kinds[1:-2]) <= 3
    progress = [m.progress for m in plan.messages if m.state == "downloading"]
    assert progress == sorted(set(progress)) and progress[-1] == 100 and progress[0] > 0
    times = [m.at for m in plan.messages]
    assert times[0] == T0 and all(a < b for a, b in pairwise(times))
    downloaded, installing, rebooting = times[-3], times[-2], times[-1]
    assert timedelta(seconds=30) <= downloaded - T0 <= timedelta(seconds=90)
    assert timedelta(seconds=20) <= rebooting - installing <= timedelta(seconds=60)
    assert plan.down_at == rebooting == plan.busy_until
    assert timedelta(seconds=20) <= plan.back_at - plan.down_at <= timedelta(seconds=60)
    assert plan.firmware_after == "2.5.0"


def test_messages_follow_the_contract():
    plan = OtaUpdater(NOTHING_FAILS).receive(make_command(), make_device(), T0)
    bodies = plan.bodies
    assert bodies[0] == {
        "command_id": "c12-dev-001-1",
        "campaign": 12,
        "state": "accepted",
        "ts": "2026-11-25T14:00:00.000+00:00",
    }
    for body in bodies:
        assert datetime.fromisoformat(body["ts"]).tzinfo is not None
        assert ("progress" in body) == (body["state"] == "downloading")
        assert "reason" not in body


def test_step_times_are_device_seconds_scaled_by_the_time_scale():
    full = OtaUpdater(NOTHING_FAILS).receive(make_command(), make_device(), T0)
    fast = OtaUpdater(NOTHING_FAILS).receive(make_command(), make_device(time_scale=0.01), T0)
    assert states(fast) == states(full)

    def offsets(plan) -> list[float]:
        return [(at - T0).total_seconds() for at in [m.at for m in plan.messages] + [plan.back_at]]

    assert offsets(fast) == pytest.approx([s / 100 for s in offsets(full)], abs=1e-5)
    assert offsets(full)[-1] > 100  # device seconds: at least 30 + 20 + 20


def test_the_same_device_and_command_plan_the_same_update_and_another_command_may_not():
    def plan(command_id: str):
        return OtaUpdater(NOTHING_FAILS).receive(make_command(command_id), make_device(), T0)

    assert plan("c1-x-1") == plan("c1-x-1")
    assert len({plan(f"c1-x-{n}").back_at for n in range(5)}) > 1


def test_a_repeated_command_id_yields_nothing_even_after_the_update():
    updater, device, command = OtaUpdater(NOTHING_FAILS), make_device(), make_command()
    first = updater.receive(command, device, T0)
    assert updater.receive(command, device, T0 + timedelta(seconds=5)) is None
    assert updater.receive(command, device, first.back_at + timedelta(hours=1)) is None


def test_a_new_command_while_an_update_runs_is_answered_failed_busy():
    updater, device = OtaUpdater(NOTHING_FAILS), make_device()
    running = updater.receive(make_command("c12-a-1"), device, T0)
    later = T0 + timedelta(seconds=10)
    busy = updater.receive(make_command("c13-a-1"), device, later)

    assert busy.outcome is Outcome.BUSY
    assert busy.bodies == [
        {
            "command_id": "c13-a-1",
            "campaign": 12,
            "state": "failed",
            "reason": "busy",
            "ts": later.isoformat(timespec="milliseconds"),
        }
    ]
    assert busy.down_at is None and busy.firmware_after == "2.4.1"
    assert updater.busy(later)  # the refusal did not end the running update
    after = updater.receive(make_command("c14-a-1"), device, running.down_at)
    assert states(after)[0] == "accepted"


def test_a_device_low_on_battery_refuses_at_once():
    device = make_device()
    device.battery_pct = ota.LOW_BATTERY_PCT - 1
    plan = OtaUpdater(NOTHING_FAILS).receive(make_command(), device, T0)
    assert [(m.state, m.reason, m.at) for m in plan.messages] == [("failed", "low_battery", T0)]
    assert plan.down_at is None


BRICK, ROLLBACK, DL = OtaRates(brick=1), OtaRates(rollback=1), OtaRates(download_failed=1)
LOOKUPS = (
    # (profile, model, version, expected)
    ({("thermostat-v2", "2.5.0"): BRICK, ("thermostat-v2", "*"): ROLLBACK}, "2.5.0", BRICK),
    ({("thermostat-v2", "*"): ROLLBACK, ("*", "2.5.0"): BRICK}, "2.5.0", ROLLBACK),
    ({("*", "2.5.0"): BRICK, ("*", "*"): DL}, "2.5.0", BRICK),
    ({("*", "2.5.0"): BRICK, ("*", "*"): DL}, "2.6.0", DL),
    ({("camera-v1", "2.5.0"): BRICK}, "2.5.0", DEFAULT_RATES),
    ({}, "2.5.0", DEFAULT_RATES),
)


@pytest.mark.parametrize(("rates", "version", "expected"), LOOKUPS)
def test_profile_lookup_takes_the_most_specific_key(rates, version, expected):
    assert OtaProfile(rates).rates_for("thermostat-v2", version) == expected


def test_profile_refuses_rates_that_cannot_be_chances():
    with pytest.raises(ValueError, match="between 0 and 1"):
        OtaProfile({("*", "*"): {"brick": 1.5}})
    with pytest.raises(ValueError, match="more than 1"):
        OtaProfile({("*", "*"): {"brick": 0.6, "rollback": 0.6}})
    with pytest.raises(ValueError, match="unknown rates"):
        OtaProfile({("*", "*"): {"brik": 0.3}})


def outcomes(profile: OtaProfile, n: int = 200, command_id: str = "c7-{}-1") -> list[Outcome]:
    """Each device of a fleet of n, sent one command."""
    found = []
    for device in build_fleet(n, seed=3, fault_share=0):
        device.start(T0)
        plan = OtaUpdater(profile).receive(
            make_command(command_id.format(device.device_id)), device, T0
        )
        found.append(plan.outcome)
    return found


def test_about_the_profiles_share_of_a_fleet_bricks_and_reruns_brick_the_same_devices():
    profile = OtaProfile({("*", "2.5.0"): {"brick": 0.3}})
    drawn = outcomes(profile)
    assert set(drawn) == {Outcome.BRICK, Outcome.UPDATED}
    assert 0.2 <= drawn.count(Outcome.BRICK) / len(drawn) <= 0.4
    assert outcomes(profile) == drawn
    assert outcomes(profile, command_id="c8-{}-1") != drawn


def test_by_default_about_one_download_in_a_hundred_fails_and_nothing_else():
    drawn = outcomes(OtaProfile(), n=2000)
    assert set(drawn) == {Outcome.UPDATED, Outcome.DOWNLOAD_FAILED}
    assert 5 <= drawn.count(Outcome.DOWNLOAD_FAILED) <= 40


def test_rollback_reboots_and_comes_back_on_the_old_firmware():
    profile = OtaProfile({("*", "*"): {"rollback": 1}})
    plan = OtaUpdater(profile).receive(make_command(), make_device(), T0)
    assert plan.outcome is Outcome.ROLLBACK
    assert states(plan)[-1] == "rebooting" and "failed" not in states(plan)
    assert plan.back_at > plan.down_at
    assert plan.firmware_after == "2.4.1"


def test_brick_reboots_and_never_comes_back():
    profile = OtaProfile({("*", "*"): {"brick": 1}})
    plan = OtaUpdater(profile).receive(make_command(), make_device(), T0)
    assert states(plan)[-1] == "rebooting"
    assert plan.down_at is not None and plan.back_at is None


# (reason, the step the device reached before failing)
FAILURES = (
    ("download_failed", "downloading, never to 100"),
    ("checksum_mismatch", "downloaded to 100"),
    ("install_failed", "installing"),
)


@pytest.mark.parametrize(("reason", "reached"), FAILURES)
def test_a_failed_update_says_why_and_never_reboots(reason, reached):
    updater = OtaUpdater(OtaProfile({("*", "*"): {reason: 1}}))
    plan = updater.receive(make_command(), make_device(), T0)

    last = plan.messages[-1]
    assert (last.state, last.reason) == ("failed", reason)
    assert "rebooting" not in states(plan)
    assert plan.down_at is None and plan.back_at is None
    assert plan.firmware_after == "2.4.1"
    assert plan.busy_until == last.at and not updater.busy(last.at)
    assert ("installing" in states(plan)) == (reached == "installing")
    progress = [m.progress for m in plan.messages if m.progress is not None]
    assert (100 in progress) == (reason != "download_failed")
    assert all(a.at <= b.at for a, b in pairwise(plan.messages))


def test_load_ota_profile_reads_its_entries(tmp_path):
    path = tmp_path / "profile.json"
    entries = [
        {"model_id": "thermostat-v2", "version": "2.5.0", "brick": 0.3, "rollback": 0.1},
        {"download_failed": 0.05},
    ]
    path.write_text(json.dumps({"rates": entries}))
    profile = load_ota_profile(path)
    assert profile.rates_for("thermostat-v2", "2.5.0") == OtaRates(brick=0.3, rollback=0.1)
    assert profile.rates_for("camera-v1", "1.9.0") == OtaRates(download_failed=0.05)


BAD_PROFILE_FILES = (
    ("{oops", "not JSON"),
    ('{"brick": 0.3}', "expected a list"),
    ('[{"model_id": "camera-v1", "brik": 0.3}]', "entry 0: unknown rates"),
    ('[{}, {"version": "*"}]', "entry 1: a second entry"),
    ('[{"brick": true}]', "entry 0: brick must be a number"),
)


@pytest.mark.parametrize(("text", "why"), BAD_PROFILE_FILES)
def test_load_ota_profile_names_what_is_wrong(tmp_path, text, why):
    path = tmp_path / "profile.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=why):
        load_ota_profile(path)


def test_a_rebooted_device_is_quiet_then_beats_with_the_new_firmware_and_fresh_uptime():
    device = make_device()
    before = device.heartbeat(device.next_due)
    assert before["fw"] == "2.4.1" and before["uptime_s"] >= 600
    device.shut_down(boot_into="2.5.0")
    assert device.next_due is None and device.next_link_change is None
    booted = T0 + timedelta(minutes=10)
    device.boot(booted)
    after = device.heartbeat(device.next_due)
    assert after["fw"] == "2.5.0"
    assert after["uptime_s"] <= 60
    assert after["seq"] == before["seq"] + 1


def test_a_device_remembers_whether_its_fault_holds_the_link_down_across_a_reboot():
    spec = replace(make_device().spec, fault=make_fault("flapping", start_after_s=100))
    device = SimDevice(spec)
    device.start(T0)
    assert not device.fault_keeps_link_down
    assert device.take_link_change(T0 + timedelta(seconds=100)) is Link.ABRUPT_CLOSE
    device.shut_down(boot_into="2.5.0")
    assert device.take_link_change(T0 + timedelta(seconds=200)) is None  # deferred while down
    device.boot(T0 + timedelta(seconds=200))
    assert device.fault_keeps_link_down  # so the runner boots it without reconnecting
    assert device.take_link_change(T0 + timedelta(seconds=200)) is Link.CONNECT
    assert not device.fault_keeps_link_down


# -- devices on a real broker ---------------------------------------------------------------


class Recorder:
    """Records (topic, payload, retained) of what arrives under a prefix's ota and heartbeat
    topics, and its status topics once `watch_status` is called.
    """

    def __init__(self, broker, prefix: str) -> None:
        self.prefix = prefix
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Semaphore(0)
        self.client = mqtt_client(*broker)
        self.client.on_message = self._record
        self.client.on_subscribe = lambda *args: self._subscribed.release()
        self._subscribe([every_device(prefix, OTA), every_device(prefix, HEARTBEAT)])

    def watch_status(self, count: int) -> None:
        """Subscribe to the status topics; wait for `count` retained ones.

        Only once the fleet is connected and subscribed: amqtt, on each connect, walks its
        subscriptions with retained messages matching them, and a subscription made then
        (a device's cmd topic) makes it drop the connecting device.
        """
        self._subscribe([every_device(self.prefix, STATUS)])
        wait_until(lambda: sum(self._kind(t) == STATUS for t, _, _ in self.messages) >= count)

    def _kind(self, topic: str) -> str | None:
        where = parse_topic(topic, self.prefix)
        return where.kind if isinstance(where, DeviceTopic) else None

    def _subscribe(self, topics: list[str]) -> None:
        self.client.subscribe([(topic, 1) for topic in topics])
        assert self._subscribed.acquire(timeout=5), "no SUBACK"

    def _record(self, client, userdata, message) -> None:
        with self._lock:
            self.messages.append((message.topic, message.payload, message.retain))

    def on(self, device_id: str, leaf: str) -> list[bytes]:
        return [payload for payload, _ in self.retained_or_not(device_id, leaf)]

    def retained_or_not(self, device_id: str, leaf: str) -> list[tuple[bytes, bool]]:
        topic = device_topic(self.prefix, device_id, leaf)
        with self._lock:
            return [(payload, retained) for t, payload, retained in self.messages if t == topic]

    def ota(self, device_id: str) -> list[dict]:
        return [json.loads(p) for p in self.on(device_id, OTA)]

    def heartbeats(self, device_id: str) -> list[dict]:
        return [json.loads(p) for p in self.on(device_id, HEARTBEAT)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def fleet(broker, prefix):
    """Four fault-free home devices (short intervals); their retained statuses cleared after."""
    devices = [
        d
        for d in build_fleet(12, seed=5, fault_share=0, id_prefix=f"o{uuid.uuid4().hex[:8]}")
        if d.spec.profile.interval_s <= 60
    ][:4]
    yield devices
    cleaner = mqtt_client(*broker)
    for device in devices:
        topic = status_topic(prefix, device.device_id)
        cleaner.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)
    cleaner.disconnect()
    cleaner.loop_stop()


@pytest.fixture
def live(broker, prefix):
    recorder = Recorder(broker, prefix)
    yield recorder
    recorder.close()


@pytest.fixture
def start_simulator(broker, prefix, fleet, live):
    """Start the fleet with a profile; wait until every device is subscribed to its cmd topic
    (then watch the statuses).
    """
    started = []

    def start(profile) -> Simulator:
        target, protocol = broker
        sim = Simulator(
            target,
            prefix=prefix,
            fleet=fleet,
            protocol=protocol,
            time_scale=TIME_SCALE,
            ota_profile=profile,
        )
        started.append(sim)
        sim.start()
        wait_until(lambda: sim.stats().command_subscriptions >= len(fleet), timeout=8)
        live.watch_status(len(fleet))
        return sim

    yield start
    for sim in started:
        sim.stop()
        assert sim.failure is None


def send(broker, prefix: str, device_id: str, payload: bytes | UpdateCommand) -> None:
    if isinstance(payload, UpdateCommand):
        payload = payload.to_payload()
    client = mqtt_client(*broker)
    client.publish(command_topic(prefix, device_id), payload, qos=1).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


def ota_command(command_id: str) -> UpdateCommand:
    return make_command(command_id, version="9.0.0")


def at(body: dict) -> datetime:
    """When the device sent a heartbeat or an update report (the simulator's clock)."""
    return datetime.fromisoformat(body["ts"])


def wait_until_it_beats_after(live: Recorder, device_id: str, moment: datetime) -> None:
    """Wait for a heartbeat the device sent after `moment`.

    A device's messages come through one connection, which the broker hands on in order: once
    this heartbeat is in, whatever the device published before it is in too.
    """
    wait_until(lambda: any(at(b) > moment for b in live.heartbeats(device_id)), timeout=5)


def test_device_reports_each_step_then_beats_on_the_new_firmware(
    broker, prefix, fleet, live, start_simulator
):
    sim = start_simulator(NOTHING_FAILS)
    device_id = fleet[0].device_id
    wait_until(lambda: live.heartbeats(device_id), timeout=5)
    send(broker, prefix, device_id, ota_command("c1-a-1"))
    wait_until(lambda: any(b["fw"] == "9.0.0" for b in live.heartbeats(device_id)), timeout=10)
    stats = sim.stats()

    reports = live.ota(device_id)
    for payload in live.on(device_id, OTA):  # each one the ingest stores
        topic = device_topic(prefix, device_id, OTA)
        record = parse_message(topic, payload, prefix=prefix, received_at=datetime.now(UTC))
        assert isinstance(record, OtaReport), record
    kinds = [r["state"] for r in reports]
    assert kinds[0] == "accepted" and kinds[-2:] == ["installing", "rebooting"]
    assert set(kinds[1:-2]) == {"downloading"} and 2 <= len(kinds[1:-2]) <= 3
    assert {r["command_id"] for r in reports} == {"c1-a-1"}
    times = [datetime.fromisoformat(r["ts"]) for r in reports]
    assert times == sorted(times)
    beats = live.heartbeats(device_id)
    firmwares = [b["fw"] for b in beats]
    switched = firmwares.index("9.0.0")
    assert switched > 0 and set(firmwares[:switched]) == {fleet[0].spec.firmware}
    assert set(firmwares[switched:]) == {"9.0.0"}
    assert beats[switched - 1]["uptime_s"] >= 600  # the prior uptime of a fresh SimDevice
    assert beats[switched]["uptime_s"] < 100  # counted from the reboot
    assert [b["seq"] for b in beats] == sorted({b["seq"] for b in beats})
    # Retained from before the command, then the new birth: a reboot leaves no will.
    assert live.retained_or_not(device_id, STATUS) == [(ONLINE_BYTES, True), (ONLINE_BYTES, False)]
    assert (stats.reboots, stats.bricked, stats.commands_received) == (1, 0, 1)
    assert (stats.ota_messages_dropped, stats.errors, stats.connections_lost) == (0, 0, 0)
    assert stats.ota_messages_sent == len(reports)


def test_bricked_device_sends_rebooting_then_nothing_while_the_others_beat_on(
    broker, prefix, fleet, live, start_simulator
):
    sim = start_simulator(OtaProfile({("*", "*"): {"brick": 1}}))
    bricked, other = fleet[0].device_id, fleet[1].device_id
    send(broker, prefix, bricked, ota_command("c2-a-1"))
    wait_until(lambda: "rebooting" in [r["state"] for r in live.ota(bricked)], timeout=8)
    rebooted_at = next(at(r) for r in live.ota(bricked) if r["state"] == "rebooting")
    # The later marker: a heartbeat of another device of the same simulator, sent after the
    # longest reboot window and two of the bricked device's intervals. Back by then, the
    # bricked device would have sent its birth and a heartbeat before it.
    away_s = ota.REBOOT_S[1] + 2 * fleet[0].spec.profile.interval_s
    marker_after = rebooted_at + timedelta(seconds=away_s * TIME_SCALE)
    wait_until(lambda: any(at(b) > marker_after for b in live.heartbeats(other)), timeout=8)

    assert all(at(b) < rebooted_at for b in live.heartbeats(bricked))
    assert live.retained_or_not(bricked, STATUS) == [(ONLINE_BYTES, True)]
    stats = sim.stats()
    assert (stats.reboots, stats.bricked, stats.connected) == (1, 1, len(fleet) - 1)


def test_a_repeated_command_is_answered_once_and_junk_is_ignored(
    broker, prefix, fleet, live, start_simulator
):
    sim = start_simulator(NOTHING_FAILS)
    device_id = fleet[0].device_id
    command = ota_command("c3-a-1")
    reboot = json.dumps({**json.loads(command.to_payload()), "type": "reboot"}).encode()
    for payload in (command, command, b"{not json", reboot):
        send(broker, prefix, device_id, payload)
    wait_until(lambda: any(b["fw"] == "9.0.0" for b in live.heartbeats(device_id)), timeout=10)
    send(broker, prefix, device_id, command)  # redelivered after the reboot
    wait_until(lambda: sim.stats().commands_ignored == 4, timeout=5)
    # The later marker: a heartbeat the device sent after ignoring it. An answer would have
    # gone out on the same connection before it.
    wait_until_it_beats_after(live, device_id, datetime.now(UTC))

    kinds = [r["state"] for r in live.ota(device_id)]
    assert kinds.count("accepted") == 1 and kinds[-1] == "rebooting"
    assert "failed" not in kinds
    assert sim.stats().commands_received == 1


def test_without_an_ota_profile_devices_take_no_commands(broker, prefix, fleet, live):
    target, protocol = broker
    sim = Simulator(target, prefix=prefix, fleet=fleet, protocol=protocol, time_scale=TIME_SCALE)
    sim.start()
    try:
        device_id = fleet[0].device_id
        wait_until(lambda: live.heartbeats(device_id), timeout=5)
        send(broker, prefix, device_id, ota_command("c4-a-1"))
        # The later marker: a heartbeat sent after the broker took the command. An answer
        # would have gone out on the same connection before it.
        wait_until_it_beats_after(live, device_id, datetime.now(UTC))
        stats = sim.stats()
    finally:
        sim.stop()
    assert sim.failure is None
    assert live.ota(device_id) == []
    assert stats.command_subscriptions == stats.commands_received == stats.commands_ignored == 0
