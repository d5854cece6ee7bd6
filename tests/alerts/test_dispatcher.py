"""The dispatcher under failure: crashes, a channel that is down, a channel that cannot work."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from support import add_channel, count, make_device, make_overdue, wait_until

from alerts.dispatcher import Dispatcher
from alerts.send import AppriseSender
from alerts.service import Alerts
from monitor.service import Monitor

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def queued(conn, tick):
    """Three devices of three owners just went offline: three notifications are due."""

    def build(url_for) -> list[int]:
        ids = []
        for i in range(3):
            make_device(conn, f"dev-{i}", customer_id=f"c{i}", name=f"Thing {i}")
            add_channel(conn, f"c{i}", url_for(i))
            ids.append(f"dev-{i}")
        make_overdue(conn, ids, NOW)
        assert tick(NOW).applied.notices == 3
        assert count(conn, "SELECT count(*) FROM notifications") == 3
        return ids

    return build


def statuses(conn) -> list[str]:
    return [s for (s,) in conn.execute("SELECT status FROM notifications ORDER BY id")]


def test_dispatcher_killed_after_claiming_loses_nothing(conn, queued, smtp, make_dispatcher):
    queued(lambda i: smtp.url(f"owner{i}@example.com"))
    dead = make_dispatcher()
    assert len(dead.claim(NOW)) == 3  # ... and it dies before sending anything
    assert statuses(conn) == ["sending"] * 3

    survivor = make_dispatcher()
    assert survivor.run_once(NOW + timedelta(seconds=5)) == 0  # leases still held
    lease = survivor.settings.alerts_lease_s
    assert survivor.run_once(NOW + timedelta(seconds=lease + 1)) == 3
    assert statuses(conn) == ["sent"] * 3
    assert sorted(m["to"] for _, m in smtp.messages) == [f"owner{i}@example.com" for i in range(3)]
    # The dead dispatcher's attempts stay in the log as never finished.
    assert count(conn, "SELECT count(*) FROM delivery_attempts WHERE finished_at IS NULL") == 3
    assert count(conn, "SELECT count(*) FROM delivery_attempts WHERE ok") == 3


def test_confirmed_sent_is_never_sent_again(conn, queued, smtp, make_dispatcher):
    queued(lambda i: smtp.url(f"owner{i}@example.com"))
    assert make_dispatcher().run_once(NOW) == 3
    later = NOW + timedelta(hours=1)
    assert make_dispatcher().run_once(later) == 0
    assert len(smtp.messages) == 3


def test_send_cut_before_its_record_repeats_once_and_the_log_shows_it(
    conn, queued, smtp, make_dispatcher
):
    queued(lambda i: smtp.url(f"owner{i}@example.com"))
    dying = make_dispatcher()
    messages = dying.claim(NOW)
    for message in messages:
        dying._send(message)  # delivered ... and killed before recording it
    assert len(smtp.messages) == 3

    survivor = make_dispatcher()
    assert survivor.run_once(NOW + timedelta(seconds=survivor.settings.alerts_lease_s + 1)) == 3
    assert len(smtp.messages) == 6
    rows = conn.execute(
        "SELECT notification_id, count(*), count(finished_at) FROM delivery_attempts "
        "GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert [(n, f) for _, n, f in rows] == [(2, 1)] * 3


def test_channel_down_is_retried_with_backoff_then_delivered(
    conn, queued, http_sink, make_dispatcher
):
    queued(lambda i: http_sink.url(f"hook{i}"))
    http_sink.fail_next = 6  # every send of the first two rounds fails
    dispatcher = make_dispatcher(alerts_backoff_s=10)
    assert dispatcher.run_once(NOW) == 3
    assert statuses(conn) == ["pending"] * 3
    due, error = conn.execute("SELECT min(due_at), max(last_error) FROM notifications").fetchone()
    assert due == NOW + timedelta(seconds=10)  # backoff from the claim's clock
    assert "503" in error

    assert dispatcher.run_once(due) == 3  # second attempt: still down
    due = conn.execute("SELECT min(due_at) FROM notifications").fetchone()[0]
    assert dispatcher.run_once(due + timedelta(seconds=21)) == 3
    assert statuses(conn) == ["sent"] * 3
    assert sorted(t for t, _ in http_sink.received()) == sorted(
        f"Your thermostat Thing {i} went offline" for i in range(3)
    )
    assert count(conn, "SELECT count(*) FROM delivery_attempts") == 9
    notified = count(conn, "SELECT count(*) FROM incident_events WHERE kind = 'notified'")
    assert notified == 3


def test_channel_that_cannot_work_fails_at_once_with_the_reason(conn, queued, make_dispatcher):
    queued(lambda i: "nosuchservice://token-abcdef/123")
    assert make_dispatcher().run_once(NOW) == 3
    rows = conn.execute("SELECT status, last_error, attempts FROM notifications").fetchall()
    assert [(s, a) for s, _, a in rows] == [("failed", 1)] * 3
    assert all(e.startswith("url refused (scheme): nosuchservice://") for _, e, _ in rows)
    assert (
        count(conn, "SELECT count(*) FROM incident_events WHERE kind = 'notification_failed'") == 3
    )


def test_gives_up_after_the_attempt_limit(conn, queued, make_dispatcher):
    queued(lambda i: "json://127.0.0.1:9/closed-port")
    dispatcher: Dispatcher = make_dispatcher(alerts_max_attempts=2, alerts_backoff_s=1)
    dispatcher.run_once(NOW)
    dispatcher.run_once(NOW + timedelta(minutes=1))
    rows = conn.execute("SELECT status, attempts FROM notifications").fetchall()
    assert rows == [("failed", 2)] * 3
    error = conn.execute("SELECT max(last_error) FROM notifications").fetchone()[0]
    assert "Connection error" in error


class Exploding:
    """Apprise, except that a send to one channel raises (a bug in a plugin, say)."""

    def __init__(self, bad_path: str, allowed_networks) -> None:
        self.bad_path = bad_path
        self.real = AppriseSender(allowed_networks=allowed_networks)

    def send(self, url: str, message):
        if url.endswith(self.bad_path):
            raise RuntimeError(f"plugin bug while sending to {url}")
        return self.real.send(url, message)


def test_a_send_that_raises_is_retried_and_the_others_go(
    conn, queued, http_sink, make_settings, dsn
):
    queued(lambda i: http_sink.url(f"hook{i}/token-secret{i}"))
    settings = make_settings()
    exploding = Exploding("/token-secret0", settings.allowed_networks())
    dispatcher = Dispatcher(settings, dsn, sender=exploding)
    try:
        assert dispatcher.run_once(NOW) == 3
    finally:
        dispatcher.close()
    assert sorted(http_sink.by_path()) == ["/hook1/token-secret1", "/hook2/token-secret2"]
    status, error = conn.execute(
        "SELECT status, last_error FROM notifications WHERE device_id = 'dev-0'"
    ).fetchone()
    assert status == "pending" and error.startswith("internal error: RuntimeError: plugin bug")
    assert "token-secret0" not in error  # the channel's secrets are scrubbed


def test_a_running_alerts_process_keeps_sending_after_a_send_raises(
    conn, queued, http_sink, make_settings, dsn, tick
):
    queued(lambda i: http_sink.url(f"hook{i}"))
    settings = make_settings(alerts_poll_s=0.05, alerts_router_s=0.05, alerts_backoff_s=3600)
    alerts = Alerts(settings, dsn, sender=Exploding("/hook0", settings.allowed_networks())).start()
    try:
        wait_until(lambda: len(http_sink.received()) == 2)
        # A later device goes offline: its owner still hears, from the same process.
        make_device(conn, "dev-later", customer_id="late", name="Later thing")
        add_channel(conn, "late", http_sink.url("late"))
        make_overdue(conn, ["dev-later"], datetime.now(UTC))
        monitor = Monitor(make_settings(), dsn)
        try:
            monitor.tick()
        finally:
            monitor.stop()
        wait_until(lambda: "/late" in http_sink.by_path())
    finally:
        alerts.stop()
    assert "/hook0" not in http_sink.by_path()
    assert count(conn, "SELECT count(*) FROM notifications WHERE status = 'sent'") == 3
