"""Site and hub correlation, tick by tick with `now`, against the database: a home whose
router dies is one message naming every device, and one "back online"."""

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from support import add_channel, count, make_device

from ingest.writer import record_progress

T = datetime(2026, 12, 6, 14, 2, tzinfo=UTC)
S = timedelta(seconds=1)
OWNER = "ann"
# Last heard before the router died at T (seconds before), and the model's allowance
# (interval * misses + grace): alarm panel 30*3+30, the others 60*3+60.
HOME = {
    "panel": ("alarm-panel-v3", "Hallway panel", 10, 120),
    "thermo": ("thermostat-v2", "Living room thermostat", 20, 240),
    "cam": ("camera-v1", "Garden camera", 45, 240),
    "charger": ("ev-charger-v1", "Garage charger", 5, 240),
}


def deadline(device: str) -> datetime:
    _, _, ago, allowance = HOME[device]
    return T - ago * S + allowance * S


@pytest.fixture
def home(conn, http_sink):
    for device, (model, name, _, _) in HOME.items():
        make_device(
            conn,
            device,
            model_id=model,
            name=name,
            customer_id=OWNER,
            timezone="Europe/Berlin",
            site_id="oak-12",
            site_name="Home at 12 Oak Street",
            site_address="12 Oak Street, Berlin",
        )
    add_channel(conn, OWNER, http_sink.url(OWNER))
    for device, (_, _, ago, _) in HOME.items():
        heard(conn, device, T - ago * S, deadline(device))
    return list(HOME)


def heard(conn, device: str, at: datetime, overdue: datetime) -> None:
    conn.execute(
        "UPDATE device_state SET status = CASE WHEN status = 'provisioned' THEN 'online' "
        "ELSE status END, status_changed_at = least(status_changed_at, %(at)s), "
        "last_seen_at = %(at)s, last_received_at = %(at)s, overdue_at = %(overdue)s "
        "WHERE device_id = %(id)s",
        {"at": at, "overdue": overdue, "id": device},
    )
    conn.execute(
        "UPDATE device_state SET status_changed_at = %s - interval '1 day' "
        "WHERE device_id = %s AND status = 'online' AND last_received_at = %s",
        (at, device, at),
    )


def beating(conn, devices, now):
    """These devices keep reporting (heard at `now`, next deadline far ahead)."""
    for device in devices:
        heard(conn, device, now, now + 240 * S)


def run(tick, conn, now):
    record_progress(conn, "test-ingest", now)
    return tick(now)


def messages(http_sink) -> list[tuple[str, str]]:
    return http_sink.by_path().get(f"/{OWNER}", [])


def site_incidents(conn):
    return conn.execute(
        "SELECT id, kind, severity, status, group_key FROM incidents WHERE scope = 'site' "
        "ORDER BY id"
    ).fetchall()


def test_router_dies_one_critical_site_message_naming_all_four_then_one_back_online(
    conn, tick, make_dispatcher, http_sink, home
):
    first = min(home, key=deadline)
    assert first == "panel"
    run(tick, conn, deadline(first))
    sites = site_incidents(conn)
    assert [(k, sev, key) for _, k, sev, _, key in sites] == [
        ("site_offline", "critical", "site:oak-12")
    ]
    make_dispatcher().run_once(deadline(first))
    sent = messages(http_sink)
    assert len(sent) == 1
    title, body = sent[0]
    assert title == "Urgent: Home at 12 Oak Street seems to have lost its internet connection"
    for name in ("Hallway panel", "Living room thermostat", "Garden camera", "Garage charger"):
        assert name in body
    assert "12 Oak Street, Berlin" in body
    # Sent at the first device's own deadline (within 5 s), marked urgent.
    sent_at = conn.execute(
        "SELECT max(sent_at), bool_and((context ->> 'urgent')::boolean) FROM notifications "
        "WHERE incident_id = %s",
        (sites[0][0],),
    ).fetchone()
    assert sent_at[0] <= deadline(first) + 5 * S and sent_at[1] is True

    # The others reach their own deadlines: they join the site, nobody is told again.
    for device in sorted(home, key=deadline)[1:]:
        run(tick, conn, deadline(device))
        make_dispatcher().run_once(deadline(device))
    assert (
        count(conn, "SELECT count(*) FROM incidents WHERE fleet_incident_id = %s", sites[0][0]) == 4
    )
    assert len(messages(http_sink)) == 1

    # The router is back: each device reports again.
    back = T + 20 * 60 * S
    beating(conn, home, back)
    run(tick, conn, back)
    make_dispatcher().run_once(back)
    assert [s[3] for s in site_incidents(conn)] == ["resolved"]
    sent = messages(http_sink)
    assert len(sent) == 2
    assert sent[1][0].endswith("Home at 12 Oak Street is back online")
    assert "20 min" in sent[1][1]
    # No device's own offline or back-online message went anywhere.
    assert (
        count(
            conn,
            "SELECT count(*) FROM notifications WHERE status IN ('sent', 'pending', 'sending') "
            "AND template LIKE 'device_%%'",
        )
        == 0
    )


def test_only_the_camera_dies_its_own_alert_and_no_site_incident(
    conn, tick, make_dispatcher, http_sink, home
):
    now = deadline("cam")
    beating(conn, ["panel", "thermo", "charger"], now - 2 * S)
    run(tick, conn, now)
    assert site_incidents(conn) == []
    make_dispatcher().run_once(now)
    sent = messages(http_sink)
    assert [t for t, _ in sent] == ["Your camera Garden camera went offline"]


@pytest.fixture
def hub_home(conn, http_sink):
    """A hub with a camera and a thermostat behind it, and a charger and a panel beside."""
    rows = [
        ("hub", "hub-v1", "Hallway hub", None, 10),
        ("cam", "camera-v1", "Garden camera", "hub", 30),
        ("thermo", "thermostat-v2", "Living room thermostat", "hub", 0),
        ("charger", "ev-charger-v1", "Garage charger", None, 5),
        ("panel", "alarm-panel-v3", "Hallway panel", None, 5),
    ]
    for device, model, name, parent, _ in rows:
        make_device(
            conn,
            device,
            model_id=model,
            name=name,
            customer_id=OWNER,
            site_id="elm-3",
            site_name="Flat at 3 Elm Road",
            parent_id=parent,
        )
    add_channel(conn, OWNER, http_sink.url(OWNER))
    for device, _, _, _, ago in rows:
        heard(conn, device, T - ago * S, T - ago * S + 240 * S)
    return rows


def test_a_hub_dies_one_message_about_the_hub_naming_the_devices_behind_it(
    conn, tick, make_dispatcher, http_sink, hub_home
):
    # The camera behind the hub reaches its deadline first; the hub's comes later.
    first = T - 30 * S + 240 * S
    beating(conn, ["charger", "panel"], first - S)
    run(tick, conn, first)
    sites = site_incidents(conn)
    assert [(k, sev, key) for _, k, sev, _, key in sites] == [("hub_offline", "warning", "hub:hub")]
    make_dispatcher().run_once(first)
    for at in (T - 10 * S + 240 * S, T + 240 * S):
        beating(conn, ["charger", "panel"], at - S)
        run(tick, conn, at)
        make_dispatcher().run_once(at)
    sent = messages(http_sink)
    assert len(sent) == 1
    title, body = sent[0]
    assert title == "Your hub Hallway hub went offline"
    assert "Garden camera" in body and "Living room thermostat" in body
    assert "Garage charger" not in body
    assert (
        count(conn, "SELECT count(*) FROM incidents WHERE fleet_incident_id = %s", sites[0][0]) == 3
    )


def test_a_device_still_down_after_the_others_return_gets_its_own_alert_once_settled(
    conn, tick, make_monitor, make_dispatcher, http_sink, home
):
    for device in sorted(home, key=deadline):
        run(tick, conn, deadline(device))
    make_dispatcher().run_once(deadline("charger"))
    back = T + 10 * 60 * S
    beating(conn, ["panel", "thermo", "charger"], back)
    run(tick, conn, back)
    assert [s[3] for s in site_incidents(conn)] == ["open"]  # the camera may follow
    assert make_monitor(site_settle_s=300).review_sites(back + 299 * S).resolved == 0
    settled = make_monitor(site_settle_s=300).review_sites(back + 300 * S)
    assert settled.resolved == 1
    make_dispatcher().run_once(back + 300 * S)
    sent = messages(http_sink)
    # Both due at once: one digest of the site's return and the camera's own alert.
    assert len(sent) == 2, sent
    assert sent[1][0].endswith("2 of your devices changed status")
    assert "Home at 12 Oak Street back online" in sent[1][1]
    assert "Garden camera" in sent[1][1] and "offline since" in sent[1][1]
    templates = conn.execute(
        "SELECT template FROM notifications WHERE status = 'sent' ORDER BY id"
    ).fetchall()
    assert [t for (t,) in templates] == ["site_offline", "device_offline", "site_back_online"]
    back_online = conn.execute(
        "SELECT context FROM notifications WHERE template = 'site_back_online'"
    ).fetchone()[0]
    assert "Garden camera" not in back_online["devices_text"]


def test_when_the_reading_beside_the_tick_fails_the_tick_reads_the_site_itself(
    conn, tick, home, monkeypatch, caplog
):
    import monitor.service

    def broken(*args):
        raise psycopg.OperationalError("connection cut")

    monkeypatch.setattr(monitor.service, "read_fleet", broken)
    run(tick, conn, deadline("panel"))
    assert [(k, key) for _, k, _, _, key in site_incidents(conn)] == [
        ("site_offline", "site:oak-12")
    ]
    assert "reading beside the tick failed: connection cut" in caplog.text
