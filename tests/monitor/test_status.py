"""next_status: every transition the monitor makes, with plain datetimes."""

from datetime import UTC, datetime, timedelta

import pytest

from monitor.status import DeviceWatch, next_status

NOW = datetime(2026, 11, 25, 14, 2, tzinfo=UTC)
GRACE = timedelta(seconds=20)
S = timedelta(seconds=1)


def watch(**kw) -> DeviceWatch:
    values = dict(
        device_id="d",
        status="online",
        status_changed_at=NOW - 3600 * S,
        overdue_at=NOW + 60 * S,
        last_seen_at=NOW - 30 * S,
        last_received_at=NOW - 30 * S,
    )
    values.update(kw)
    return DeviceWatch(**values)


# (case, device, expected (new status, reason) or None)
CASES = [
    ("beating device stays", watch(), None),
    (
        "silent device is offline after its deadline",
        watch(overdue_at=NOW - S, last_seen_at=NOW - 241 * S),
        ("offline", "silent"),
    ),
    ("deadline exactly now counts", watch(overdue_at=NOW), ("offline", "silent")),
    (
        "degraded device goes offline too",
        watch(status="degraded", overdue_at=NOW - S),
        ("offline", "silent"),
    ),
    (
        "last will within grace waits",
        watch(connectivity="offline", connectivity_at=NOW - 10 * S),
        None,
    ),
    (
        "last will past grace is offline at once",
        watch(connectivity="offline", connectivity_at=NOW - 21 * S),
        ("offline", "last_will"),
    ),
    (
        "heartbeat after the will cancels it",
        watch(connectivity="offline", connectivity_at=NOW - 60 * S, last_received_at=NOW - 5 * S),
        None,
    ),
    (
        "provisioned, waiting within grace",
        watch(status="provisioned", last_received_at=None, last_seen_at=None),
        None,
    ),
    (
        "provisioned past grace is never seen",
        watch(status="provisioned", last_received_at=None, last_seen_at=None, overdue_at=NOW - S),
        ("never_seen", "never_reported"),
    ),
    (
        "offline device stays offline without news",
        watch(status="offline", status_changed_at=NOW - 60 * S, last_received_at=NOW - 300 * S),
        None,
    ),
    (
        "next heartbeat brings it back",
        watch(status="offline", status_changed_at=NOW - 60 * S, last_received_at=NOW - S),
        ("online", "heartbeat"),
    ),
    (
        "never seen device reports at last",
        watch(status="never_seen", status_changed_at=NOW - 60 * S, last_received_at=NOW - S),
        ("online", "heartbeat"),
    ),
    ("retired devices are not watched", watch(status="retired", overdue_at=NOW - S), None),
]


@pytest.mark.parametrize(("device", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_next_status(device, expected):
    transition = next_status(device, NOW, GRACE)
    got = (transition.new, transition.reason) if transition else None
    assert got == expected


def test_offline_since_is_when_it_was_last_heard():
    t = next_status(watch(overdue_at=NOW - S, last_seen_at=NOW - 241 * S), NOW, GRACE)
    assert t.since == NOW - 241 * S and t.old == "online"
    will = next_status(
        watch(connectivity="offline", connectivity_at=NOW - 30 * S, last_received_at=NOW - 40 * S),
        NOW,
        GRACE,
    )
    assert will.since == NOW - 30 * S


def test_a_device_silent_past_its_announced_check_in_missed_it():
    expected = NOW - 300 * S
    t = next_status(
        watch(overdue_at=NOW - S, last_seen_at=NOW - 6 * 3600 * S, expected_at=expected),
        NOW,
        GRACE,
    )
    assert (t.new, t.reason, t.expected_at, t.since) == (
        "offline",
        "missed_checkin",
        expected,
        NOW - 6 * 3600 * S,
    )
    asleep = watch(overdue_at=NOW + S, last_seen_at=NOW - 6 * 3600 * S, expected_at=expected)
    assert next_status(asleep, NOW, GRACE) is None
