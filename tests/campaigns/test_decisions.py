"""The campaign decisions as pure functions: targeting, waves, windows, steps, the gate."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
from pydantic import ValidationError

from campaigns.gates import Health, evaluate_gate
from campaigns.policy import Policy
from campaigns.steps import Decision, Observed, Progress, apply_report, check
from campaigns.targeting import Target, firmware_in_range, to_specifier
from campaigns.waves import CampaignView, WaveCounts, assign_waves, in_window, next_move

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
POLICY = Policy(step_timeout_s=600, reboot_timeout_s=900, max_attempts=2)


@pytest.mark.parametrize(
    ("spec", "inside", "outside"),
    [
        (">=2.0,<2.5", ["2.0.0", "2.4.9"], ["1.9", "2.5.0"]),
        ("^2.4.0", ["2.4.0", "2.9.1"], ["2.3.9", "3.0.0"]),
        ("^0.3.1", ["0.3.1", "0.3.9"], ["0.4.0"]),
        ("~2.4", ["2.4.0", "2.4.7"], ["2.5.0"]),
        (">=2.0.0 <3.0.0", ["2.0.0", "2.99"], ["3.0.0", "1.0"]),
        ("2.4.1", ["2.4.1"], ["2.4.2"]),
        ("==2.4.*", ["2.4.0", "2.4.13"], ["2.5.0"]),
    ],
)
def test_firmware_ranges_pep440_and_semver(spec, inside, outside):
    s = to_specifier(spec)
    assert all(firmware_in_range(v, s) for v in inside)
    assert not any(firmware_in_range(v, s) for v in outside)
    assert not firmware_in_range("not-a-version", s) and not firmware_in_range(None, s)


def test_bad_targets_are_refused_with_a_reason():
    with pytest.raises(ValidationError, match="at least one criterion"):
        Target()
    with pytest.raises(ValidationError, match="not a firmware range"):
        Target(firmware="about two")
    with pytest.raises(ValidationError, match="not an id"):
        Target(device_ids=["bad id"])
    where, params = Target(models=["camera-v1"], labels=["pilot"], serial_from="A").where()
    assert "d.model_id = ANY" in where and "d.labels &&" in where
    assert params == {"t_models": ["camera-v1"], "t_labels": ["pilot"], "t_serial_from": "A"}


def test_waves_are_cumulative_stable_and_never_empty():
    devices = [f"dev-{i:03d}" for i in range(200)]
    waves = assign_waves(7, devices, [1, 10, 50, 100])
    sizes = [sum(1 for w in waves.values() if w == k) for k in (1, 2, 3, 4)]
    assert sizes == [2, 18, 80, 100]
    assert assign_waves(7, list(reversed(devices)), [1, 10, 50, 100]) == waves
    assert assign_waves(8, devices, [1, 10, 50, 100]) != waves  # another campaign, another canary
    tiny = assign_waves(1, ["a", "b", "c"], [1, 10, 100])
    assert sorted(tiny.values()) == [1, 2, 3]
    with pytest.raises(ValueError, match="100"):
        assign_waves(1, devices, [10, 50])
    with pytest.raises(ValueError, match="increasing"):
        assign_waves(1, devices, [50, 10, 100])


@pytest.mark.parametrize(
    ("utc", "tz", "expected"),
    [
        ("2026-12-01T02:30:00+00:00", "UTC", True),
        ("2026-12-01T05:00:00+00:00", "UTC", False),
        ("2026-12-01T02:30:00+00:00", "Europe/Berlin", True),  # 03:30 there
        ("2026-12-01T02:30:00+00:00", "America/New_York", False),  # 21:30 there
        ("2026-12-01T08:00:00+00:00", "America/New_York", True),  # 03:00 there
    ],
)
def test_maintenance_window_in_the_devices_own_time(utc, tz, expected):
    assert in_window(datetime.fromisoformat(utc), tz, time(2), time(5)) is expected
    assert in_window(datetime.fromisoformat(utc), tz, None, None)


def test_window_across_midnight():
    late = datetime(2026, 12, 1, 23, 30, tzinfo=UTC)
    assert in_window(late, "UTC", time(23), time(1))
    assert not in_window(late - timedelta(hours=2), "UTC", time(23), time(1))


def view(**kw):
    base = {
        "status": "running",
        "starts_at": T0,
        "current_wave": 1,
        "waves": 3,
        "wave_opened_at": T0,
        "soak_s": 3600,
    }
    return CampaignView(**{**base, **kw})


def test_next_move_starts_waits_for_the_wave_then_its_soak_then_completes():
    assert next_move(view(status="scheduled", current_wave=0), WaveCounts(), T0) == "start"
    early = T0 - timedelta(seconds=1)
    assert next_move(view(status="scheduled", current_wave=0), WaveCounts(), early) is None
    busy = WaveCounts(total=10, in_flight=2, done=8)
    assert next_move(view(), busy, T0 + timedelta(days=1)) is None
    waiting = WaveCounts(total=10, pending_online=1, done=9)
    assert next_move(view(), waiting, T0 + timedelta(days=1)) is None
    finished = WaveCounts(total=10, done=9, pending_offline=1, last_finished_at=T0)
    assert next_move(view(), finished, T0 + timedelta(minutes=59)) is None
    assert next_move(view(), finished, T0 + timedelta(hours=1)) == "open_next"
    assert next_move(view(current_wave=3), finished, T0) == "complete"
    assert next_move(view(status="halted"), finished, T0 + timedelta(days=9)) is None


def progress(state, minutes_ago=1, attempt=1, sent_minutes_ago=5):
    return Progress(
        state,
        T0 - timedelta(minutes=minutes_ago),
        attempt,
        T0 - timedelta(minutes=sent_minutes_ago),
    )


@pytest.mark.parametrize(
    ("current", "report", "reason", "attempt", "expected"),
    [
        ("sent", "accepted", None, 1, Decision("accepted")),
        ("sent", "installing", None, 1, Decision("installing")),  # a report may be lost
        ("installing", "downloading", None, 1, None),  # late: never moves back
        ("rebooting", "accepted", None, 1, None),
        ("downloading", "failed", "download_failed", 1, Decision("pending", "download_failed")),
        ("downloading", "failed", "download_failed", 2, Decision("failed", "download_failed")),
        ("installing", "failed", "install_failed", 1, Decision("failed", "install_failed")),
        ("succeeded", "failed", "install_failed", 1, None),
    ],
)
def test_reports_move_a_device_forward_only(current, report, reason, attempt, expected):
    assert apply_report(progress(current, attempt=attempt), report, reason, POLICY) == expected


def test_success_needs_the_new_firmware_in_a_heartbeat_after_the_command():
    after = Observed("2.5.0", T0, 30)
    assert check(progress("rebooting"), after, "2.5.0", T0, POLICY) == Decision("succeeded")
    stale = Observed("2.5.0", T0 - timedelta(minutes=10), 3000)  # heard before the command
    assert check(progress("rebooting"), stale, "2.5.0", T0, POLICY) is None


def test_back_on_the_old_firmware_is_a_rollback_and_silence_is_never_coming_back():
    back_old = Observed("2.0.0", T0, 20)  # uptime 20 s, 1 min after rebooting: it restarted
    assert check(progress("rebooting"), back_old, "2.5.0", T0, POLICY) == Decision(
        "failed", "rolled_back"
    )
    before_reboot = Observed("2.0.0", T0, 86400)  # a heartbeat sent just before the restart
    assert check(progress("rebooting"), before_reboot, "2.5.0", T0, POLICY) is None
    silent = Observed("2.0.0", T0 - timedelta(hours=1), 86400)
    assert check(progress("rebooting", minutes_ago=14), silent, "2.5.0", T0, POLICY) is None
    assert check(progress("rebooting", minutes_ago=16), silent, "2.5.0", T0, POLICY) == Decision(
        "failed", "never_came_back"
    )


def test_a_stuck_step_times_out_into_a_retry_then_a_failure():
    quiet = Observed("2.0.0", T0 - timedelta(hours=1), 100)
    assert check(progress("sent", minutes_ago=9), quiet, "2.5.0", T0, POLICY) is None
    assert check(progress("sent", minutes_ago=11), quiet, "2.5.0", T0, POLICY) == Decision(
        "pending", "timeout_sent"
    )
    assert check(
        progress("downloading", minutes_ago=11, attempt=2), quiet, "2.5.0", T0, POLICY
    ) == Decision("failed", "timeout_downloading")


@pytest.mark.parametrize(
    ("updated", "rest", "halt", "words"),
    [
        (Health(10, 3, 3, 0), Health(90, 0, 1, 0), True, "3 of 10 updated devices failed"),
        (Health(10, 1, 1, 0), Health(90, 0, 0, 0), False, None),  # under the minimum count
        (Health(100, 5, 0, 0), Health(900, 0, 0, 0), False, None),  # 5 % <= 10 %
        (Health(20, 0, 4, 0), Health(80, 0, 1, 0), True, "offline"),
        (Health(20, 0, 4, 0), Health(80, 0, 15, 0), False, None),  # the rest as bad: no blame
        (Health(20, 0, 0, 5), Health(80, 0, 0, 2), True, "degraded"),
    ],
)
def test_health_gate(updated, rest, halt, words):
    verdict = evaluate_gate(updated, rest, Policy())
    assert verdict.halt is halt
    if words:
        assert words in verdict.reason
