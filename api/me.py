"""The customer's own view: their record and preferences, devices, incidents, notifications
and channels. The fleet and incident routes answer customer keys too, restricted the same way.
Their answers about a device ("I know", snooze, stop watching) are the ones a message's link
offers (api/links.py), through the same functions (portal/actions.py).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel

from alerts.ratelimit import WINDOW, next_test_message_at
from api.channels import (
    add_channel_for,
    channel_from_row,
    channel_row,
    list_channels_of,
    require_verified,
    send_code,
    test_channel_url,
    update_channel_row,
)
from api.deps import CustomerKey, DbConn
from api.fleet import DeviceIdPath, list_devices
from api.incidents import OWN_NOTIFICATIONS, IncidentId, list_incidents, notifications
from api.links import SubjectView, subject_views
from api.models import (
    ChannelCode,
    ChannelCreate,
    ChannelPublic,
    ChannelUpdate,
    CodeSent,
    CustomerPublic,
    DevicePage,
    IncidentPage,
    NotificationPublic,
    Preferences,
    TestResult,
)
from api.registry import AppSettings, RowId, get_customer, update_customer_row
from portal import actions, page
from portal.links import Subject
from portal.verification import verify_code

router = APIRouter(prefix="/me", tags=["customer"])


@router.get("", response_model=CustomerPublic)
def me(key: CustomerKey, conn: DbConn) -> CustomerPublic:
    """The customer this key belongs to, with their preferences."""
    return get_customer(conn, key.customer_id)


@router.patch("", response_model=CustomerPublic)
def update_preferences(
    body: Preferences, key: CustomerKey, conn: DbConn, settings: AppSettings
) -> CustomerPublic:
    """Change name, timezone, quiet hours or the hourly message limit (lower than the
    operator's, FLEETWATCH_ALERTS_RATE_LIMIT_PER_HOUR, never higher)."""
    values = body.model_dump(exclude_unset=True)
    if values.get("timezone", "") is None or values.get("name", "") is None:
        raise HTTPException(422, "name and timezone cannot be removed")
    ceiling = settings.alerts_rate_limit_per_hour
    if (values.get("max_messages_per_hour") or 0) > ceiling:
        raise HTTPException(
            422, f"max_messages_per_hour may be at most {ceiling}, the operator's limit"
        )
    return update_customer_row(conn, key.customer_id, values)


@router.get("/devices", response_model=DevicePage)
def my_devices(
    key: CustomerKey,
    conn: DbConn,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> DevicePage:
    """My devices and their status."""
    return list_devices(key, conn, limit=limit, cursor=cursor)


@router.get("/incidents", response_model=IncidentPage)
def my_incidents(
    key: CustomerKey,
    conn: DbConn,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> IncidentPage:
    """Incidents of my devices, newest first (GET /incidents/{id} for a timeline)."""
    return list_incidents(key, conn, limit=limit, cursor=cursor)


@router.get("/notifications", response_model=list[NotificationPublic])
def my_notifications(
    key: CustomerKey, conn: DbConn, limit: Annotated[int, Query(ge=1, le=500)] = 100
) -> list[NotificationPublic]:
    """What we sent me, or are about to, newest first."""
    return notifications(conn, OWN_NOTIFICATIONS, {"customer": key.customer_id}, limit)


@router.get("/channels", response_model=list[ChannelPublic])
def my_channels(key: CustomerKey, conn: DbConn) -> list[ChannelPublic]:
    return list_channels_of(conn, key.customer_id)


@router.post("/channels", response_model=ChannelPublic, status_code=201)
def add_my_channel(
    body: ChannelCreate, key: CustomerKey, conn: DbConn, settings: AppSettings
) -> ChannelPublic:
    """Add a channel: an Apprise URL of a scheme its kind takes (email: mailto://, ...;
    sms: twilio://, ...; push: ntfy://, pover://, ...; webhook: json://, ...), to public
    addresses only, without custom headers or another method. 422 names the rule a URL
    breaks; 409 past the most channels a customer may have.

    The channel starts unverified: a 6-digit code goes to it, and it counts (alerts, sign-in
    links) once the code comes back (POST /me/channels/{id}/verify)."""
    return add_channel_for(conn, key.customer_id, body, settings, verified=False)


@router.patch("/channels/{channel_id}", response_model=ChannelPublic)
def update_my_channel(
    channel_id: RowId, body: ChannelUpdate, key: CustomerKey, conn: DbConn, settings: AppSettings
) -> ChannelPublic:
    """Change one of my channels. A new URL is a new place: unverified again, with a code
    sent to it."""
    channel_row(conn, channel_id, key.customer_id)
    return update_channel_row(conn, channel_id, body, settings, reverify=True)


@router.post("/channels/{channel_id}/verify", response_model=ChannelPublic)
def verify_my_channel(
    channel_id: RowId, body: ChannelCode, key: CustomerKey, conn: DbConn, settings: AppSettings
) -> ChannelPublic:
    """Enter the code sent to a channel: it is verified. 422 for a wrong code (saying the
    tries left), 409 when there is no code to check (expired, out of tries or never sent:
    ask for a new one with POST /me/channels/{id}/code)."""
    row = channel_row(conn, channel_id, key.customer_id)
    if row[7]:
        return channel_from_row(channel_row(conn, channel_id, key.customer_id))
    with conn.transaction():
        verdict = verify_code(
            conn, channel_id=channel_id, code=body.code, settings=settings, now=datetime.now(UTC)
        )
    if verdict.outcome == "wrong":
        raise HTTPException(422, f"wrong code: {verdict.tries_left} tries left")
    if verdict.outcome != "verified":
        reason = {"spent": "too many wrong codes", "expired": "the code expired"}.get(
            verdict.outcome, "no code is waiting"
        )
        raise HTTPException(409, f"{reason}: ask for a new code")
    return channel_from_row(channel_row(conn, channel_id, key.customer_id))


@router.post("/channels/{channel_id}/code", response_model=CodeSent, status_code=202)
def send_my_channel_code(
    channel_id: RowId, key: CustomerKey, conn: DbConn, settings: AppSettings
) -> CodeSent:
    """Send a new code to an unverified channel (the one before stops working); a few an
    hour (429 past them, with Retry-After). 409 for a channel already verified."""
    row = channel_row(conn, channel_id, key.customer_id)
    if row[7]:
        raise HTTPException(409, f"channel {channel_id} is already verified")
    with conn.transaction():
        send_code(conn, channel_id, key.customer_id, settings)
    return CodeSent(channel_id=channel_id, expires_in_minutes=settings.portal_code_minutes)


@router.delete("/channels/{channel_id}", status_code=204)
def delete_my_channel(channel_id: RowId, key: CustomerKey, conn: DbConn) -> None:
    channel_row(conn, channel_id, key.customer_id)
    conn.execute("DELETE FROM contact_channels WHERE id = %s", (channel_id,))


@router.post("/channels/{channel_id}/test", response_model=TestResult)
def test_my_channel(
    channel_id: RowId, key: CustomerKey, conn: DbConn, settings: AppSettings
) -> TestResult:
    """Send a test message to one of my channels (a few an hour: 429 past them; 409 while
    it is not verified)."""
    row = channel_row(conn, channel_id, key.customer_id)
    require_verified(row)
    count_test_message(
        conn, key.customer_id, channel_id, settings.api_channel_tests_per_hour, datetime.now(UTC)
    )
    return test_channel_url(row[3], row[2], settings)


def count_test_message(
    conn, customer_id: str, channel_id: int, per_hour: int, now: datetime
) -> None:
    """Count a test message against the customer's hourly allowance, or refuse it (429)."""
    with conn.transaction():
        # One at a time per customer: two at once cannot both take the last one.
        conn.execute("SELECT 1 FROM customers WHERE id = %s FOR UPDATE", (customer_id,))
        conn.execute(
            "DELETE FROM channel_tests WHERE customer_id = %s AND sent_at <= %s",
            (customer_id, now - WINDOW),
        )
        sent = conn.execute(
            "SELECT sent_at FROM channel_tests WHERE customer_id = %s", (customer_id,)
        ).fetchall()
        at = next_test_message_at([s for (s,) in sent], per_hour, now)
        if at is not None:
            wait_s = max(1, math.ceil((at - now).total_seconds()))
            raise HTTPException(
                429,
                f"at most {per_hour} test messages an hour: the next may go in {wait_s} s",
                headers={"Retry-After": str(wait_s)},
            )
        conn.execute(
            "INSERT INTO channel_tests (customer_id, channel_id, sent_at) VALUES (%s, %s, %s)",
            (customer_id, channel_id, now),
        )


# -- answers about a device: the same as a message's link offers -----------------------------


class Snooze(BaseModel):
    # 24 h or 7 days: the two a message offers.
    hours: Literal[24, 168]


_INCIDENT_DEVICE = """
SELECT i.device_id FROM incidents i JOIN devices d ON d.id = i.device_id
WHERE i.id = %s AND d.customer_id = %s
"""


def _mine(conn, key, device_id: str, incident_id: int | None = None) -> tuple[dict, str]:
    """(the device's page item, who: the owner on their page); 404 unless theirs."""
    items = page.load(conn, key.customer_id, [Subject(device_id, incident_id)], datetime.now(UTC))
    if not items:
        raise HTTPException(404, f"no device {device_id!r} of yours")
    name = get_customer(conn, key.customer_id).name
    return items[0], actions.who(name, actions.ON_PAGE)


def _do(conn, key, action: str, device_id: str, incident_id: int | None = None) -> SubjectView:
    item, by = _mine(conn, key, device_id, incident_id)
    now = datetime.now(UTC)
    try:
        actions.perform(conn, action, item["state"], customer_id=key.customer_id, by=by, now=now)
    except actions.NotAvailable as refused:
        raise HTTPException(409, str(refused)) from None
    return _subject(conn, key, device_id, incident_id)


def _subject(conn, key, device_id: str, incident_id: int | None = None) -> SubjectView:
    items = page.load(conn, key.customer_id, [Subject(device_id, incident_id)], datetime.now(UTC))
    return subject_views(items)[0]


@router.post("/incidents/{incident_id}/ack", response_model=SubjectView)
def ack_my_incident(incident_id: IncidentId, key: CustomerKey, conn: DbConn) -> SubjectView:
    """I know about this problem: no more reminders (409 if it is over or I said so)."""
    row = conn.execute(_INCIDENT_DEVICE, (incident_id, key.customer_id)).fetchone()
    if row is None:
        raise HTTPException(404, f"no incident {incident_id}")
    return _do(conn, key, "ack", row[0], incident_id)


@router.post("/devices/{device_id}/snooze", response_model=SubjectView)
def snooze_my_device(
    device_id: DeviceIdPath, body: Snooze, key: CustomerKey, conn: DbConn
) -> SubjectView:
    """Hold this device's ordinary alerts for 24 h or 7 days (urgent ones still come); a
    new snooze replaces the one before."""
    return _do(conn, key, "snooze_24h" if body.hours == 24 else "snooze_7d", device_id)


@router.delete("/devices/{device_id}/snooze", response_model=SubjectView)
def end_my_snooze(device_id: DeviceIdPath, key: CustomerKey, conn: DbConn) -> SubjectView:
    """End my snooze of this device now: what it held comes at once (409 if none)."""
    _, by = _mine(conn, key, device_id)
    if not actions.end_snooze(conn, device_id, key.customer_id, by=by, now=datetime.now(UTC)):
        raise HTTPException(409, "this device is not snoozed")
    return _subject(conn, key, device_id)


@router.post("/devices/{device_id}/stop-watching", response_model=SubjectView)
def stop_watching_my_device(device_id: DeviceIdPath, key: CustomerKey, conn: DbConn) -> SubjectView:
    """This is on purpose (unplugged, sold, moved): stop watching it until it next reports;
    its offline problem is closed without a "back online" message later."""
    return _do(conn, key, "stop_watching", device_id)
