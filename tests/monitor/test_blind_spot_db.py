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


def test_a_deadline_past_the_ingests_watermark_waits_for_it(conn, tick):
    """The ingest is down and the broker queues for it: silence is not proven yet."""
    ids = [f"dev-{i:03d}" for i in range(5)]
    for device_id in ids:
        make_device(conn, device_id, customer_id="c1")
    make_overdue(conn, ids, NOW)  # deadlines 60 s before NOW
    record_progress(conn, "test-ingest", NOW, caught_up_at=NOW - timedelta(seconds=90))

    assert tick(NOW).applied.opened == 0
    assert count(conn, "SELECT count(*) FROM device_state WHERE status = 'offline'") == 0
    # Restarted, the ingest works off the queue: the watermark passes the deadlines.
    record_progress(conn, "test-ingest", NOW, caught_up_at=NOW - timedelta(seconds=59))
    assert tick(NOW).applied.opened == 5


def test_a_gone_ingest_does_not_hold_back_the_others(conn, tick):
    make_device(conn, "dev-1", customer_id="c1")
    make_overdue(conn, ["dev-1"], NOW)
    record_progress(conn, "test-ingest", NOW, caught_up_at=NOW)
    record_progress(conn, "ingest-dead", NOW, caught_up_at=NOW - timedelta(hours=1))
    conn.execute(
        "UPDATE ingest_status SET updated_at = now() - interval '10 minutes' "
        "WHERE client_id = 'ingest-dead'"
    )
    assert tick(NOW).applied.opened == 1


def test_wills_a_broker_sent_on_its_way_down_wait_out_the_grace(conn, make_settings, tick):
    ids = [f"dev-{i:03d}" for i in range(30)]
    for device_id in ids:
        make_device(conn, device_id, customer_id="c1")
    down = NOW - timedelta(seconds=40)
    record_progress(conn, "test-ingest", NOW, caught_up_at=NOW)
    conn.execute(
        "UPDATE device_state SET status = 'online', status_changed_at = %(t)s - interval '1 day', "
        "last_seen_at = %(t)s - interval '10 seconds', last_received_at = %(t)s - interval "
        "'10 seconds', overdue_at = %(t)s + interval '10 minutes', connectivity = 'offline', "
        "connectivity_at = %(t)s WHERE device_id = ANY(%(ids)s)",
        {"t": down, "ids": ids},
    )
    # The ingest regained the broker 30 s ago; the wills have stood 40 s (grace: 20 s).
    record_progress(conn, "test-ingest", NOW, broker_back_at=NOW - timedelta(seconds=30))
    result = tick(NOW)
    assert result.applied.opened == 0 and result.held == 30

    # Half reconnect (their birth message clears the will); the rest stay away.
    conn.execute(
        "UPDATE device_state SET connectivity = 'online', connectivity_at = %s "
        "WHERE device_id = ANY(%s)",
        (NOW, ids[:15]),
    )
    grace = make_settings().monitor_resume_grace_s
    later = NOW + timedelta(seconds=grace)
    record_progress(conn, "test-ingest", later, caught_up_at=later)
    assert tick(later).applied.opened == 15
    offline = {
        r[0] for r in conn.execute("SELECT device_id FROM device_state WHERE status = 'offline'")
    }
    assert offline == set(ids[15:])


def test_without_a_broker_outage_a_will_is_news_at_once(conn, tick):
    make_device(conn, "dev-1", customer_id="c1")
    record_progress(conn, "test-ingest", NOW, caught_up_at=NOW)
    conn.execute(
        "UPDATE device_state SET status = 'online', status_changed_at = %(t)s - interval '1 day', "
        "last_seen_at = %(t)s - interval '1 minute', last_received_at = %(t)s - interval "
        "'1 minute', overdue_at = %(t)s + interval '10 minutes', connectivity = 'offline', "
        "connectivity_at = %(t)s - interval '30 seconds' WHERE device_id = 'dev-1'",
        {"t": NOW},
    )
    assert tick(NOW).applied.opened == 1
