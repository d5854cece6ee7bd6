"""API keys and roles: who may read and change what, and a customer sees only their own."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from support import add_channel, auth, make_device

from api.auth import create_key, find_key, hash_key, revoke_key


def test_no_key_a_wrong_key_and_a_revoked_key_are_refused(api, conn, keys):
    assert api.get("/api/v1/devices").status_code == 401
    assert api.get("/api/v1/devices", headers=auth("fwk_not-a-key")).status_code == 401
    assert api.get("/api/v1/devices", headers=auth("Bearer nonsense")).status_code == 401
    key_id, key = create_key(conn, "staff")
    assert api.get("/api/v1/devices", headers=auth(key)).status_code == 200
    assert revoke_key(conn, key_id, datetime.now(UTC))
    refused = api.get("/api/v1/devices", headers=auth(key))
    assert refused.status_code == 401 and "revoked" in refused.json()["detail"]


def test_keys_are_kept_only_as_hashes(conn):
    key_id, key = create_key(conn, "admin", label="ops")
    stored = conn.execute(
        "SELECT prefix, key_hash FROM api_keys WHERE id = %s", (key_id,)
    ).fetchone()
    assert bytes(stored[1]) == hash_key(key) and key not in str(stored)
    assert key.startswith(stored[0]) and len(stored[0]) < len(key) // 3
    assert find_key(conn, key, datetime.now(UTC)).role == "admin"
    assert find_key(conn, key[:-1] + ("A" if key[-1] != "A" else "B"), datetime.now(UTC)) is None


def test_a_customer_key_needs_its_customer(conn):
    make_device(conn, "dev-1", customer_id="cust-1")
    with pytest.raises(ValueError, match="customer"):
        create_key(conn, "customer")
    with pytest.raises(ValueError, match="customer"):
        create_key(conn, "staff", customer_id="cust-1")
    with pytest.raises(ValueError, match="role"):
        create_key(conn, "root")


# (method, path, body, roles allowed). Paths use the devices made by `two_customers`.
MATRIX = [
    ("get", "/api/v1/fleet/summary", None, {"admin", "staff", "firmware", "customer"}),
    ("get", "/api/v1/devices", None, {"admin", "staff", "firmware", "customer"}),
    ("get", "/api/v1/models", None, {"admin", "staff", "firmware"}),
    (
        "post",
        "/api/v1/models",
        {
            "id": "m-new",
            "name": "New",
            "device_type": "sensor",
            "kind": "home",
            "heartbeat_interval_s": 60,
        },
        {"admin"},
    ),
    ("post", "/api/v1/devices", {"id": "new-1", "model_id": "thermostat-v2"}, {"admin"}),
    ("patch", "/api/v1/devices/a-1", {"name": "Renamed"}, {"admin"}),
    ("get", "/api/v1/silences", None, {"admin", "staff"}),
    (
        "post",
        "/api/v1/silences",
        {"scope": "label", "target": "x", "duration_s": 60, "reason": "test"},
        {"admin", "staff"},
    ),
    ("get", "/api/v1/keys", None, {"admin"}),
    ("post", "/api/v1/keys", {"role": "staff"}, {"admin"}),
    ("get", "/api/v1/customers/cust-a", None, {"admin", "staff"}),
    ("get", "/api/v1/customers/cust-a/channels", None, {"admin", "staff"}),
    ("get", "/api/v1/me", None, {"customer"}),
    ("get", "/api/v1/me/notifications", None, {"customer"}),
]


@pytest.fixture
def two_customers(conn):
    make_device(conn, "a-1", customer_id="cust-a", name="A's camera", model_id="camera-v1")
    make_device(conn, "b-1", customer_id="cust-b", name="B's panel", model_id="alarm-panel-v3")
    channels = {
        "a": add_channel(conn, "cust-a", "json://127.0.0.1:9/a-secret-token"),
        "b": add_channel(conn, "cust-b", "json://127.0.0.1:9/b-secret-token"),
    }
    incidents = {}
    for device in ("a-1", "b-1"):
        incidents[device] = conn.execute(
            "INSERT INTO incidents (scope, device_id, kind, severity, opened_at, summary) "
            "VALUES ('device', %s, 'offline', 'warning', now(), 'offline') RETURNING id",
            (device,),
        ).fetchone()[0]
        conn.execute(
            "INSERT INTO notifications (incident_id, device_id, customer_id, channel_id, template, "
            "severity, context, created_at, due_at) VALUES (%s, %s, %s, %s, 'device_offline', "
            "'warning', '{}', now(), now())",
            (incidents[device], device, f"cust-{device[0]}", channels[device[0]]),
        )
    return channels, incidents


@pytest.mark.parametrize(("method", "path", "body", "allowed"), MATRIX)
def test_each_role_may_do_only_what_it_is_allowed(
    api, keys, two_customers, method, path, body, allowed
):
    for role in ("admin", "staff", "firmware", "customer"):
        key = keys.customer("cust-a") if role == "customer" else getattr(keys, role)
        response = api.request(method, path, json=body, headers=auth(key))
        if role in allowed:
            assert response.status_code < 400, (role, response.text)
        else:
            assert response.status_code == 403, (role, response.status_code, response.text)
            assert "may not" in response.json()["detail"]


def test_customer_sees_only_their_own_devices_incidents_and_notifications(api, keys, two_customers):
    channels, incidents = two_customers
    a = auth(keys.customer("cust-a"))
    assert [d["id"] for d in api.get("/api/v1/devices", headers=a).json()["items"]] == ["a-1"]
    assert api.get("/api/v1/devices?customer=cust-b", headers=a).json()["items"] == []
    assert api.get("/api/v1/devices/a-1", headers=a).status_code == 200
    for path in (
        "/api/v1/devices/b-1",
        "/api/v1/devices/b-1/history",
        f"/api/v1/incidents/{incidents['b-1']}",
    ):
        assert api.get(path, headers=a).status_code == 404, path
    listed = api.get("/api/v1/incidents", headers=a).json()["items"]
    assert [i["device_id"] for i in listed] == ["a-1"]
    summary = api.get("/api/v1/fleet/summary", headers=a).json()
    assert summary["total"] == 1 and summary["by_model"] == {"camera-v1": {"provisioned": 1}}
    sent = api.get("/api/v1/me/notifications", headers=a).json()
    assert [n["device_id"] for n in sent] == ["a-1"]
    mine = api.get("/api/v1/me/channels", headers=a).json()
    assert [c["id"] for c in mine] == [channels["a"]]
    # Another customer's channel is not theirs to change, delete or test.
    for method, suffix in (("patch", ""), ("delete", ""), ("post", "/test")):
        response = api.request(
            method,
            f"/api/v1/me/channels/{channels['b']}{suffix}",
            json={"enabled": False} if method == "patch" else None,
            headers=a,
        )
        assert response.status_code == 404, (method, suffix)
    # Nor may a customer act on incidents.
    assert api.post(f"/api/v1/incidents/{incidents['a-1']}/ack", headers=a).status_code == 403


def test_channel_urls_are_never_shown_whole(api, keys, two_customers):
    staff = auth(keys.staff)
    for answer in (
        api.get("/api/v1/customers/cust-a/channels", headers=staff).text,
        api.get("/api/v1/me/channels", headers=auth(keys.customer("cust-a"))).text,
        api.get("/api/v1/me/notifications", headers=auth(keys.customer("cust-a"))).text,
    ):
        assert "a-secret-token" not in answer and "***" in answer
