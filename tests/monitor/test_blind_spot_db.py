"""The blind-spot guard against a real database: silence from everyone declares nobody offline."""

from datetime import UTC, datetime, timedelta

from support import count, make_device, make_overdue

from ingest.writer import record_progress

NOW = datetime.now(UTC).replace(microsecond=0)


def test_fleet_silent_at_once_is_a_blind_spot_not_an_outage(conn, make_settings, tick):
    ids = [f"dev-{i:03d}" for i in range(100)]
    for device_id in ids:
        make_device(conn, device_id, customer_id="c1")
    conn.execute(
        "INSERT INTO staff_channels (apprise_url, label, min_severity) "
        "VALUES ('json://127.0.0.1:9/staff', 'on-call', 'warning')"
    )
    make_overdue(conn, ids, NOW)
    # ... but nothing has reached any ingest for ten minutes.
    conn.execute("UPDATE ingest_status SET last_message_at = %s", (NOW - timedelta(minutes=10),))

    first = tick(NOW)
    second = tick(NOW + timedelta(seconds=1))
    assert first.blind and second.blind and first.applied.opened == 0
    assert count(conn, "SELECT count(*) FROM device_state WHERE status = 'offline'") == 0
    incidents = conn.execute("SELECT scope, kind, severity, status FROM incidents").fetchall()
    assert incidents == [("system", "blind_spot", "critical", "open")]
    staff = conn.execute(
        "SELECT template, staff_channel_id IS NOT NULL, customer_id FROM notifications"
    ).fetchall()
    assert staff == [("system_blind_spot", True, None)]

    # Sight returns: the incident closes, staff hear, and silence waits out the grace.
    back = NOW + timedelta(minutes=1)
    record_progress(conn, "ingest-1", back)
    result = tick(back)
    assert not result.blind and result.held == 100 and result.applied.opened == 0
    assert conn.execute("SELECT status FROM incidents").fetchone()[0] == "resolved"
    templates = [t for (t,) in conn.execute("SELECT template FROM notifications ORDER BY id")]
    assert templates == ["system_blind_spot", "system_blind_spot_resolved"]

    # Devices that stay silent past the grace are offline after all.
    grace = make_settings().monitor_resume_grace_s
    later = back + timedelta(seconds=grace + 1)
    record_progress(conn, "ingest-1", later)
    assert tick(later).applied.opened == 100


def test_small_fleet_silence_proves_nothing(conn, make_settings, tick):
    make_device(conn, "car-1", model_id="car-telematics-v1", customer_id="c1")
    make_overdue(conn, ["car-1"], NOW)
    conn.execute("UPDATE ingest_status SET last_message_at = %s", (NOW - timedelta(minutes=10),))
    result = tick(NOW)
    assert not result.blind and result.applied.opened == 1
