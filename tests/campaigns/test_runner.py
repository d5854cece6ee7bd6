"""The campaign runner against a real database, driven tick by tick with a `now`."""

from __future__ import annotations

import contextlib
import hashlib
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from played import Devices, make_fleet, run_until, update_spec
from support import count

from campaigns.store import create_campaign
from campaigns.waves import in_window

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
ZONES = ("UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo")


def status(conn, campaign_id):
    return conn.execute(
        "SELECT status, current_wave, halted_reason FROM campaigns WHERE id = %s",
        (campaign_id,),
    ).fetchone()


def test_good_firmware_completes_every_wave_inside_the_maintenance_windows(conn, runner):
    ids = make_fleet(conn, 40, timezones=ZONES, seen=T0)
    spec = update_spec(window_start=time(2), window_end=time(5), starts_at=T0)
    campaign_id, targeted = create_campaign(conn, spec, created_by="fw-team", now=T0)
    assert targeted == 40
    devices = Devices(conn)
    done = run_until(
        runner(devices),
        devices,
        T0,
        timedelta(minutes=15),
        lambda now: status(conn, campaign_id)[0] == "completed",
        limit=6 * 96,
    )

    assert count(conn, "SELECT count(*) FROM campaign_devices WHERE state = 'succeeded'") == 40
    assert sorted({d for _, d, _ in devices.commands}) == ids
    assert len(devices.commands) == 40  # one command each, none repeated
    tz = dict(conn.execute("SELECT id, timezone FROM devices").fetchall())
    for at, device, _ in devices.commands:
        assert in_window(at, tz[device], time(2), time(5)), (
            device,
            at.astimezone(ZoneInfo(tz[device])),
        )
    # Waves in order, each after the one before had soaked for an hour.
    wave = dict(conn.execute("SELECT device_id, wave FROM campaign_devices").fetchall())
    finished = dict(conn.execute("SELECT device_id, finished_at FROM campaign_devices").fetchall())
    for k in (2, 3):
        first_sent = min(at for at, d, _ in devices.commands if wave[d] == k)
        last_before = max(finished[d] for d in ids if wave[d] < k)
        assert first_sent >= last_before + timedelta(hours=1)
    assert done - T0 < timedelta(days=5)
    # Owners heard before and after; the firmware team heard it completed.
    notices = dict(
        conn.execute(
            "SELECT template, count(*) FROM notifications WHERE campaign_id = %s GROUP BY 1",
            (campaign_id,),
        ).fetchall()
    )
    assert notices == {"ota_scheduled": 40, "ota_succeeded": 40}
    assert (
        count(conn, "SELECT count(*) FROM notifications WHERE template = 'campaign_completed'") == 0
    )  # no staff channel configured: nobody to tell
    events = [
        k
        for (k,) in conn.execute(
            "SELECT kind FROM campaign_events WHERE campaign_id = %s ORDER BY id", (campaign_id,)
        )
    ]
    assert events == [
        "created",
        "started",
        "wave_opened",
        "wave_opened",
        "wave_opened",
        "completed",
    ]


def bricks(device: str) -> bool:
    return int(hashlib.sha256(device.encode()).hexdigest(), 16) % 10 < 3


def test_firmware_that_bricks_30_percent_halts_after_the_canary(conn, runner):
    ids = make_fleet(conn, 100, seen=T0)
    conn.execute(
        "INSERT INTO staff_channels (apprise_url, label) VALUES "
        "('json://127.0.0.1:9/fw-team', 'firmware team')"
    )
    campaign_id, _ = create_campaign(
        conn,
        update_spec(policy={"reboot_timeout_s": 900, "min_devices": 2}),
        created_by="fw",
        now=T0,
    )
    canary = [
        d
        for (d,) in conn.execute(
            "SELECT device_id FROM campaign_devices WHERE wave = 1 ORDER BY device_id"
        )
    ]
    assert len(canary) == 10
    bricked = set(canary[:3])
    devices = Devices(conn, outcome=lambda d: "brick" if d in bricked else "ok")
    run_until(
        runner(devices),
        devices,
        T0,
        timedelta(minutes=5),
        lambda now: status(conn, campaign_id)[0] == "halted",
        limit=100,
    )

    _, wave, reason = status(conn, campaign_id)
    assert wave == 1 and "3 of 10 updated devices failed" in reason
    assert {d for _, d, _ in devices.commands} == set(canary)  # nothing beyond the canary
    failed = dict(
        conn.execute(
            "SELECT device_id, failure_reason FROM campaign_devices WHERE state = 'failed'"
        ).fetchall()
    )
    assert failed == {d: "never_came_back" for d in bricked}
    # The firmware team is told why, once; the bricked devices' owners hear what to do.
    staff = conn.execute(
        "SELECT template, context->>'reason' FROM notifications WHERE staff_channel_id IS NOT NULL"
    ).fetchall()
    assert staff == [("campaign_halted", reason)]
    assert (
        count(
            conn,
            "SELECT count(*) FROM incidents WHERE kind = 'campaign_halted' AND status = 'open'",
        )
        == 1
    )
    owners = conn.execute(
        "SELECT device_id, context->>'next_steps' FROM notifications WHERE template = 'ota_failed'"
    ).fetchall()
    assert {d for d, _ in owners} == bricked and all("unplug" in s for _, s in owners)
    # Halted means halted: later ticks send nothing until someone resumes.
    before = len(devices.commands)
    run_until(
        runner(devices),
        devices,
        T0 + timedelta(hours=6),
        timedelta(hours=1),
        lambda now: now >= T0 + timedelta(hours=9),
        limit=5,
    )
    assert len(devices.commands) == before and status(conn, campaign_id)[0] == "halted"
    assert set(ids) - set(canary)  # the rest were never touched


def test_a_runner_killed_between_commit_and_publish_never_sends_a_command_twice(conn, runner):
    make_fleet(conn, 12, seen=T0)
    campaign_id, _ = create_campaign(
        conn, update_spec(waves=[100], policy={"step_timeout_s": 600}), created_by="fw", now=T0
    )
    devices = Devices(conn)
    published = []

    def dies_on_the_fifth(topic, payload):
        if len(published) == 4:
            raise SystemExit("killed")  # the process dies mid-batch
        published.append(payload)
        devices.publish(topic, payload)

    first = runner(devices)
    first._publish = dies_on_the_fifth
    devices.now = T0
    with contextlib.suppress(SystemExit):
        first.tick(T0)
    first.stop()
    assert len(devices.commands) == 4
    # A new runner resumes: the 8 commands recorded but never published are not re-sent
    # under their ids; they time out and go again as a second attempt.
    second = runner(devices)
    run_until(
        second,
        devices,
        T0 + timedelta(minutes=1),
        timedelta(minutes=5),
        lambda now: status(conn, campaign_id)[0] == "completed",
        limit=100,
    )
    ids = [c.command_id for _, _, c in devices.commands]
    assert len(ids) == len(set(ids)) == 12  # each published once: 4 first tries, 8 second
    assert sum(i.endswith("-1") for i in ids) == 4
    attempts = dict(conn.execute("SELECT device_id, attempt FROM campaign_devices").fetchall())
    assert sorted(attempts.values()) == [1] * 4 + [2] * 8
    assert count(conn, "SELECT count(*) FROM campaign_devices WHERE state = 'succeeded'") == 12


def test_pause_resume_cancel_and_retry_limits(conn, runner):
    make_fleet(conn, 6, seen=T0)
    campaign_id, _ = create_campaign(
        conn, update_spec(waves=[100], policy={"max_attempts": 2}), created_by="fw", now=T0
    )
    from campaigns.store import move_campaign

    assert move_campaign(conn, campaign_id, "pause", by="ana", now=T0) == "paused"
    devices = Devices(conn, outcome=lambda d: "install_failed" if d == "dev-000" else "ok")
    r = runner(devices)
    devices.now = T0
    r.tick(T0)
    assert devices.commands == []  # paused before it started: nothing goes out
    assert move_campaign(conn, campaign_id, "resume", by="ana", now=T0) == "scheduled"
    run_until(
        r,
        devices,
        T0,
        timedelta(minutes=5),
        lambda now: status(conn, campaign_id)[0] == "completed",
        limit=50,
    )
    failed = conn.execute(
        "SELECT device_id, failure_reason, attempt FROM campaign_devices WHERE state = 'failed'"
    ).fetchall()
    assert failed == [("dev-000", "install_failed", 1)]  # not retryable: failed at once
    assert move_campaign(conn, campaign_id, "cancel", by="ana", now=T0) is None  # completed


def test_a_person_resuming_a_halted_campaign_closes_its_incident(conn, runner):
    from campaigns.store import move_campaign

    make_fleet(conn, 20, seen=T0)
    campaign_id, _ = create_campaign(
        conn,
        update_spec(waves=[50, 100], policy={"min_devices": 2, "reboot_timeout_s": 600}),
        created_by="fw",
        now=T0,
    )
    devices = Devices(conn, outcome=lambda d: "brick")
    run_until(
        runner(devices),
        devices,
        T0,
        timedelta(minutes=5),
        lambda now: status(conn, campaign_id)[0] == "halted",
        limit=50,
    )
    assert move_campaign(conn, campaign_id, "resume", by="lead", now=T0 + timedelta(hours=2))
    incident = conn.execute("SELECT id, status FROM incidents WHERE kind = 'campaign_halted'")
    incident_id, state = incident.fetchone()
    assert state == "resolved"
    timeline = conn.execute(
        "SELECT kind, detail->>'by' FROM incident_events WHERE incident_id = %s ORDER BY id",
        (incident_id,),
    ).fetchall()
    assert timeline == [("opened", None), ("resolved", "lead")]
