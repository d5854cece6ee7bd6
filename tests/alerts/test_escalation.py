"""Open critical incidents: reminders to the owner, escalation to staff unless acknowledged."""

from datetime import UTC, datetime, timedelta

import pytest
from support import add_channel, count, make_device, make_overdue

from alerts.escalation import EscalationPolicy, OpenCritical, escalation_due, reminder_due
from incidents import acknowledge

NOW = datetime.now(UTC).replace(microsecond=0)
MIN = timedelta(minutes=1)
HOUR = timedelta(hours=1)
POLICY = EscalationPolicy(escalate_after_s=900, remind_every_s=4 * 3600, max_reminders=3)


def incident(**overrides) -> OpenCritical:
    values = dict(
        id=1,
        scope="device",
        device_id="panel-1",
        status="open",
        opened_at=NOW,
        escalated_at=None,
        reminded_at=None,
        reminders=0,
        summary="Alarm panel v3 Hall went offline",
        details={},
        in_outage=False,
        told=True,
    )
    values.update(overrides)
    return OpenCritical(**values)


@pytest.mark.parametrize(
    ("overrides", "at", "due"),
    [
        ({}, NOW + 14 * MIN, False),
        ({}, NOW + 15 * MIN, True),
        ({"status": "acknowledged"}, NOW + HOUR, False),
        ({"escalated_at": NOW + 15 * MIN}, NOW + HOUR, False),
        ({"scope": "fleet", "device_id": None}, NOW + 15 * MIN, True),
    ],
)
def test_escalation_due(overrides, at, due):
    assert escalation_due(incident(**overrides), at, POLICY) is due


@pytest.mark.parametrize(
    ("overrides", "at", "due"),
    [
        ({}, NOW + 3 * HOUR, False),
        ({}, NOW + 4 * HOUR, True),
        ({"reminded_at": NOW + 4 * HOUR, "reminders": 1}, NOW + 7 * HOUR, False),
        ({"reminded_at": NOW + 4 * HOUR, "reminders": 1}, NOW + 8 * HOUR, True),
        ({"reminders": 3, "reminded_at": NOW}, NOW + 9 * HOUR, False),
        # Acknowledged by staff, still offline: the owner still wants to know.
        ({"status": "acknowledged"}, NOW + 4 * HOUR, True),
        ({"told": False}, NOW + 4 * HOUR, False),
        ({"in_outage": True}, NOW + 4 * HOUR, False),
        ({"scope": "fleet", "device_id": None}, NOW + 4 * HOUR, False),
    ],
)
def test_reminder_due(overrides, at, due):
    assert reminder_due(incident(**overrides), at, POLICY) is due


@pytest.fixture
def panel(conn, http_sink, tick, make_dispatcher):
    """An alarm panel gone offline at NOW, its owner told; a staff channel listening."""
    make_device(
        conn, "panel-1", model_id="alarm-panel-v3", name="Hall", serial="AP-1", customer_id="ann"
    )
    make_device(conn, "thermo-1", name="Kitchen", customer_id="ann")
    add_channel(conn, "ann", http_sink.url("ann"))
    conn.execute("INSERT INTO staff_channels (apprise_url) VALUES (%s)", (http_sink.url("staff"),))
    make_overdue(conn, ["panel-1", "thermo-1"], NOW)
    tick(NOW)
    assert make_dispatcher().run_once(NOW) == 2
    return conn.execute(
        "SELECT id FROM incidents WHERE device_id = 'panel-1' AND severity = 'critical'"
    ).fetchone()[0]


def test_unacknowledged_critical_incident_escalates_to_staff_once(
    conn, panel, make_alerts, make_dispatcher, http_sink
):
    assert make_alerts().review(NOW + 14 * MIN).escalated == 0
    assert make_alerts().review(NOW + 15 * MIN).escalated == 1
    assert make_alerts().review(NOW + 16 * MIN).escalated == 0
    make_dispatcher().run_once(NOW + 16 * MIN)
    staff = http_sink.by_path()["/staff"]
    assert len(staff) == 1
    title, body = staff[0]
    assert title.startswith("Not acknowledged after 15 min") and "Hall" in title
    assert f"fleetwatch incidents ack {panel}" in body
    events = "SELECT count(*) FROM incident_events WHERE incident_id = %s AND kind = 'escalated'"
    assert count(conn, events, panel) == 1


def test_acknowledged_incident_is_not_escalated(conn, panel, make_alerts):
    assert acknowledge(conn, panel, "maria", NOW + 5 * MIN)
    assert not acknowledge(conn, panel, "maria", NOW + 6 * MIN)
    assert make_alerts().review(NOW + HOUR).escalated == 0
    assert conn.execute(
        "SELECT status, acknowledged_by FROM incidents WHERE id = %s", (panel,)
    ).fetchone() == ("acknowledged", "maria")


def test_owner_is_reminded_while_the_panel_stays_offline_a_few_times(
    conn, panel, make_alerts, make_dispatcher, http_sink
):
    alerts, dispatcher = make_alerts(), make_dispatcher()
    reminded = []
    for hours in (3, 4, 5, 8, 12, 16):
        reminded.append(alerts.review(NOW + hours * HOUR).reminded)
        dispatcher.run_once(NOW + hours * HOUR)
    assert reminded == [0, 1, 0, 1, 1, 0]
    ann = http_sink.by_path()["/ann"]
    reminders = [(t, b) for t, b in ann if t.startswith("Urgent: Reminder")]
    assert len(reminders) == 3
    # An alarm panel's reminder is as urgent as its alert (alerts/routing.py is_urgent).
    assert reminders[0][0] == "Urgent: Reminder: your alarm panel Hall is still offline"
    assert "Sent even during quiet hours and snoozes" in reminders[0][1]
    assert "AP-1" in reminders[0][1] and "Kitchen" not in reminders[0][1]
    # The thermostat's incident is a warning: no reminders about it.
    assert count(conn, "SELECT count(*) FROM notifications WHERE device_id = 'thermo-1'") == 1
