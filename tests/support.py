"""Helpers the tests share (importable as `support`: pytest puts tests/ on the path)."""

from __future__ import annotations

import time
import uuid

import paho.mqtt.client as mqtt
import psycopg

from core.settings import MqttTarget


def wait_until(predicate, timeout: float = 20.0, interval: float = 0.05):
    """Poll predicate until it returns something truthy; fail with its last value."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = predicate()
    assert value, f"condition not met within {timeout} s (last value {value!r})"
    return value


def count(conn: psycopg.Connection, sql: str, *params) -> int:
    return conn.execute(sql, params).fetchone()[0]


def mqtt_client(target: MqttTarget, protocol: str, username: str = "tester") -> mqtt.Client:
    """A connected, looping paho client."""
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=f"c-{uuid.uuid4().hex[:8]}",
        protocol=mqtt.MQTTv5 if protocol == "5" else mqtt.MQTTv311,
    )
    client.username_pw_set(username)
    client.connect(target.host, target.port)
    client.loop_start()
    return client


def forget_session(target: MqttTarget, protocol: str, client_id: str) -> None:
    """Delete a persistent session a test left on the broker."""
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5 if protocol == "5" else mqtt.MQTTv311,
        clean_session=None if protocol == "5" else True,
    )
    client.username_pw_set("fleetwatch")
    kwargs = {"clean_start": True} if protocol == "5" else {}
    client.connect(target.host, target.port, **kwargs)
    client.loop_start()
    client.disconnect()
    client.loop_stop()


def make_device(conn: psycopg.Connection, device_id: str = "dev-1", **overrides) -> str:
    """Register one device (and its customer) through the real import path."""
    from devices.registry import import_devices

    row = {"id": device_id, "model_id": "thermostat-v2", "customer_id": "cust-1"}
    row.update(overrides)
    report = import_devices(conn, [row])
    assert report.ok, report.errors
    return device_id


def add_channel(
    conn: psycopg.Connection,
    customer_id: str,
    url: str,
    *,
    kind: str | None = None,
    min_severity: str = "info",
    verified: bool = True,
) -> int:
    """Give a customer a contact channel, straight into the database (no check of its URL,
    as a channel saved before the rules); `kind` by default the one its scheme is for;
    verified unless told (as staff's and imported channels are); with its address, as every
    save computes it (portal/addresses.py)."""
    from portal.addresses import channel_address

    if kind is None:
        from alerts.outbound import SCHEMES

        scheme = SCHEMES.get(url.split("://", 1)[0].lower())
        kinds = sorted(scheme.kinds - {"staff"}) if scheme else []
        kind = kinds[0] if kinds else "webhook"
    return conn.execute(
        "INSERT INTO contact_channels (customer_id, kind, apprise_url, min_severity, verified_at, "
        "address) VALUES (%s, %s, %s, %s, CASE WHEN %s THEN now() END, %s) RETURNING id",
        (customer_id, kind, url, min_severity, verified, channel_address(url, kind)),
    ).fetchone()[0]


def make_overdue(conn: psycopg.Connection, device_ids: list[str], now, seconds: int = 60) -> None:
    """Put devices online, last heard long ago, with their deadline `seconds` before now.

    The ingest is receiving from the rest of the fleet at `now`: the monitor is not blind.
    """
    from datetime import timedelta

    from ingest.writer import record_progress

    record_progress(conn, "test-ingest", now)
    conn.execute(
        "UPDATE device_state SET status = 'online', status_changed_at = %(t)s - interval '1 day', "
        "last_seen_at = %(t)s - interval '1 hour', last_received_at = %(t)s - interval '1 hour', "
        "overdue_at = %(t)s WHERE device_id = ANY(%(ids)s)",
        {"t": now - timedelta(seconds=seconds), "ids": device_ids},
    )


def auth(key: str) -> dict[str, str]:
    """The header carrying an API key."""
    return {"Authorization": f"Bearer {key}"}


def sign_in(conn: psycopg.Connection, client, customer_id: str) -> None:
    """Sign `client` (a TestClient) in as `customer_id` through a sign-in link, as the page
    does: the session cookie is then on the client."""
    from datetime import UTC, datetime, timedelta

    from portal.sessions import mint_signin_link

    token = mint_signin_link(
        conn,
        customer_id,
        channel_id=None,
        requested_by="test",
        now=datetime.now(UTC),
        ttl=timedelta(minutes=15),
    )
    answer = client.post("/api/v1/signin/redeem", json={"token": token})
    assert answer.status_code == 200, answer.text


# What the customer's page sends with every change (api/deps.py CSRF_HEADER).
PAGE = {"X-Fleetwatch-Page": "1"}


def waiting_code(conn: psycopg.Connection, channel_id: int) -> str:
    """The code last queued to a channel (what its owner reads in the message the alerts
    process sends; tests/portal/test_verification.py follows one to a real inbox)."""
    row = conn.execute(
        "SELECT context ->> 'code' FROM notifications WHERE channel_id = %s "
        "AND template = 'channel_code' ORDER BY id DESC LIMIT 1",
        (channel_id,),
    ).fetchone()
    assert row and row[0], f"no code queued to channel {channel_id}"
    return row[0]


def verify(api, conn: psycopg.Connection, channel_id: int, headers: dict) -> None:
    """Enter the code sent to a channel the customer added, as its owner would."""
    answer = api.post(
        f"/api/v1/me/channels/{channel_id}/verify",
        json={"code": waiting_code(conn, channel_id)},
        headers=headers,
    )
    assert answer.status_code == 200 and answer.json()["verified"] is True, answer.text
