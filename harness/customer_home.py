"""A realistic customer for the customer's page: its browser tests and its screenshots.

    make_home(conn, now)  Maria's home in Copenhagen: an alarm panel offline since 47 minutes
                          ago with its timeline (the problem found, an email sent, a push that
                          failed, a note staff meant for her), a thermostat online, a camera
                          with a low battery, and a car with an unread recall.

Incidents and their timelines go through incidents/ (their owner), as the monitor writes
them; the outbox rows are written straight, as the dispatcher would have left them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg
from psycopg.types.json import Jsonb

import incidents
from campaigns.store import CampaignCreate, create_campaign
from devices.registry import import_devices
from incidents.model import DeviceProblem

CUSTOMER = "cust-maria"
TIMEZONE = "Europe/Copenhagen"
STAFF_NOTE = "Our engineers see a power cut in your street; we will tell you when it is back."
STAFF_ONLY = "ticket 8812: power company says 2 h"
PUSH_ERROR = "the push service did not answer (timed out after 10 s)"
RECALL = "Charging cable recall"

# id: (model, name, status, minutes since that status, last metrics, firmware)
DEVICES = {
    "hm-panel": (
        "alarm-panel-v3",
        "Front door alarm panel",
        "offline",
        47,
        {"battery_pct": 96, "rssi_dbm": -71},
        "3.4.1",
    ),
    "hm-therm": (
        "thermostat-v2",
        "Living room thermostat",
        "online",
        60 * 26,
        {"battery_pct": 78, "rssi_dbm": -55, "temp_c": 21.5},
        "2.6.0",
    ),
    "hm-cam": (
        "camera-v1",
        "Garden camera",
        "degraded",
        95,
        {"battery_pct": 9, "rssi_dbm": -77},
        "1.9.2",
    ),
    "hm-car": (
        "car-telematics-v1",
        "Family car",
        "online",
        12,
        {"battery_pct": 64, "rssi_dbm": -88},
        "5.0.3",
    ),
}


@dataclass(frozen=True, slots=True)
class Home:
    customer_id: str
    panel_incident: int
    camera_incident: int
    email_channel: int
    push_channel: int
    recall: int


def _channel(conn, kind: str, url: str, label: str) -> int:
    return conn.execute(
        "INSERT INTO contact_channels (customer_id, kind, apprise_url, label, verified_at) "
        "VALUES (%s, %s, %s, %s, now()) RETURNING id",
        (CUSTOMER, kind, url, label),
    ).fetchone()[0]


def _message(conn, incident_id, device_id, channel_id, template, status, at, error=None) -> None:
    conn.execute(
        "INSERT INTO notifications (incident_id, device_id, customer_id, channel_id, template, "
        "severity, context, status, created_at, due_at, sent_at, attempts, last_error) "
        "VALUES (%s, %s, %s, %s, %s, 'warning', %s, %s, %s, %s, %s, 1, %s)",
        (
            incident_id,
            device_id,
            CUSTOMER,
            channel_id,
            template,
            Jsonb({}),
            status,
            at,
            at,
            at if status == "sent" else None,
            error,
        ),
    )


def make_home(conn: psycopg.Connection, now: datetime) -> Home:
    rows = [
        {
            "id": device_id,
            "model_id": model,
            "name": name,
            "customer_id": CUSTOMER,
            "customer_name": "Maria Jensen",
            "timezone": TIMEZONE,
            "vin": "WVWZZZ1JZXW000001" if device_id == "hm-car" else None,
        }
        for device_id, (model, name, *_) in DEVICES.items()
    ]
    report = import_devices(conn, rows)
    assert report.ok, report.errors
    for device_id, (_, _, status, minutes, metrics, firmware) in DEVICES.items():
        conn.execute(
            "UPDATE device_state SET status = %s, status_changed_at = %s, last_seen_at = %s, "
            "last_metrics = %s, firmware = %s WHERE device_id = %s",
            (
                status,
                now - timedelta(minutes=minutes),
                now - timedelta(minutes=minutes if status == "offline" else 1),
                Jsonb(metrics),
                firmware,
                device_id,
            ),
        )
    email = _channel(conn, "email", "mailto://maria@example.com", "Email")
    push = _channel(conn, "push", "ntfy://ntfy.sh/maria-home-4471", "Phone")

    went = now - timedelta(minutes=47)
    panel = incidents.open_device_incidents(
        conn,
        [
            DeviceProblem(
                "hm-panel",
                "offline",
                "warning",
                "{device} is offline",
                {"reason": "silent"},
                critical_severity="critical",
            )
        ],
        went,
    )[0].id
    told = went + timedelta(minutes=1)
    incidents.record_events(
        conn,
        [
            (panel, "notified", {"channel": "mailto://***@example.com", "channel_id": email}),
            (
                panel,
                "notification_failed",
                {"channel": "ntfy://ntfy.sh/***", "channel_id": push, "error": PUSH_ERROR},
            ),
        ],
        told,
    )
    _message(conn, panel, "hm-panel", email, "device_offline", "sent", told)
    _message(conn, panel, "hm-panel", push, "device_offline", "failed", told, PUSH_ERROR)
    incidents.comment(conn, panel, "key 3 (ops)", STAFF_ONLY, told + timedelta(minutes=10))
    incidents.comment(
        conn, panel, "key 3 (ops)", STAFF_NOTE, told + timedelta(minutes=20), for_customer=True
    )

    low = now - timedelta(minutes=95)
    camera = incidents.open_device_incidents(
        conn,
        [DeviceProblem("hm-cam", "low_battery", "warning", "{device}: battery low", {"value": 9})],
        low,
    )[0].id
    _message(conn, camera, "hm-cam", email, "device_low_battery", "sent", low)
    # Held by her quiet hours until the morning.
    _message(
        conn, camera, "hm-cam", push, "device_low_battery", "pending", now + timedelta(hours=7)
    )

    recall, _ = create_campaign(
        conn,
        CampaignCreate.model_validate(
            {
                "name": RECALL,
                "kind": "recall_notice",
                "target": {"device_ids": ["hm-car"]},
                "safe_to_use": True,
                "instructions": "Use the charging cable only with the car's own charger until "
                "your dealer replaces it, free of charge.",
            }
        ),
        created_by="demo",
        now=now - timedelta(days=2),
    )
    conn.execute(
        "UPDATE campaign_devices SET state = 'notified', state_at = %s WHERE campaign_id = %s",
        (now - timedelta(days=2), recall),
    )
    return Home(CUSTOMER, panel, camera, email, push, recall)
