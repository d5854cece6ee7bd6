"""A group outage is one fleet incident for staff; customers' alerts wait, then say 'we know'."""

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from support import add_channel, count, make_device, make_overdue

from monitor.correlation import (
    FleetPolicy,
    group_filter,
    group_keys,
    outage_groups,
    outage_over,
    smallest_first,
)

NOW = datetime.now(UTC).replace(microsecond=0)
MIN = timedelta(minutes=1)
POLICY = FleetPolicy(min_devices=20, min_pct=5.0)


@pytest.mark.parametrize(
    ("down", "size", "outage"),
    [
        (19, 20, False),  # nearly all of a small group, but under the minimum count
        (20, 20, True),
        (20, 400, True),  # 5%
        (20, 401, False),  # just under 5%
        (600, 10_000, True),
        (499, 10_000, False),
    ],
)
def test_outage_needs_both_the_count_and_the_share(down, size, outage):
    combos = frozenset({("m", "1.0", "north")})
    found = outage_groups({"model:m": combos}, {"model:m": down}, {"model:m": size}, POLICY)
    assert found == (["model:m"] if outage else [])


def test_groups_holding_the_same_dropped_devices_are_one_outage_named_by_the_smallest():
    north = frozenset({("cam", "1.0", "north")})
    down = {"all": north, "model:cam": north, "region:north": north}
    counts = {"all": 30, "model:cam": 30, "region:north": 30}
    sizes = {"all": 60, "model:cam": 60, "region:north": 30, "region:south": 30}
    assert outage_groups(down, counts, sizes, POLICY) == ["region:north"]
    # Of one size, the more specific group names it.
    del down["region:north"], counts["region:north"]
    assert outage_groups(down, counts, {"all": 30, "model:cam": 30}, POLICY) == ["model:cam"]


def test_group_keys_and_what_they_match():
    keys = group_keys("cam", "2.4.1", "north", POLICY.groups)
    assert keys == ["all", "model:cam", "firmware:cam@2.4.1", "region:north"]
    assert group_keys("cam", None, None, POLICY.groups) == ["all", "model:cam"]
    assert group_filter("firmware:cam@2.4.1") == {
        "model": "cam",
        "firmware": "2.4.1",
        "region": None,
    }
    assert group_filter("all") == {"model": None, "firmware": None, "region": None}
    sizes = {"all": 1000, "model:cam": 300, "firmware:cam@2.4.1": 40, "region:north": 100}
    assert sorted(keys, key=lambda k: smallest_first(k, sizes))[0] == "firmware:cam@2.4.1"


@pytest.mark.parametrize(
    ("still", "affected", "over"), [(100, 100, False), (11, 100, False), (10, 100, True)]
)
def test_outage_is_over_when_most_of_its_devices_are_back(still, affected, over):
    assert outage_over(still, affected, POLICY) is over


@pytest.fixture
def region(conn, http_sink):
    """30 cameras in the north and 30 in the south, one owner each, and a staff channel."""
    for place in ("north", "south"):
        for i in range(30):
            make_device(
                conn,
                f"{place}-{i:02d}",
                model_id="camera-v1",
                region=place,
                name=f"{place.title()} cam {i}",
                serial=f"SN-{place}-{i}",
                customer_id=f"{place}-owner-{i:02d}",
            )
            add_channel(conn, f"{place}-owner-{i:02d}", http_sink.url(f"{place}-owner-{i:02d}"))
    conn.execute("INSERT INTO staff_channels (apprise_url) VALUES (%s)", (http_sink.url("staff"),))
    return [f"north-{i:02d}" for i in range(30)]


def come_back(conn, ids, at):
    conn.execute(
        "UPDATE device_state SET last_received_at = %s, last_seen_at = %s "
        "WHERE device_id = ANY(%s)",
        (at, at, ids),
    )


def statuses(conn) -> Counter:
    return Counter(
        dict(conn.execute("SELECT status, count(*) FROM notifications GROUP BY 1").fetchall())
    )


def test_region_outage_is_one_staff_alert_and_customers_hear_once_that_we_know(
    conn, tick, make_monitor, make_dispatcher, http_sink, region
):
    make_overdue(conn, region[:25], NOW)
    # The south stays online and reporting.
    make_overdue(conn, [f"south-{i:02d}" for i in range(30)], NOW + 60 * MIN)

    tick(NOW)
    fleet = conn.execute(
        "SELECT id, group_key, severity FROM incidents WHERE scope = 'fleet'"
    ).fetchall()
    assert [(key, sev) for _, key, sev in fleet] == [("region:north", "critical")]
    fleet_id = fleet[0][0]
    assert (
        count(conn, "SELECT count(*) FROM incidents WHERE fleet_incident_id = %s", fleet_id) == 25
    )
    assert statuses(conn) == {"held": 25, "pending": 1}

    make_dispatcher().run_once(NOW)
    sent = http_sink.by_path()
    assert list(sent) == ["/staff"]
    assert "25 devices offline" in sent["/staff"][0][0] and "region north" in sent["/staff"][0][0]

    # A straggler drops a minute later: part of the same outage, held too.
    make_overdue(conn, [region[25]], NOW + MIN)
    tick(NOW + MIN)
    assert (
        count(conn, "SELECT count(*) FROM incidents WHERE fleet_incident_id = %s", fleet_id) == 26
    )
    assert statuses(conn)["held"] == 26

    # Still down after the hold: each owner hears once, that we know.
    assert make_monitor().review(NOW + 9 * MIN).told == 0
    assert make_monitor().review(NOW + 10 * MIN).told == 26
    assert make_monitor().review(NOW + 11 * MIN).told == 0
    assert make_dispatcher().run_once(NOW + 10 * MIN) == 26
    sent = http_sink.by_path()
    owner = sent["/north-owner-03"]
    assert owner == [
        (
            "We know about an outage affecting your camera North cam 3",
            owner[0][1],
        )
    ]
    assert "SN-north-3" in owner[0][1] and "nothing you need to do" in owner[0][1]
    assert "SN-north-4" not in owner[0][1]
    assert not any(path.startswith("/south") for path in sent)

    # They come back: the owners who were told hear it; the outage is over.
    come_back(conn, region[:26], NOW + 20 * MIN)
    tick(NOW + 20 * MIN)
    assert make_monitor().review(NOW + 20 * MIN).resolved == 1
    make_dispatcher().run_once(NOW + 20 * MIN)
    titles = [t for t, _ in http_sink.by_path()["/north-owner-03"]]
    assert titles[-1] == "Your camera North cam 3 is back online"
    assert "Fleet outage over" in http_sink.by_path()["/staff"][-1][0]


def test_outage_over_before_the_hold_releases_only_the_devices_still_down(
    conn, tick, route, make_monitor, make_dispatcher, http_sink, region
):
    make_overdue(conn, region[:25], NOW)
    tick(NOW)
    come_back(conn, region[:23], NOW + 2 * MIN)
    tick(NOW + 2 * MIN)
    reviewed = make_monitor().review(NOW + 2 * MIN)
    assert reviewed.resolved == 1 and reviewed.released == 2
    route(NOW + 2 * MIN)
    assert statuses(conn) == {"cancelled": 23, "pending": 2 + 2}  # and two staff notices
    make_dispatcher().run_once(NOW + 2 * MIN)
    sent = http_sink.by_path()
    # The two still offline get their own plain alert; the others hear nothing at all.
    assert sorted(p for p in sent if p != "/staff") == ["/north-owner-23", "/north-owner-24"]
    assert sent["/north-owner-23"][0][0] == "Your camera North cam 23 went offline"


def test_devices_of_a_known_outage_do_not_open_a_second_larger_one(conn, tick, region):
    south = [f"south-{i:02d}" for i in range(30)]
    make_overdue(conn, south, NOW + 60 * MIN)
    make_overdue(conn, region[:25], NOW)
    tick(NOW)
    # Five more elsewhere: with the north's 25, 30 of all 60 devices are down, but the
    # north's are explained by their own outage.
    make_overdue(conn, south[:5], NOW + MIN)
    tick(NOW + MIN)
    fleet = conn.execute("SELECT group_key FROM incidents WHERE scope = 'fleet'").fetchall()
    assert fleet == [("region:north",)]


def test_a_few_devices_down_is_not_an_outage(conn, tick, region):
    make_overdue(conn, region[:5], NOW)
    tick(NOW)
    assert count(conn, "SELECT count(*) FROM incidents WHERE scope = 'fleet'") == 0
    assert statuses(conn) == {"pending": 5}


def test_an_outage_never_holds_an_alarm_panel_its_owner_hears_at_once_with_the_context(
    conn, tick, route, make_monitor, make_dispatcher, http_sink
):
    east = [f"east-cam-{i:02d}" for i in range(35)] + [f"east-panel-{i}" for i in range(5)]
    for device in east:
        panel = "panel" in device
        make_device(
            conn,
            device,
            model_id="alarm-panel-v3" if panel else "camera-v1",
            region="east",
            name=device.replace("east-", "").title(),
            customer_id=f"owner-{device}",
        )
        add_channel(conn, f"owner-{device}", http_sink.url(device))
    panels = [d for d in east if "panel" in d]
    # Every deadline passes at NOW: the outage is found in the tick that finds them.
    make_overdue(conn, east, NOW, seconds=0)
    tick(NOW)
    # The cameras are one model's outage, the panels the region's rest: both kinds held.
    outages = count(conn, "SELECT count(*) FROM incidents WHERE scope = 'fleet'")
    assert outages >= 1
    assert count(conn, "SELECT count(*) FROM incidents WHERE fleet_incident_id IS NOT NULL") == 40
    by_template = dict(
        conn.execute(
            "SELECT template || ':' || status, count(*) FROM notifications "
            "WHERE customer_id IS NOT NULL GROUP BY 1"
        ).fetchall()
    )
    assert by_template == {"device_offline:held": 35, "device_offline_during_outage:pending": 5}
    due = conn.execute(
        "SELECT max(due_at) FROM notifications WHERE template = 'device_offline_during_outage'"
    ).fetchone()[0]
    assert due <= NOW  # at the panel's own deadline: not a second of hold

    make_dispatcher().run_once(NOW)
    sent = http_sink.by_path()
    assert sorted(sent) == sorted(f"/{p}" for p in panels)
    title, body = sent["/east-panel-0"][0]
    assert title == "Urgent: Your alarm panel Panel-0 went offline"
    assert "Sent even during quiet hours and snoozes, because it is urgent." in body
    assert "devices in region east went offline at once" in body
    assert "we are looking into it" in body and "Your home may not be protected" in body

    # The outage lasts: the cameras' owners are told once that we know; not the panels'.
    assert make_monitor().review(NOW + 10 * MIN).told == 35
    make_dispatcher().run_once(NOW + 10 * MIN)
    sent = http_sink.by_path()
    assert all(len(sent[f"/{p}"]) == 1 for p in panels)
    assert all(len(sent[f"/{c}"]) == 1 for c in east if "cam" in c)

    # It ends: every owner hears once more, that the device is back.
    come_back(conn, east, NOW + 20 * MIN)
    tick(NOW + 20 * MIN)
    assert make_monitor().review(NOW + 20 * MIN).resolved == outages
    make_dispatcher().run_once(NOW + 20 * MIN)
    sent = http_sink.by_path()
    assert {len(sent[f"/{d}"]) for d in east} == {2}
    assert {sent[f"/{d}"][1][0].split(" is ")[1] for d in east} == {"back online"}
