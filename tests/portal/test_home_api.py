"""GET /api/v1/me/home: my devices as cards, only mine, with the operator's ceiling."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from psycopg.types.json import Jsonb
from support import auth, make_device, sign_in

from alerts.templates import WHAT_TO_DO


def test_home_shows_my_devices_in_words_and_nobody_elses(api, conn, keys):
    conn.execute(
        "INSERT INTO customers (id, name, timezone) VALUES ('cust-a', 'Ada', 'Europe/Berlin')"
    )
    make_device(conn, "a-panel", customer_id="cust-a", model_id="alarm-panel-v3", name="Panel")
    make_device(conn, "a-therm", customer_id="cust-a", name="Thermostat")
    make_device(conn, "b-cam", customer_id="cust-b", model_id="camera-v1")
    since = datetime.now(UTC) - timedelta(minutes=5)
    conn.execute(
        "UPDATE device_state SET status = 'offline', status_changed_at = %s, firmware = '3.2.0', "
        "last_metrics = %s WHERE device_id = 'a-panel'",
        (since, Jsonb({"battery_pct": 40.4, "rssi_dbm": -83})),
    )
    incident_id = conn.execute(
        "INSERT INTO incidents (scope, device_id, kind, severity, opened_at, summary) "
        "VALUES ('device', 'a-panel', 'offline', 'critical', %s, 'x') RETURNING id",
        (since,),
    ).fetchone()[0]

    home = api.get("/api/v1/me/home", headers=auth(keys.customer("cust-a")))
    assert home.status_code == 200, home.text
    body = home.json()
    assert body["customer"]["name"] == "Ada"
    assert body["max_messages_per_hour_ceiling"] == 20
    assert [g["place"] for g in body["places"]] == [None]
    cards = body["places"][0]["devices"]
    assert [c["id"] for c in cards] == ["a-panel", "a-therm"]  # the problem first
    panel = cards[0]
    local = since.astimezone(__import__("zoneinfo").ZoneInfo("Europe/Berlin"))
    assert panel["status_text"] == f"Offline since {local:%H:%M}"
    assert panel["what_to_do"] == WHAT_TO_DO["alarm_panel"]
    assert panel["incident_id"] == incident_id
    assert (panel["battery_pct"], panel["signal"], panel["firmware"]) == (
        40,
        "weak (-83 dBm)",
        "3.2.0",
    )
    assert "b-cam" not in home.text and "cust-b" not in home.text


def test_home_answers_a_signed_in_page_and_refuses_staff(api, conn, keys):
    make_device(conn, "a-therm", customer_id="cust-a")
    assert api.get("/api/v1/me/home", headers=auth(keys.staff)).status_code == 403
    sign_in(conn, api, "cust-a")
    home = api.get("/api/v1/me/home")
    assert home.status_code == 200
    assert home.json()["places"][0]["devices"][0]["status_text"] == (
        "Waiting for its first connection"
    )


def test_home_groups_my_devices_by_their_site_and_names_the_hub(api, conn, keys):
    place = {"site_id": "oak-12", "site_name": "Home at 12 Oak Street", "customer_id": "cust-a"}
    make_device(conn, "a-hub", name="Hallway hub", **place)
    make_device(conn, "a-cam", model_id="camera-v1", name="Garden", parent_id="a-hub", **place)
    make_device(conn, "a-car", model_id="car-telematics-v1", customer_id="cust-a")
    body = api.get("/api/v1/me/home", headers=auth(keys.customer("cust-a"))).json()
    groups = {g["place"]: [c["id"] for c in g["devices"]] for g in body["places"]}
    assert groups == {"Home at 12 Oak Street": ["a-cam", "a-hub"], None: ["a-car"]}
    cam = body["places"][0]["devices"][0]
    assert (cam["place"], cam["behind"]) == ("Home at 12 Oak Street", "Hallway hub")
