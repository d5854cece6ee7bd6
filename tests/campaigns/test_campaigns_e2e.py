"""Campaigns end to end: the runner publishes commands to a real broker, simulated devices
answer (and some brick), the ingest stores their reports and heartbeats, owners and the
firmware team hear through the real dispatcher."""

from __future__ import annotations

import threading
import uuid
from collections import Counter

import pytest
from support import add_channel, count, mqtt_client, wait_until

from campaigns.runner import CampaignRunner
from campaigns.store import CampaignCreate, create_campaign
from contract.commands import UpdateCommand, parse_command
from contract.topics import CMD, command_topic, every_device
from devices.registry import import_devices
from devices.simulator.fleet import build_fleet, registry_rows
from devices.simulator.ota import OtaProfile
from devices.simulator.runner import Simulator

NEW = "9.9.9"


@pytest.fixture
def fleet_on_air(conn, broker, prefix, run_ingest, http_sink):
    """Start a simulated fleet of n with a failure profile, registered, owners with channels."""
    started = []

    def start(n: int, profile: OtaProfile):
        fleet = build_fleet(n, seed=11, fault_share=0, id_prefix=f"o{prefix[-6:]}")
        rows = registry_rows(fleet)
        assert import_devices(conn, rows).ok
        for customer in sorted({row["customer_id"] for row in rows}):
            add_channel(conn, customer, http_sink.url(customer))
        conn.execute(
            "INSERT INTO staff_channels (apprise_url) VALUES (%s)",
            (http_sink.url("firmware-team"),),
        )
        run_ingest()
        sim = Simulator(
            broker[0],
            prefix=prefix,
            fleet=fleet,
            protocol=broker[1],
            time_scale=0.01,
            ota_profile=profile,
        )
        sim.start()
        started.append(sim)
        ids = [d.spec.device_id for d in fleet]
        wait_until(
            lambda: (
                count(
                    conn,
                    "SELECT count(*) FROM device_state WHERE device_id = "
                    "ANY(%s) AND last_seen_at IS NOT NULL",
                    ids,
                )
                == n
            ),
            timeout=30,
        )
        return ids

    yield start
    for sim in started:
        sim.stop()


@pytest.fixture
def commands_heard(broker, prefix):
    """Every command published on the broker, as a device subscription would see it (and
    read: one that breaks the contract raises in `parse_command` and is missing here)."""
    heard: list[UpdateCommand] = []
    lock = threading.Lock()
    client = mqtt_client(*broker)

    def on_message(c, userdata, msg):
        with lock:
            heard.append(parse_command(msg.payload))

    client.on_message = on_message
    client.subscribe(every_device(prefix, CMD), qos=1)
    yield heard
    client.disconnect()
    client.loop_stop()


def commands_after_a_marker(broker, prefix: str, heard: list[UpdateCommand]) -> list:
    """The commands heard, once a marker command published after the runner stopped has been
    heard (on the cmd topic of a device nobody registered).

    A stopped runner has written its last publish before its DISCONNECT, all of it before
    this marker's client even connects: a command still on its way is heard before the marker.
    """
    marker = UpdateCommand(f"marker-{uuid.uuid4().hex}", 0, "0", "marker", "0" * 64, 1)
    client = mqtt_client(*broker)
    topic = command_topic(prefix, "marker")
    client.publish(topic, marker.to_payload(), qos=1).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()
    wait_until(lambda: marker in heard, timeout=10)
    return [c for c in heard if c != marker]


def campaign(conn, ids, **overrides) -> int:
    body = {
        "name": "Firmware 9.9.9",
        "kind": "ota_update",
        "target": {"device_ids": ids},
        "target_version": NEW,
        "artifact_url": "https://updates.example.com/9.9.9.bin",
        "artifact_sha256": "c" * 64,
        "waves": [50, 100],
        "soak_s": 0,
        "policy": {"step_timeout_s": 30, "reboot_timeout_s": 6, "min_devices": 3},
    }
    body.update(overrides)
    from datetime import UTC, datetime

    return create_campaign(
        conn, CampaignCreate.model_validate(body), created_by="fw-lead", now=datetime.now(UTC)
    )[0]


def status(conn, campaign_id) -> str:
    return conn.execute("SELECT status FROM campaigns WHERE id = %s", (campaign_id,)).fetchone()[0]


def test_firmware_that_bricks_devices_halts_after_the_canary_and_everyone_is_told(
    conn,
    dsn,
    make_settings,
    broker,
    prefix,
    fleet_on_air,
    commands_heard,
    make_dispatcher,
    http_sink,
):
    # Half of them brick: the canary's 30 then hold the 4 the gate needs (over 10 %) but for
    # a chance of about 4 in a million (at 0.3 it was about 1 in 100: a flaky test).
    ids = fleet_on_air(60, OtaProfile({("*", NEW): {"brick": 0.5}}))
    campaign_id = campaign(conn, ids)
    runner = CampaignRunner(make_settings(campaigns_tick_s=0.2), dsn, broker[0]).start()
    try:
        wait_until(lambda: status(conn, campaign_id) == "halted", timeout=60)
    finally:
        runner.stop()

    waves = dict(conn.execute("SELECT device_id, wave FROM campaign_devices").fetchall())
    heard = commands_after_a_marker(broker, prefix, commands_heard)
    commanded = {c.command_id.rsplit("-", 1)[0].split("-", 1)[1] for c in heard}
    assert commanded and all(waves[d] == 1 for d in commanded)  # nothing beyond the canary
    # The runner records a command before publishing it: none recorded beyond the canary.
    recorded = conn.execute(
        "SELECT DISTINCT wave FROM campaign_devices WHERE command_id IS NOT NULL"
    ).fetchall()
    assert recorded == [(1,)]
    failed = conn.execute(
        "SELECT device_id FROM campaign_devices WHERE state = 'failed' "
        "AND failure_reason = 'never_came_back'"
    ).fetchall()
    assert len(failed) >= 3
    reason = conn.execute("SELECT halted_reason FROM campaigns").fetchone()[0]
    assert "updated devices failed" in reason

    dispatcher = make_dispatcher()
    while dispatcher.run_once():
        pass
    by_path = http_sink.by_path()
    [(title, body)] = by_path["/firmware-team"]
    assert title == "Campaign halted: Firmware 9.9.9" and "never_came_back" in body
    # Alone, or as a line of a digest when several of an owner's notices were due at once.
    told = {
        path.strip("/")
        for path, messages in by_path.items()
        if any("did not work" in t or "update failed" in b for t, b in messages)
    }
    owners = dict(conn.execute("SELECT id, customer_id FROM devices").fetchall())
    assert told == {owners[d] for (d,) in failed}


def test_a_runner_restarted_mid_campaign_finishes_it_without_a_command_twice(
    conn, dsn, make_settings, broker, prefix, fleet_on_air, commands_heard
):
    ids = fleet_on_air(24, OtaProfile({("*", "*"): {}}))  # nothing fails
    campaign_id = campaign(conn, ids, waves=[25, 50, 100])
    settings = make_settings(campaigns_tick_s=0.2)
    first = CampaignRunner(settings, dsn, broker[0]).start()
    try:
        wait_until(
            lambda: (
                count(conn, "SELECT count(*) FROM campaign_devices WHERE state = 'succeeded'") >= 6
            ),
            timeout=60,
        )
    finally:
        first.stop()
    assert status(conn, campaign_id) == "running"
    second = CampaignRunner(settings, dsn, broker[0]).start()
    try:
        wait_until(lambda: status(conn, campaign_id) == "completed", timeout=90)
    finally:
        second.stop()
    per_command = Counter(
        c.command_id for c in commands_after_a_marker(broker, prefix, commands_heard)
    )
    assert len(per_command) == 24 and set(per_command.values()) == {1}
    assert count(conn, "SELECT count(*) FROM campaign_devices WHERE state = 'succeeded'") == 24
    reported = dict(conn.execute("SELECT device_id, firmware FROM device_state").fetchall())
    assert {reported[d] for d in ids} == {NEW}
