"""Sending sign-in links: asked for by address on the page, or sent by staff.

    signin_refusal     pure: whether one more link may go now (per address, per customer)
    request_signin     a person typed an address: a link to each customer whose verified
                       channel has it, within the limits; nothing else happens, and the
                       caller answers the same whatever did
    send_signin_link   mint a link and queue it to one channel through the outbox

Links go to channels that reach a person (email, sms, push; portal/addresses.py) and are
verified. A link is a credential: it lives in the outbox only until sent (the dispatcher
then drops it from the row), and no answer or log line carries it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

import psycopg

from alerts.outbox import write_personal_row
from core.settings import Settings
from portal.addresses import PERSONAL_KINDS, normalize_address
from portal.sessions import mint_signin_link, signin_url

log = logging.getLogger(__name__)

WINDOW = timedelta(hours=1)
# Customers sharing one address (a family's e-mail) each get a link; more than this many is
# not a family.
MAX_CUSTOMERS_PER_ADDRESS = 5
BY_PAGE = "customer"


def signin_refusal(
    to_address: Sequence[datetime],
    to_customer: Sequence[datetime],
    per_hour: int,
    now: datetime,
) -> str | None:
    """Why one more link requested from the page may not go now ('address' or 'customer':
    at most `per_hour` within the last hour to each), or None."""
    since = now - WINDOW
    if sum(t > since for t in to_address) >= per_hour:
        return "address"
    if sum(t > since for t in to_customer) >= per_hour:
        return "customer"
    return None


_FIND = """
SELECT DISTINCT ON (customer_id) id, customer_id FROM contact_channels
WHERE address = %(address)s AND verified_at IS NOT NULL AND kind = ANY(%(kinds)s)
ORDER BY customer_id, id
LIMIT %(limit)s
"""
_TO_ADDRESS = """
SELECT l.created_at FROM signin_links l JOIN contact_channels c ON c.id = l.channel_id
WHERE c.address = %s AND l.requested_by = %s AND l.created_at > %s
"""
_TO_CUSTOMER = """
SELECT created_at FROM signin_links
WHERE customer_id = %s AND requested_by = %s AND created_at > %s
"""
_LOCK_CUSTOMER = "SELECT name FROM customers WHERE id = %s FOR UPDATE"


def request_signin(
    conn: psycopg.Connection, address_text: str, settings: Settings, now: datetime
) -> list[str]:
    """Send a link for each customer with a verified channel at this address, as the limits
    allow; return what happened per customer (for the log and tests, never for the answer)."""
    address = normalize_address(address_text)
    if address is None:
        return []
    found = conn.execute(
        _FIND,
        {"address": address, "kinds": list(PERSONAL_KINDS), "limit": MAX_CUSTOMERS_PER_ADDRESS},
    ).fetchall()
    if not found:
        log.info("sign-in request for an address no verified channel has: nothing sent")
        return []
    outcomes = []
    for channel_id, customer_id in found:
        with conn.transaction():
            # One request at a time per customer: two at once cannot both take the last link.
            conn.execute(_LOCK_CUSTOMER, (customer_id,))
            since = now - WINDOW
            to_address = [t for (t,) in conn.execute(_TO_ADDRESS, (address, BY_PAGE, since))]
            to_customer = [t for (t,) in conn.execute(_TO_CUSTOMER, (customer_id, BY_PAGE, since))]
            refusal = signin_refusal(
                to_address, to_customer, settings.portal_signin_requests_per_hour, now
            )
            if refusal is not None:
                log.warning(
                    "customer %s: sign-in request refused (limit per %s), nothing sent",
                    customer_id,
                    refusal,
                )
                outcomes.append(f"{customer_id}: refused ({refusal})")
                continue
            send_signin_link(
                conn,
                customer_id=customer_id,
                channel_id=channel_id,
                requested_by=BY_PAGE,
                settings=settings,
                now=now,
            )
            outcomes.append(f"{customer_id}: sent to channel {channel_id}")
    return outcomes


def send_signin_link(
    conn: psycopg.Connection,
    *,
    customer_id: str,
    channel_id: int,
    requested_by: str,
    settings: Settings,
    now: datetime,
) -> int:
    """Mint a sign-in link for the customer and queue it to their channel `channel_id`
    (the caller chose a verified one); the notification's id."""
    minutes = settings.portal_signin_minutes
    token = mint_signin_link(
        conn,
        customer_id,
        channel_id=channel_id,
        requested_by=requested_by,
        now=now,
        ttl=timedelta(minutes=minutes),
    )
    name = conn.execute("SELECT name FROM customers WHERE id = %s", (customer_id,)).fetchone()[0]
    notification = write_personal_row(
        conn,
        customer_id=customer_id,
        channel_id=channel_id,
        template="signin_link",
        context={
            "customer_name": name,
            "signin_url": signin_url(settings.public_url, token),
            "minutes": minutes,
        },
        now=now,
    )
    log.info("customer %s: sign-in link queued to channel %d", customer_id, channel_id)
    return notification


_MESSAGE_CHANNEL = """
SELECT c.id FROM message_link_subjects s
JOIN notifications n ON n.id = s.notification_id
JOIN contact_channels c ON c.id = n.channel_id
WHERE s.token_hash = %(link)s AND c.customer_id = %(customer)s
  AND c.verified_at IS NOT NULL AND c.kind = ANY(%(kinds)s)
ORDER BY s.notification_id LIMIT 1
"""


def request_signin_from_link(
    conn: psycopg.Connection,
    link_hash: bytes,
    customer_id: str,
    settings: Settings,
    now: datetime,
) -> str:
    """The owner followed a message's link and asks to sign in: a link goes to the channel
    that message came on (verified, reaching a person), within the customer's limit; what
    happened, for the log and tests (the caller answers the same whatever it was)."""
    row = conn.execute(
        _MESSAGE_CHANNEL,
        {"link": link_hash, "customer": customer_id, "kinds": list(PERSONAL_KINDS)},
    ).fetchone()
    if row is None:
        log.info("customer %s: sign-in asked from a link whose channel cannot take it", customer_id)
        return "no channel"
    with conn.transaction():
        conn.execute(_LOCK_CUSTOMER, (customer_id,))
        since = now - WINDOW
        to_customer = [t for (t,) in conn.execute(_TO_CUSTOMER, (customer_id, BY_PAGE, since))]
        refusal = signin_refusal([], to_customer, settings.portal_signin_requests_per_hour, now)
        if refusal is not None:
            log.warning(
                "customer %s: sign-in from a link refused (limit), nothing sent", customer_id
            )
            return f"refused ({refusal})"
        send_signin_link(
            conn,
            customer_id=customer_id,
            channel_id=row[0],
            requested_by=BY_PAGE,
            settings=settings,
            now=now,
        )
    return f"sent to channel {row[0]}"
