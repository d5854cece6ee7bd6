"""Staff's updates to customers: one message per owner, a line on each owner's incident page,
an outage's reminders carrying the latest update, and a nudge when a promise passes."""

from datetime import UTC, datetime, timedelta

import pytest
from support import add_channel, auth, count, make_device

import incidents
from alerts.escalation import EscalationPolicy, OpenCritical, reminder_due
from alerts.notices import record_notices
from alerts.updates import KEEP_POSTED, STILL_ON_IT, Promise, nudge_due, update_notices
from incidents import DeviceProblem, GroupProblem

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)
HOUR = timedelta(hours=1)
POLICY = EscalationPolicy(escalate_after_s=900, remind_every_s=4 * 3600, max_reminders=3)


# -- pure decisions -------------------------------------------------------------------------


def outage(**overrides) -> OpenCritical:
    values = dict(
        id=7,
        scope="fleet",
        device_id=None,
        status="open",
        opened_at=NOW,
        escalated_at=None,
        reminded_at=None,
        reminders=0,
        summary="30 devices offline: region north",
        details={"customers_told_at": (NOW + 10 * MIN).isoformat(sep=" ")},
        in_outage=False,
        told=False,
    )
    values.update(overrides)
    return OpenCritical(**values)


@pytest.mark.parametrize(
    ("overrides", "at", "due"),
    [
        ({}, NOW + 10 * MIN + 4 * HOUR - MIN, False),
        ({}, NOW + 10 * MIN + 4 * HOUR, True),  # told, then nothing new for a period
        ({"details": {}}, NOW + 9 * HOUR, False),  # owners not told yet: their alerts wait
        # An update is the last word: the period runs from it.
        ({"last_update_at": NOW + 2 * HOUR}, NOW + 5 * HOUR, False),
        ({"last_update_at": NOW + 2 * HOUR}, NOW + 6 * HOUR, True),
        ({"details": {}, "last_update_at": NOW}, NOW + 4 * HOUR, True),  # told by the update
        ({"reminded_at": NOW + 5 * HOUR, "reminders": 1}, NOW + 9 * HOUR - MIN, False),
        ({"reminded_at": NOW + 5 * HOUR, "reminders": 1}, NOW + 9 * HOUR, True),
        ({"reminded_at": NOW + 5 * HOUR, "reminders": 3}, NOW + 20 * HOUR, False),
    ],
)
def test_an_outage_reminds_its_owners_a_period_after_the_last_word(overrides, at, due):
    assert reminder_due(outage(**overrides), at, POLICY) is due


def promise(**overrides) -> Promise:
    values = dict(
        id=1,
        device_id="cam-1",
        status="open",
        summary="x",
        next_update_at=NOW + HOUR,
        last_update_at=NOW,
    )
    values.update(overrides)
    return Promise(**values)


@pytest.mark.parametrize(
    ("overrides", "at", "due"),
    [
        ({}, NOW + HOUR, False),  # "by 13:00": at 13:00 it is not broken yet
        ({}, NOW + HOUR + timedelta(seconds=1), True),
        ({"status": "acknowledged"}, NOW + 2 * HOUR, True),
        ({"status": "resolved"}, NOW + 2 * HOUR, False),
        ({"nudged_at": NOW + HOUR + MIN}, NOW + 2 * HOUR, False),  # once per promise
        ({"next_update_at": None}, NOW + 2 * HOUR, False),
    ],
)
def test_staff_are_nudged_once_a_promised_update_is_late(overrides, at, due):
    assert nudge_due(promise(**overrides), at) is due


# -- against the database -------------------------------------------------------------------


def device_incident(conn, device_id: str, now=NOW) -> int:
    problem = DeviceProblem(
        device_id, "offline", "warning", "{device} offline", {"reason": "silent"}
    )
    return incidents.open_device_incidents(conn, [problem], now)[0].id


def owned_by(conn, http_sink, customer: str, devices: list[str]) -> None:
    for device_id in devices:
        make_device(
            conn,
            device_id,
            model_id="camera-v1",
            customer_id=customer,
            name=f"Cam {device_id}",
            serial=f"SN-{device_id}",
            region="north",
        )
    add_channel(conn, customer, http_sink.url(customer))


def sent_templates(conn) -> list[tuple[str, str]]:
    return conn.execute(
        "SELECT coalesce(customer_id, 'staff'), template FROM notifications ORDER BY 1"
    ).fetchall()


def test_an_update_on_a_device_incident_is_one_message_and_a_line_its_owner_reads(
    conn, api, keys, route, make_dispatcher, http_sink
):
    owned_by(conn, http_sink, "cust-1", ["cam-1"])
    incident_id = device_incident(conn, "cam-1", datetime.now(UTC))
    promised = (datetime.now(UTC) + 2 * HOUR).replace(microsecond=0)
    text = "We know.\x1b[31m <b>Engineers</b> are on it\u202e\r\n\r\n\r\n\r\nSorry!"
    response = api.post(
        f"/api/v1/incidents/{incident_id}/updates",
        headers=auth(keys.staff),
        json={"text": text, "next_update_at": promised.isoformat()},
    )
    assert response.status_code == 201, response.text
    clean = "We know.[31m <b>Engineers</b> are on it\n\nSorry!"
    staff_line = response.json()["timeline"][-1]
    assert staff_line["kind"] == "update" and staff_line["detail"]["text"] == clean
    assert "(by key" in staff_line["text"] and "test staff" in staff_line["text"]

    now = datetime.now(UTC)
    route(now)
    assert sent_templates(conn) == [("cust-1", "incident_update")]
    assert make_dispatcher().run_once(now) == 1
    [(title, body)] = http_sink.by_path()["/cust-1"]
    assert title == "Update on your camera Cam cam-1"
    assert "about your Cam cam-1 (camera, serial SN-cam-1)" in body
    assert clean in body  # as written: no markup is interpreted or dropped
    assert f"Our next update will come by {promised:%H:%M} on" in body

    # The owner's own page shows the line, in the same words, without who wrote it.
    owner = api.get(f"/api/v1/incidents/{incident_id}", headers=auth(keys.customer("cust-1")))
    [line] = [e for e in owner.json()["timeline"] if e["kind"] == "update"]
    assert line["detail"] == {"text": clean, "next_update_at": promised.isoformat()}
    assert staff_line["text"].startswith(line["text"]) and "test staff" not in owner.text


@pytest.fixture
def outage_of_30(conn, http_sink):
    """A fleet outage of 30 cameras over 12 owners (cust-00 has 3), all still down, and one
    more device of cust-12 that came back; each owner has one channel, staff one."""
    owners = {f"cust-{i:02d}": 3 if i < 6 else 2 for i in range(12)}
    devices, n = {}, 0
    for customer, how_many in owners.items():
        devices[customer] = [f"n-{n + k:02d}" for k in range(how_many)]
        owned_by(conn, http_sink, customer, devices[customer])
        n += how_many
    assert n == 30
    owned_by(conn, http_sink, "cust-12", ["n-30"])
    conn.execute("INSERT INTO staff_channels (apprise_url) VALUES (%s)", (http_sink.url("staff"),))
    group = incidents.open_group_incident(
        conn,
        GroupProblem(
            "fleet",
            "fleet_outage",
            "region:north",
            "critical",
            "31 devices offline: region north",
            {"down": 31, "size": 31, "group": "region north"},
        ),
        NOW,
    )
    members = {d: device_incident(conn, d) for ds in [*devices.values(), ["n-30"]] for d in ds}
    incidents.attach(conn, group.id, list(members.values()), NOW)
    incidents.resolve(conn, [members["n-30"]], NOW + MIN, reason="heartbeat")
    return group.id, devices, members


def test_an_update_on_an_outage_is_one_message_per_owner_and_on_every_owners_page(
    conn, api, keys, route, make_dispatcher, http_sink, outage_of_30
):
    group_id, devices, members = outage_of_30
    response = api.post(
        f"/api/v1/incidents/{group_id}/updates",
        headers=auth(keys.admin),
        json={"text": "A provider's fibre is cut; engineers are on site."},
    )
    assert response.status_code == 201, response.text
    assert [e["kind"] for e in response.json()["timeline"]][-1] == "update"
    assert count(conn, "SELECT count(*) FROM notices WHERE template = 'incident_update'") == 12

    now = datetime.now(UTC)
    route(now)
    assert sent_templates(conn) == [(c, "incident_update") for c in sorted(devices)]
    assert make_dispatcher().run_once(now) == 12
    sent = http_sink.by_path()
    assert sorted(sent) == [f"/{c}" for c in sorted(devices)]  # not cust-12, whose is back
    [(title, body)] = sent["/cust-00"]
    assert title == "Update on 3 of your devices"
    for device_id in devices["cust-00"]:
        assert f"Cam {device_id} (camera, serial SN-{device_id})" in body
    assert "Cam n-03" not in body and "fibre is cut" in body and KEEP_POSTED in body

    for customer, owned in devices.items():
        key = keys.customer(customer)
        for device_id in owned:
            page = api.get(f"/api/v1/incidents/{members[device_id]}", headers=auth(key)).json()
            texts = [e["text"] for e in page["timeline"] if e["kind"] == "update"]
            assert texts == [
                "Update from our team: A provider's fibre is cut; engineers are on site."
            ]
    # What became of the message is on the owner's own page (their first device's incident).
    page = api.get(f"/api/v1/incidents/{members['n-00']}", headers=auth(keys.customer("cust-00")))
    assert [e["kind"] for e in page.json()["timeline"]][-2:] == ["update", "notified"]
    back = api.get(f"/api/v1/incidents/{members['n-30']}", headers=auth(keys.customer("cust-12")))
    assert all(e["kind"] != "update" for e in back.json()["timeline"])


def test_update_refusals(conn, api, keys, outage_of_30):
    members = outage_of_30[2]
    url = f"/api/v1/incidents/{members['n-00']}/updates"
    refused = [
        (members["n-30"], {"text": "x"}, 409),  # resolved
        (2**62, {"text": "x"}, 404),
        (members["n-00"], {"text": "x" * 1001}, 422),
        (members["n-00"], {"text": "\x00\x07 \u202e"}, 422),  # nothing visible
        (members["n-00"], {"text": "x", "next_update_at": "2026-12-06T15:00:00"}, 422),
        (members["n-00"], {"text": "x", "next_update_at": "2020-01-01T15:00:00Z"}, 422),
        (members["n-00"], {"text": "x", "html": True}, 422),
    ]
    for incident_id, body, status in refused:
        response = api.post(
            f"/api/v1/incidents/{incident_id}/updates", headers=auth(keys.staff), json=body
        )
        assert response.status_code == status, (body, response.text)
    blind = incidents.open_group_incident(
        conn, GroupProblem("system", "blind_spot", "ingest", "critical", "blind"), NOW
    )
    response = api.post(
        f"/api/v1/incidents/{blind.id}/updates", headers=auth(keys.staff), json={"text": "x"}
    )
    assert response.status_code == 422
    for key in (keys.customer("cust-00"), keys.firmware):
        assert api.post(url, headers=auth(key), json={"text": "x"}).status_code == 403
    # Nothing of it was kept: no line, no notice.
    assert count(conn, "SELECT count(*) FROM incident_events WHERE kind = 'update'") == 0
    assert count(conn, "SELECT count(*) FROM notices") == 0


def post(conn, incident_id: int, text: str, at: datetime, promised: datetime | None = None):
    """Post an update at `at`, as the route does."""
    with conn.transaction():
        posted = incidents.post_update(
            conn, incident_id, "key 9 (ops)", text, at, next_update_at=promised
        )
        record_notices(conn, update_notices(conn, posted, at), at)


def test_an_outage_reminds_with_staff_latest_update_or_that_we_are_on_it(
    conn, make_alerts, route, make_dispatcher, http_sink, outage_of_30
):
    group_id = outage_of_30[0]
    alerts = make_alerts(alerts_remind_every_s=4 * 3600, alerts_max_reminders=3)
    incidents.tell_members(conn, group_id, "31 devices in region north", NOW + 10 * MIN)

    first = NOW + 10 * MIN + 4 * HOUR
    assert alerts.review(first - MIN).outage_reminded == 0
    assert alerts.review(first).outage_reminded == 12
    route(first)
    make_dispatcher().run_once(first)
    title, body = http_sink.by_path()["/cust-00"][-1]
    assert title == "Still working on the outage affecting 3 of your devices"
    assert STILL_ON_IT in body and "for 4 h 10 min now" in body

    # Staff post an update: it goes at once, and the next reminder carries it, a period on.
    posted_at = first + HOUR
    post(conn, group_id, "Fibre spliced; devices return over the next hour.", posted_at)
    route(posted_at)
    make_dispatcher().run_once(posted_at)
    assert alerts.review(posted_at + 4 * HOUR - MIN).outage_reminded == 0
    assert alerts.review(posted_at + 4 * HOUR).outage_reminded == 12
    route(posted_at + 4 * HOUR)
    make_dispatcher().run_once(posted_at + 4 * HOUR)
    titles = [t for t, _ in http_sink.by_path()["/cust-07"]]
    assert titles == [
        "Still working on the outage affecting 2 of your devices",
        "Update on 2 of your devices",
        "Still working on the outage affecting 2 of your devices",
    ]
    body = http_sink.by_path()["/cust-07"][-1][1]
    assert "The latest from our team (17:10 on 6 Dec 2026 (UTC)): Fibre spliced" in body
    assert STILL_ON_IT not in body
    # No device of the outage was reminded on its own.
    assert (
        count(conn, "SELECT count(*) FROM notices WHERE template = 'device_offline_reminder'") == 0
    )


def test_a_passed_promise_nudges_staff_once_and_a_new_update_makes_a_new_one(
    conn, make_alerts, route, make_dispatcher, http_sink, outage_of_30
):
    group_id, _, _ = outage_of_30
    incidents.acknowledge(conn, group_id, "key 9 (ops)", NOW)  # staff are on it: no escalation
    alerts = make_alerts()
    post(conn, group_id, "On it.", NOW + HOUR, promised=NOW + 3 * HOUR)
    assert alerts.review(NOW + 3 * HOUR).nudged == 0
    # An update before the promise passes keeps it (here, with a new one).
    post(conn, group_id, "Still on it.", NOW + 2 * HOUR, promised=NOW + 4 * HOUR)
    assert alerts.review(NOW + 3 * HOUR + MIN).nudged == 0
    assert alerts.review(NOW + 4 * HOUR + MIN).nudged == 1
    assert alerts.review(NOW + 5 * HOUR).nudged == 0
    route(NOW + 5 * HOUR)
    staff = conn.execute(
        "SELECT template, context->>'promised_utc' FROM notifications WHERE customer_id IS NULL "
        "AND template = 'update_promise_missed'"
    ).fetchall()
    assert staff == [("update_promise_missed", "16:00 UTC on 6 Dec 2026")]
    make_dispatcher().run_once(NOW + 5 * HOUR)
    titles = [t for t, _ in http_sink.by_path()["/staff"]]
    assert "Update promised by 16:00 UTC on 6 Dec 2026 not posted: 31 devices offline" in titles[-1]
    # Customers hear nothing of it; staff's timeline says so.
    assert not any(
        "promised" in t for p, m in http_sink.by_path().items() if p != "/staff" for t, _ in m
    )
    missed = "SELECT count(*) FROM incident_events WHERE incident_id = %s AND kind = %s"
    assert count(conn, missed, group_id, "update_promise_missed") == 1
    # A new update makes a new promise, checked again.
    post(conn, group_id, "Nearly there.", NOW + 6 * HOUR, promised=NOW + 7 * HOUR)
    assert alerts.review(NOW + 7 * HOUR + MIN).nudged == 1


def test_updates_keep_to_quiet_hours_and_name_only_the_devices_still_the_owners(
    conn, route, http_sink, outage_of_30
):
    group_id = outage_of_30[0]
    conn.execute(
        "UPDATE customers SET timezone = 'UTC', quiet_hours_start = '22:00', "
        "quiet_hours_end = '07:00' WHERE id = 'cust-01'"
    )
    late = datetime(2026, 12, 6, 23, 0, tzinfo=UTC)
    post(conn, group_id, "We know.", late)
    # One of cust-00's devices changed hands after the notice was recorded.
    conn.execute("UPDATE devices SET customer_id = 'cust-11' WHERE id = 'n-01'")
    route(late)
    rows = {
        customer: (due, text)
        for customer, due, text in conn.execute(
            "SELECT customer_id, due_at, context->>'devices_text' FROM notifications"
        )
    }
    assert rows["cust-01"][0] == datetime(2026, 12, 7, 7, 0, tzinfo=UTC)
    assert rows["cust-02"][0] == late
    assert rows["cust-00"][1] == (
        "2 of your devices: Cam n-00 (camera, serial SN-n-00), Cam n-02 (camera, serial SN-n-02)"
    )
    assert "n-01" not in rows["cust-11"][1]  # not named to its new owner in their message


def test_a_waiting_update_is_cancelled_when_its_incident_is_over(conn, route, outage_of_30):
    group_id, _, _ = outage_of_30
    conn.execute(
        "UPDATE customers SET timezone = 'UTC', quiet_hours_start = '22:00', "
        "quiet_hours_end = '07:00'"
    )
    late = datetime(2026, 12, 6, 23, 0, tzinfo=UTC)
    post(conn, group_id, "We know.", late)
    route(late)
    assert count(conn, "SELECT count(*) FROM notifications WHERE status = 'pending'") == 12
    # The outage is over, and of cust-00's devices the first is back too.
    incidents.resolve(conn, [group_id], late + HOUR, reason="devices back")
    assert count(conn, "SELECT count(*) FROM notifications WHERE status = 'pending'") == 12
    first = conn.execute(
        "SELECT incident_id FROM notifications WHERE customer_id = 'cust-00'"
    ).fetchone()[0]
    incidents.resolve(conn, [first], late + HOUR, reason="heartbeat")
    assert count(conn, "SELECT count(*) FROM notifications WHERE status = 'cancelled'") == 1
