"""Registry routes: devices, models, customers and channels; a test message to a channel."""

from __future__ import annotations

import pytest
from support import auth, count, make_device, verify


def test_create_update_and_retire_a_device(api, keys, conn):
    admin = auth(keys.admin)
    body = {
        "id": "car-9",
        "model_id": "car-telematics-v1",
        "name": "Family car",
        "vin": "1HGCM82633A004352",
        "customer_id": "cust-9",
        "labels": ["fleet-a"],
    }
    created = api.post("/api/v1/devices", json=body, headers=admin)
    assert created.status_code == 201, created.text
    assert (created.json()["vin"], created.json()["status"]) == (body["vin"], "provisioned")
    assert count(conn, "SELECT count(*) FROM customers WHERE id = 'cust-9'") == 1
    assert api.post("/api/v1/devices", json=body, headers=admin).status_code == 409

    changed = api.patch(
        "/api/v1/devices/car-9", json={"name": "Van", "region": "west"}, headers=admin
    )
    assert (changed.json()["name"], changed.json()["region"]) == ("Van", "west")
    assert changed.json()["labels"] == ["fleet-a"]  # untouched

    retired = api.delete("/api/v1/devices/car-9", headers=admin)
    assert retired.json()["status"] == "retired" and retired.json()["retired_at"]
    assert api.delete("/api/v1/devices/car-9", headers=admin).status_code == 409
    listed = api.get("/api/v1/devices", headers=admin).json()["items"]
    assert "car-9" not in [d["id"] for d in listed]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"id": "x-1", "model_id": "no-such-model"}, 422, "unknown model"),
        ({"id": "bad id!", "model_id": "camera-v1"}, 422, "pattern"),
        ({"id": "x-1", "model_id": "camera-v1", "vin": "short"}, 422, "vin"),
        ({"id": "x-1", "model_id": "camera-v1", "timezone": "Mars/Olympus"}, 422, "timezone"),
        ({"id": "x-1", "model_id": "camera-v1", "colour": "red"}, 422, "colour"),
        ({"id": "x-1", "model_id": "camera-v1", "name": "a\u0000b"}, 400, "cannot be stored"),
    ],
)
def test_bad_devices_are_refused_and_nothing_is_stored(api, keys, conn, body, status, message):
    response = api.post("/api/v1/devices", json=body, headers=auth(keys.admin))
    assert response.status_code == status and message in response.text, response.text
    assert count(conn, "SELECT count(*) FROM devices") == 0


def test_a_device_is_placed_in_a_site_behind_a_hub_and_refused_unknown_ones(api, keys, conn):
    admin = auth(keys.admin)
    body = {"id": "hub-1", "model_id": "thermostat-v2", "customer_id": "ann",
            "site_id": "oak-12", "site_name": "Home at 12 Oak Street"}  # fmt: skip
    assert api.post("/api/v1/devices", json=body, headers=admin).status_code == 201
    make_device(conn, "cam-1", model_id="camera-v1", customer_id="ann")
    placed = api.patch(
        "/api/v1/devices/cam-1", json={"site_id": "oak-12", "parent_id": "hub-1"}, headers=admin
    )
    assert (placed.json()["site_id"], placed.json()["parent_id"]) == ("oak-12", "hub-1")
    for change, message in (
        ({"site_id": "elsewhere"}, "no site"),
        ({"parent_id": "ghost"}, "no other device"),
        ({"parent_id": "cam-1"}, "no other device"),
    ):
        refused = api.patch("/api/v1/devices/cam-1", json=change, headers=admin)
        assert refused.status_code == 422 and message in refused.text
    unplaced = api.patch("/api/v1/devices/cam-1", json={"parent_id": None}, headers=admin)
    assert (unplaced.json()["site_id"], unplaced.json()["parent_id"]) == ("oak-12", None)


def test_update_to_an_unknown_customer_is_refused(api, keys, conn):
    make_device(conn, "dev-1")
    response = api.patch(
        "/api/v1/devices/dev-1", json={"customer_id": "ghost"}, headers=auth(keys.admin)
    )
    assert response.status_code == 422 and "no customer" in response.text
    assert api.patch("/api/v1/devices/ghost", json={}, headers=auth(keys.admin)).status_code == 404


def test_models_with_valid_rules_only(api, keys):
    admin = auth(keys.admin)
    model = {
        "id": "smoke-v1",
        "name": "Smoke alarm",
        "device_type": "smoke_alarm",
        "kind": "home",
        "heartbeat_interval_s": 300,
        "critical": True,
        "health_rules": [
            {
                "name": "low_battery",
                "kind": "threshold",
                "metric": "battery_pct",
                "fire_below": 10,
                "clear_above": 15,
                "for_s": 600,
            }
        ],
    }
    created = api.post("/api/v1/models", json=model, headers=admin)
    assert created.status_code == 201 and created.json()["critical"] is True
    assert set(created.json()) == {*model, "allowed_misses", "grace_s"}  # no thresholds
    assert api.post("/api/v1/models", json=model, headers=admin).status_code == 409
    bad_rules = {"health_rules": [{"name": "x", "kind": "threshold"}]}
    refused = api.patch("/api/v1/models/smoke-v1", json=bad_rules, headers=admin)
    assert refused.status_code == 422 and "health_rules" in refused.text
    changed = api.patch("/api/v1/models/smoke-v1", json={"grace_s": 120}, headers=admin)
    assert changed.json()["grace_s"] == 120 and len(changed.json()["health_rules"]) == 1


def test_customers_channels_and_preferences(api, keys, conn):
    admin = auth(keys.admin)
    created = api.post(
        "/api/v1/customers",
        json={"id": "zoe", "name": "Zoe", "timezone": "Europe/Paris"},
        headers=admin,
    )
    assert created.status_code == 201
    channel = api.post(
        "/api/v1/customers/zoe/channels",
        json={
            "kind": "sms",
            "url": "twilio://AC0123456789abcdef0123456789abcdef:authtoken99abcdef0123456789abcde"
            "@15551234567/15557654321",
            "min_severity": "critical",
        },
        headers=admin,
    )
    assert channel.status_code == 201
    assert "authtoken99" not in channel.text and channel.json()["min_severity"] == "critical"
    stored = conn.execute("SELECT apprise_url FROM contact_channels").fetchone()[0]
    assert "authtoken99" in stored  # kept whole for sending, never shown

    zoe = auth(keys.customer("zoe"))
    prefs = api.patch(
        "/api/v1/me", json={"quiet_hours_start": "22:00", "quiet_hours_end": "07:00"}, headers=zoe
    )
    assert prefs.json()["quiet_hours_start"] == "22:00:00"
    assert api.patch("/api/v1/me", json={"timezone": None}, headers=zoe).status_code == 422
    off = api.patch(
        f"/api/v1/me/channels/{channel.json()['id']}", json={"enabled": False}, headers=zoe
    )
    assert off.json()["enabled"] is False
    assert api.delete(f"/api/v1/me/channels/{channel.json()['id']}", headers=zoe).status_code == 204
    assert api.get("/api/v1/me/channels", headers=zoe).json() == []


def test_a_test_message_reaches_the_channel_or_says_why_not(api, keys, conn, http_sink):
    make_device(conn, "dev-1", customer_id="ann")
    zoe = auth(keys.customer("ann"))
    good = api.post(
        "/api/v1/me/channels", json={"kind": "webhook", "url": http_sink.url("t")}, headers=zoe
    ).json()
    # A channel the customer added takes nothing but its code until the code comes back.
    assert good["verified"] is False
    early = api.post(f"/api/v1/me/channels/{good['id']}/test", headers=zoe)
    assert early.status_code == 409 and "not verified" in early.json()["detail"]
    assert http_sink.received() == []
    verify(api, conn, good["id"], zoe)
    sent = api.post(f"/api/v1/me/channels/{good['id']}/test", headers=zoe)
    assert sent.json()["ok"] is True
    assert http_sink.received() == [
        ("Fleetwatch test message", "This is a test message from Fleetwatch: this channel works.")
    ]
    refused = api.post(
        "/api/v1/me/channels", json={"kind": "push", "url": "nosuch://abc/def"}, headers=zoe
    )
    assert refused.status_code == 422 and "(scheme)" in refused.json()["detail"]
    # One that went wrong since it was saved: the test says why.
    down = api.post(
        "/api/v1/me/channels", json={"kind": "webhook", "url": http_sink.url("down")}, headers=zoe
    ).json()
    verify(api, conn, down["id"], zoe)
    http_sink.fail_next = 1
    failed = api.post(f"/api/v1/channels/{down['id']}/test", headers=auth(keys.staff)).json()
    assert failed["ok"] is False and "503" in failed["error"]


def test_keys_made_listed_and_revoked_through_the_api(api, keys, conn):
    admin = auth(keys.admin)
    made = api.post("/api/v1/keys", json={"role": "firmware", "label": "fw team"}, headers=admin)
    assert made.status_code == 201
    secret = made.json()["key"]
    assert api.get("/api/v1/models", headers=auth(secret)).status_code == 200
    listed = api.get("/api/v1/keys", headers=admin).json()
    assert secret not in str(listed) and "fw team" in str(listed)
    assert api.delete(f"/api/v1/keys/{made.json()['id']}", headers=admin).status_code == 204
    assert api.get("/api/v1/models", headers=auth(secret)).status_code == 401
    refused = api.post("/api/v1/keys", json={"role": "customer"}, headers=admin)
    assert refused.status_code == 422 and "customer" in refused.text


def test_staff_channels_for_fleet_incidents(api, keys):
    admin = auth(keys.admin)
    made = api.post(
        "/api/v1/staff-channels",
        json={
            "kind": "webhook",
            "url": "json://127.0.0.1:9/staff-secret",
            "min_severity": "critical",
        },
        headers=admin,
    )
    assert made.status_code == 201 and "staff-secret" not in made.text
    listed = api.get("/api/v1/staff-channels", headers=auth(keys.staff)).json()
    assert [(c["id"], c["min_severity"]) for c in listed] == [(made.json()["id"], "critical")]
    assert (
        api.post(
            "/api/v1/staff-channels",
            json={"kind": "webhook", "url": "json://x/y"},
            headers=auth(keys.staff),
        ).status_code
        == 403
    )
    assert (
        api.delete(f"/api/v1/staff-channels/{made.json()['id']}", headers=admin).status_code == 204
    )
    assert api.get("/api/v1/staff-channels", headers=admin).json() == []
