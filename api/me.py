"""The customer's own view: their record and preferences, devices, incidents, notifications
and channels. The fleet and incident routes answer customer keys too, restricted the same way.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from api.deps import CustomerKey, DbConn
from api.fleet import list_devices
from api.incidents import OWN_NOTIFICATIONS, list_incidents, notifications
from api.models import (
    ChannelCreate,
    ChannelPublic,
    ChannelUpdate,
    CustomerPublic,
    DevicePage,
    IncidentPage,
    NotificationPublic,
    Preferences,
    TestResult,
)
from api.registry import (
    RowId,
    add_channel_for,
    channel_row,
    get_customer,
    list_channels_of,
    test_channel_url,
    update_channel_row,
    update_customer_row,
)

router = APIRouter(prefix="/me", tags=["customer"])


@router.get("", response_model=CustomerPublic)
def me(key: CustomerKey, conn: DbConn) -> CustomerPublic:
    """The customer this key belongs to, with their preferences."""
    return get_customer(conn, key.customer_id)


@router.patch("", response_model=CustomerPublic)
def update_preferences(body: Preferences, key: CustomerKey, conn: DbConn) -> CustomerPublic:
    """Change name, timezone, quiet hours or the hourly message limit."""
    values = body.model_dump(exclude_unset=True)
    if values.get("timezone", "") is None or values.get("name", "") is None:
        raise HTTPException(422, "name and timezone cannot be removed")
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
def add_my_channel(body: ChannelCreate, key: CustomerKey, conn: DbConn) -> ChannelPublic:
    """Add a channel: any Apprise URL (mailto://, ntfy://, twilio://, json://, ...)."""
    return add_channel_for(conn, key.customer_id, body)


@router.patch("/channels/{channel_id}", response_model=ChannelPublic)
def update_my_channel(
    channel_id: RowId, body: ChannelUpdate, key: CustomerKey, conn: DbConn
) -> ChannelPublic:
    channel_row(conn, channel_id, key.customer_id)
    return update_channel_row(conn, channel_id, body)


@router.delete("/channels/{channel_id}", status_code=204)
def delete_my_channel(channel_id: RowId, key: CustomerKey, conn: DbConn) -> None:
    channel_row(conn, channel_id, key.customer_id)
    conn.execute("DELETE FROM contact_channels WHERE id = %s", (channel_id,))


@router.post("/channels/{channel_id}/test", response_model=TestResult)
def test_my_channel(channel_id: RowId, key: CustomerKey, conn: DbConn) -> TestResult:
    """Send a test message to one of my channels."""
    return test_channel_url(channel_row(conn, channel_id, key.customer_id)[3])
