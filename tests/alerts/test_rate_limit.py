"""A customer's hourly limit per channel: the rest waits and goes as one digest; critical goes."""

from datetime import UTC, datetime, timedelta

import pytest
from support import add_channel, count, make_device, make_overdue

from alerts.ratelimit import ChannelUse, deferred_until

NOW = datetime.now(UTC).replace(microsecond=0)
MIN = timedelta(minutes=1)


@pytest.mark.parametrize(
    ("sent", "severities", "until"),
    [
        (1, ["warning"], None),
        (2, ["warning"], NOW + 60 * MIN),
        (5, ["warning", "info"], NOW + 60 * MIN),
        (2, ["warning", "critical"], None),  # an alarm panel offline always goes
    ],
)
def test_deferred_until(sent, severities, until):
    use = ChannelUse(sent=sent, oldest=NOW, limit=2)
    assert deferred_until(use, severities, NOW + 5 * MIN) == until


def test_over_the_limit_waits_for_the_hour_then_goes_as_one_digest(
    conn, tick, make_dispatcher, http_sink
):
    for i in range(4):
        make_device(conn, f"th-{i}", name=f"Room {i}", serial=f"TH-{i}", customer_id="ann")
    conn.execute("UPDATE customers SET max_messages_per_hour = 2 WHERE id = 'ann'")
    add_channel(conn, "ann", http_sink.url("ann"))
    dispatcher = make_dispatcher()

    for i, at in enumerate([NOW, NOW + MIN]):
        make_overdue(conn, [f"th-{i}"], at)
        tick(at)
        assert dispatcher.run_once(at) == 1
    # The third and fourth within the hour wait, with the reason on their timelines.
    for i, at in ((2, NOW + 2 * MIN), (3, NOW + 3 * MIN)):
        make_overdue(conn, [f"th-{i}"], at)
        tick(at)
        assert dispatcher.run_once(at) == 0
    assert len(http_sink.received()) == 2
    assert dispatcher.counters.rate_limited == 2
    limited = "SELECT count(*) FROM incident_events WHERE kind = 'rate_limited'"
    assert count(conn, limited) == 2
    waiting = conn.execute(
        "SELECT status, attempts, due_at FROM notifications WHERE device_id IN ('th-2', 'th-3')"
    ).fetchall()
    assert all(status == "pending" and attempts == 0 for status, attempts, _ in waiting)
    assert all(due > NOW + 59 * MIN for _, _, due in waiting)

    # A critical alert is never held back.
    make_device(conn, "panel-1", model_id="alarm-panel-v3", name="Hall", customer_id="ann")
    make_overdue(conn, ["panel-1"], NOW + 4 * MIN)
    tick(NOW + 4 * MIN)
    assert dispatcher.run_once(NOW + 4 * MIN) == 1
    assert http_sink.received()[-1][0] == "Urgent: Your alarm panel Hall went offline"

    # The hour is up: both waiting notices go out together.
    assert dispatcher.run_once(NOW + 62 * MIN) == 2
    title, body = http_sink.received()[-1]
    assert title == "2 of your devices are offline"
    assert "TH-2" in body and "TH-3" in body and len(http_sink.received()) == 4
