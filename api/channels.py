"""Channel routes: customers' channels (staff's side; a customer's own are in api/me.py),
staff channels, and test messages.

Staff may manage customers' channels and send test messages; staff channels are admins'.
Every URL passes the rules of alerts/outbound.py when saved and again when sent.
"""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime

from fastapi import APIRouter, HTTPException

from alerts.outbound import STAFF, ChannelRefused, check_channel, check_rules
from alerts.redact import redact_url
from alerts.render import Message
from alerts.send import AppriseSender
from api.deps import AdminKey, DbConn, StaffKey
from api.models import ChannelCreate, ChannelPublic, ChannelUpdate, TestResult
from api.registry import AppSettings, CustomerIdPath, RowId, _set_clause, get_customer
from core.settings import Settings
from portal.addresses import channel_address
from portal.verification import TooSoon, issue_code

log = logging.getLogger(__name__)
router = APIRouter(tags=["registry"])

TEST_TITLE = "Fleetwatch test message"
TEST_BODY = "This is a test message from Fleetwatch: this channel works."

_CHANNEL_COLUMNS = (
    "id, customer_id, kind, apprise_url, label, min_severity, enabled, verified_at IS NOT NULL"
)


def channel_from_row(row) -> ChannelPublic:
    return ChannelPublic(
        id=row[0],
        customer_id=row[1],
        kind=row[2],
        url=redact_url(row[3]),
        label=row[4],
        min_severity=row[5],
        enabled=row[6],
        verified=row[7],
    )


def list_channels_of(conn, customer_id: str) -> list[ChannelPublic]:
    rows = conn.execute(
        f"SELECT {_CHANNEL_COLUMNS} FROM contact_channels WHERE customer_id = %s ORDER BY id",
        (customer_id,),
    ).fetchall()
    return [channel_from_row(r) for r in rows]


def checked_url(url: str, kind: str, settings: Settings) -> str:
    """`url` if a channel of `kind` may use it (alerts/outbound.py); else a 422 naming the
    rule. Resolves the URL's hosts: call it outside a transaction."""
    try:
        check_channel(url, kind, allowed=settings.allowed_networks())
    except ChannelRefused as refused:
        raise HTTPException(422, str(refused)) from None
    return url


def add_channel_for(
    conn, customer_id: str, body: ChannelCreate, settings: Settings, *, verified: bool
) -> ChannelPublic:
    """Add a customer's channel: its URL checked, at most api_channels_per_customer.

    `verified`: staff vouch for the channels they add; one the customer adds is not, and a
    code goes to it (portal/verification.py) in the same transaction."""
    checked_url(body.url, body.kind, settings)
    address = channel_address(body.url, body.kind)
    now = datetime.now(UTC)
    cap = settings.api_channels_per_customer
    with conn.transaction():
        # One change per customer at a time: the count and the insert see the same channels.
        conn.execute("SELECT 1 FROM customers WHERE id = %s FOR UPDATE", (customer_id,))
        have = conn.execute(
            "SELECT count(*) FROM contact_channels WHERE customer_id = %s", (customer_id,)
        ).fetchone()[0]
        if have >= cap:
            raise HTTPException(409, f"a customer has at most {cap} channels: remove one first")
        row = conn.execute(
            "INSERT INTO contact_channels (customer_id, kind, apprise_url, label, min_severity, "
            "enabled, address, verified_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
            f"RETURNING {_CHANNEL_COLUMNS}",
            (
                customer_id,
                body.kind,
                body.url,
                body.label,
                body.min_severity,
                body.enabled,
                address,
                now if verified else None,
            ),
        ).fetchone()
        if not verified:
            # A new channel's first code: the channel's hour has none yet.
            issue_code(conn, channel_id=row[0], customer_id=customer_id, settings=settings, now=now)
    log.info(
        "channel %d (%s) added for customer %s, %s",
        row[0],
        body.kind,
        customer_id,
        "verified" if verified else "code sent",
    )
    return channel_from_row(row)


def send_code(conn, channel_id: int, customer_id: str, settings: Settings) -> None:
    """A new code to the channel, or a 429 past the hour's codes. Inside the customer's lock:
    two requests at once cannot both take the last code."""
    now = datetime.now(UTC)
    try:
        conn.execute("SELECT 1 FROM customers WHERE id = %s FOR UPDATE", (customer_id,))
        issue_code(conn, channel_id=channel_id, customer_id=customer_id, settings=settings, now=now)
    except TooSoon as soon:
        wait_s = max(1, math.ceil((soon.retry_at - now).total_seconds()))
        raise HTTPException(
            429,
            f"at most {settings.portal_codes_per_hour} codes an hour to a channel: "
            f"the next may go in {wait_s} s",
            headers={"Retry-After": str(wait_s)},
        ) from None


def channel_row(conn, channel_id: int, customer_id: str | None):
    """A customer channel, or 404 (also when it belongs to another customer than asked)."""
    row = conn.execute(
        f"SELECT {_CHANNEL_COLUMNS} FROM contact_channels WHERE id = %s", (channel_id,)
    ).fetchone()
    if row is None or (customer_id is not None and row[1] != customer_id):
        raise HTTPException(404, f"no channel {channel_id}")
    return row


def update_channel_row(
    conn, channel_id: int, body: ChannelUpdate, settings: Settings, *, reverify: bool = False
) -> ChannelPublic:
    """Change a channel; a new URL gets its address anew. `reverify` (the customer's own
    change): a new URL is a new place, unverified until its code comes back, which is sent."""
    values = body.model_dump(exclude_unset=True, exclude_none=True)
    row = channel_row(conn, channel_id, None)
    new_url = "url" in values
    if new_url:
        values["apprise_url"] = checked_url(values.pop("url"), row[2], settings)
        values["address"] = channel_address(values["apprise_url"], row[2])
    with conn.transaction():
        if values:
            conn.execute(
                f"UPDATE contact_channels SET {_set_clause(values)} WHERE id = %(channel)s",
                {**values, "channel": channel_id},
            )
        if new_url and reverify:
            conn.execute(
                "UPDATE contact_channels SET verified_at = NULL WHERE id = %s", (channel_id,)
            )
            send_code(conn, channel_id, row[1], settings)
    return channel_from_row(channel_row(conn, channel_id, None))


def require_verified(row) -> None:
    """409 for a channel whose code has not come back: nothing but its code goes there."""
    if not row[7]:
        raise HTTPException(
            409,
            f"channel {row[0]} is not verified yet: enter the code sent to it "
            f"(POST /api/v1/me/channels/{row[0]}/verify)",
        )


def test_channel_url(url: str, kind: str, settings: Settings) -> TestResult:
    """Send a test message now and say how it went (secrets scrubbed from the error).

    The rules again, as for every send: the URL may be older than they are, and its hosts
    may resolve elsewhere than when it was saved (the sender checks each address)."""
    try:
        check_rules(url, kind)
    except ChannelRefused as refused:
        return TestResult(ok=False, duration_ms=0, error=str(refused))
    sender = AppriseSender(timeout_s=10, allowed_networks=settings.allowed_networks())
    result = sender.send(url, Message(TEST_TITLE, TEST_BODY))
    return TestResult(ok=result.ok, duration_ms=result.duration_ms, error=result.error)


@router.get("/customers/{customer_id}/channels", response_model=list[ChannelPublic])
def customer_channels(
    customer_id: CustomerIdPath, key: StaffKey, conn: DbConn
) -> list[ChannelPublic]:
    get_customer(conn, customer_id)
    return list_channels_of(conn, customer_id)


@router.post("/customers/{customer_id}/channels", response_model=ChannelPublic, status_code=201)
def add_customer_channel(
    customer_id: CustomerIdPath,
    body: ChannelCreate,
    key: StaffKey,
    conn: DbConn,
    settings: AppSettings,
) -> ChannelPublic:
    """Add a channel for a customer: the same rules as the customer's own (POST /me/channels)."""
    get_customer(conn, customer_id)
    return add_channel_for(conn, customer_id, body, settings, verified=True)


@router.patch("/channels/{channel_id}", response_model=ChannelPublic)
def update_channel(
    channel_id: RowId, body: ChannelUpdate, key: StaffKey, conn: DbConn, settings: AppSettings
) -> ChannelPublic:
    channel_row(conn, channel_id, None)
    return update_channel_row(conn, channel_id, body, settings)


@router.delete("/channels/{channel_id}", status_code=204)
def delete_channel(channel_id: RowId, key: StaffKey, conn: DbConn) -> None:
    if not conn.execute("DELETE FROM contact_channels WHERE id = %s", (channel_id,)).rowcount:
        raise HTTPException(404, f"no channel {channel_id}")


@router.post("/channels/{channel_id}/test", response_model=TestResult)
def test_channel(
    channel_id: RowId, key: StaffKey, conn: DbConn, settings: AppSettings
) -> TestResult:
    """Send a test message to a customer channel (409 while it is not verified)."""
    row = channel_row(conn, channel_id, None)
    require_verified(row)
    return test_channel_url(row[3], row[2], settings)


# -- staff channels: fleet and system incidents, escalations ------------------------------


@router.get("/staff-channels", response_model=list[ChannelPublic], tags=["staff channels"])
def list_staff_channels(key: StaffKey, conn: DbConn) -> list[ChannelPublic]:
    rows = conn.execute(
        "SELECT id, NULL, 'staff', apprise_url, label, min_severity, enabled, true "
        "FROM staff_channels ORDER BY id"
    ).fetchall()
    return [channel_from_row(r) for r in rows]


@router.post(
    "/staff-channels", response_model=ChannelPublic, status_code=201, tags=["staff channels"]
)
def add_staff_channel(
    body: ChannelCreate, key: AdminKey, conn: DbConn, settings: AppSettings
) -> ChannelPublic:
    """Where staff hear of fleet outages, blind spots and escalations (`kind` is ignored):
    any scheme a customer channel takes, and team chat and on-call tools; public addresses
    only, unless the operator allows a network."""
    checked_url(body.url, STAFF, settings)
    row = conn.execute(
        "INSERT INTO staff_channels (apprise_url, label, min_severity, enabled) "
        "VALUES (%s, %s, %s, %s) "
        "RETURNING id, NULL, 'staff', apprise_url, label, min_severity, enabled, true",
        (body.url, body.label, body.min_severity, body.enabled),
    ).fetchone()
    return channel_from_row(row)


@router.delete("/staff-channels/{channel_id}", status_code=204, tags=["staff channels"])
def delete_staff_channel(channel_id: RowId, key: AdminKey, conn: DbConn) -> None:
    if not conn.execute("DELETE FROM staff_channels WHERE id = %s", (channel_id,)).rowcount:
        raise HTTPException(404, f"no staff channel {channel_id}")
