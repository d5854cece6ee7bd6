"""The weekly digest end to end: the monitor's releases job records it once a week, the
router and the dispatcher deliver it to a staff channel (a local HTTP sink)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from support import make_device

TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
MONDAY = TODAY - timedelta(days=TODAY.weekday())
NOW = MONDAY + timedelta(hours=8, minutes=5)

_DEVICE_DAY = """
INSERT INTO release_device_days (device_id, day, firmware, model_id, heartbeats, expected,
    reboots, update_reboots, offline_s, battery_drop, battery_samples, first_ts, last_ts)
VALUES (%s, %s, %s, 'camera-v1', 1440, 1440, %s, 0, 0, 0, 0, %s, %s)
"""


def test_the_weekly_digest_goes_to_staff_once_a_week(
    conn, make_monitor, make_dispatcher, http_sink
):
    conn.execute(
        "INSERT INTO staff_channels (apprise_url, min_severity) VALUES (%s, 'info')",
        (http_sink.url("firmware-team"),),
    )
    for i in range(100):
        old, new = f"old-{i:02d}", f"new-{i:02d}"
        for device, fw, reboots in ((old, "2.4.1", 1), (new, "2.5.0", 2)):
            make_device(conn, device, model_id="camera-v1", customer_id=None)
            for back in range(1, 8):
                start = MONDAY - timedelta(days=back)
                conn.execute(
                    _DEVICE_DAY,
                    (device, start.date(), fw, reboots, start, start + timedelta(hours=23)),
                )
    # A running install that has rolled up to the week's start: the rollup walks the week's
    # days from there (a fresh one starts at its first heartbeat, releases/rollup.py).
    conn.execute(
        "INSERT INTO release_rollup_state (rolled_to, updated_at) VALUES (%s, %s)",
        (MONDAY - timedelta(days=7), MONDAY - timedelta(days=7)),
    )
    monitor = make_monitor()
    dispatcher = make_dispatcher()

    def run(at):
        # The job runs again at once while the rollup is behind (core/worker.py).
        while monitor.roll_up_releases(at):
            pass

    run(NOW - timedelta(minutes=10))  # before 08:00: not yet
    assert conn.execute("SELECT count(*) FROM release_digests").fetchone()[0] == 0
    run(NOW)
    run(NOW + timedelta(hours=1))  # sent already this week
    dispatcher.run_once(NOW + timedelta(hours=1))
    # The next week's digest is the marker: once it is in, nothing else came before it.
    run(NOW + timedelta(days=7))
    dispatcher.run_once(NOW + timedelta(days=7))
    sent = http_sink.by_path()["/firmware-team"]
    assert len(sent) == 2, sent
    title, body = sent[0]
    assert title.startswith("Release health, ") and "1 vitals worse" in title
    assert "camera-v1 2.5.0 vs 2.4.1 (700 device-days)" in body
    assert "unexpected reboots per device-day x2.00" in body and "worse" in body
    assert "no firmware data in the week" in sent[1][0]
    assert conn.execute("SELECT count(*) FROM release_digests").fetchone()[0] == 2
