"""A device that keeps dropping off becomes one 'unstable connection' incident."""

from datetime import UTC, datetime, timedelta

from support import add_channel, make_device, make_overdue

from monitor.flapping import FlapPolicy, is_unstable

NOW = datetime.now(UTC).replace(microsecond=0)
MIN = timedelta(minutes=1)


def test_is_unstable_from_the_third_spell():
    policy = FlapPolicy(count=3)
    assert [is_unstable(n, policy) for n in (1, 2, 3, 4)] == [False, False, True, True]


def test_flapping_device_sends_one_unstable_notice_not_a_stream(conn, tick):
    make_device(conn, "cam-1", model_id="camera-v1", name="Porch", customer_id="c1")
    add_channel(conn, "c1", "json://127.0.0.1:9/owner")
    for spell in range(5):
        down = NOW + spell * 5 * MIN
        make_overdue(conn, ["cam-1"], down)
        assert tick(down).applied.changed["offline"] == 1
        # Whatever was queued went out before the device came back.
        conn.execute("UPDATE notifications SET status = 'sent' WHERE status = 'pending'")
        conn.execute(
            "UPDATE device_state SET last_received_at = %s, last_seen_at = %s",
            (down + MIN, down + MIN),
        )
        assert tick(down + 2 * MIN).applied.changed["online"] == 1

    templates = [t for (t,) in conn.execute("SELECT template FROM notifications ORDER BY id")]
    assert templates == [
        "device_offline",
        "device_back_online",
        "device_offline",
        "device_back_online",
        "device_unstable",
    ]
    kinds = conn.execute(
        "SELECT kind, count(*) FROM incidents GROUP BY kind ORDER BY kind"
    ).fetchall()
    assert kinds == [("offline", 5), ("unstable_connection", 1)]
    suppressed = conn.execute(
        "SELECT count(*) FROM incident_events WHERE kind = 'suppressed'"
    ).fetchone()[0]
    assert suppressed == 3  # the 3rd, 4th and 5th offline spells

    # Online and beating for a whole stable period: the unstable connection is over.
    last_back = NOW + 4 * 5 * MIN + 2 * MIN

    def beating_at(t):
        conn.execute(
            "UPDATE device_state SET last_received_at = %(t)s, last_seen_at = %(t)s, "
            "overdue_at = %(t)s + interval '4 minutes'",
            {"t": t},
        )
        return t

    tick(beating_at(last_back + timedelta(minutes=30)))
    assert (
        conn.execute("SELECT status FROM incidents WHERE kind = 'unstable_connection'").fetchone()[
            0
        ]
        == "open"
    )
    tick(beating_at(last_back + timedelta(minutes=61)))
    assert (
        conn.execute("SELECT status FROM incidents WHERE kind = 'unstable_connection'").fetchone()[
            0
        ]
        == "resolved"
    )
