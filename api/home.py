"""The customer page's first answer: who I am, the operator's message ceiling, and my devices
as cards (portal/cards.py) grouped by place. One read, so the page shows a whole home at once.
"""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
from fastapi import APIRouter
from pydantic import BaseModel

from api.deps import CustomerKey, DbConn
from api.models import CustomerPublic
from api.registry import AppSettings, get_customer
from portal.cards import DeviceRow, OpenIncident, device_card, group_by_place

router = APIRouter(prefix="/me", tags=["customer"])

# A home holds a few dozen devices; a customer past this many is a business, served by the
# paged GET /me/devices.
MAX_CARDS = 500


class DeviceCard(BaseModel):
    id: str
    name: str
    kind_name: str
    model_name: str
    place: str | None
    # The device it connects through (a hub), by name.
    behind: str | None = None
    status: str
    # "Offline since 14:02", "Online", "Not watched: you said it is off on purpose".
    status_text: str
    since: datetime | None
    problem: bool
    battery_pct: int | None
    battery_low: bool
    # "good (-58 dBm)", "fair (...)", "weak (...)".
    signal: str | None
    firmware: str | None
    last_seen_at: datetime | None
    what_to_do: str | None
    # The device's most serious open incident, to open its timeline.
    incident_id: int | None
    watching: bool
    snoozed_until: datetime | None
    snooze_text: str | None


class Place(BaseModel):
    # None: the devices not at a named place (all of them, until the registry has places).
    place: str | None
    devices: list[DeviceCard]


class Home(BaseModel):
    customer: CustomerPublic
    # The most messages an hour the operator sends anyone: a customer may only go lower.
    max_messages_per_hour_ceiling: int
    places: list[Place]
    more: bool


_DEVICES = """
SELECT d.id, d.name, m.device_type, m.name, coalesce(st.status, 'provisioned'),
       st.status_changed_at, st.last_seen_at, coalesce(st.firmware, d.firmware), st.last_metrics,
       coalesce(st.status, '') <> 'paused',
       (SELECT max(s.ends_at) FROM silences s
        WHERE s.scope = 'device' AND s.target = d.id AND s.owner_id = d.customer_id
          AND s.ends_at > %(now)s),
       site.name, coalesce(p.name, p.id)
FROM devices d
JOIN device_models m ON m.id = d.model_id
LEFT JOIN device_state st ON st.device_id = d.id
LEFT JOIN sites site ON site.id = d.site_id
LEFT JOIN devices p ON p.id = d.parent_id
WHERE d.customer_id = %(customer)s AND d.retired_at IS NULL
ORDER BY d.id
LIMIT %(limit)s
"""
_OPEN_INCIDENTS = """
SELECT i.device_id, i.id, i.kind, i.severity, i.opened_at
FROM incidents i JOIN devices d ON d.id = i.device_id
WHERE d.customer_id = %(customer)s AND i.scope = 'device' AND i.status <> 'resolved'
"""


def device_rows(
    conn: psycopg.Connection, customer_id: str, limit: int, now: datetime
) -> list[DeviceRow]:
    """The customer's devices in service, each with its open incidents."""
    params = {"customer": customer_id, "limit": limit, "now": now}
    incidents: dict[str, list[OpenIncident]] = {}
    for device_id, *incident in conn.execute(_OPEN_INCIDENTS, params):
        incidents.setdefault(device_id, []).append(OpenIncident(*incident))
    return [
        DeviceRow(
            *row[:9],
            open_incidents=tuple(incidents.get(row[0], ())),
            watching=row[9],
            snoozed_until=row[10],
            place=row[11],
            behind=row[12],
        )
        for row in conn.execute(_DEVICES, params)
    ]


@router.get("/home", response_model=Home)
def my_home(key: CustomerKey, conn: DbConn, settings: AppSettings) -> Home:
    """My devices as cards: status in words and since when (in my timezone), battery,
    signal, firmware and what to do now; grouped by place."""
    customer = get_customer(conn, key.customer_id)
    now = datetime.now(UTC)
    rows = device_rows(conn, key.customer_id, MAX_CARDS + 1, now)
    cards = [device_card(row, customer.timezone, now) for row in rows[:MAX_CARDS]]
    return Home(
        customer=customer,
        max_messages_per_hour_ceiling=settings.alerts_rate_limit_per_hour,
        places=[Place.model_validate(group) for group in group_by_place(cards)],
        more=len(rows) > MAX_CARDS,
    )
