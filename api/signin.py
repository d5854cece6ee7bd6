"""Sign-in for customers: asking for a link, a link's token becoming a session cookie,
signing out; and staff sending a customer a link.

The page (`/my/`) reads a sign-in token from its address's fragment and posts it here; the
answer sets the session cookie: HttpOnly (no script reads it), SameSite=Lax (another site's
page cannot send changes with it), Secure when the page is served over TLS.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends, HTTPException, Request, Response
from psycopg_pool import ConnectionPool
from pydantic import BaseModel, Field

from api.deps import DbConn, StaffKey, session_cookie
from api.models import ChannelBrief, SigninLinkRequest, SigninLinkSent, SigninRequest
from api.registry import AppSettings, CustomerIdPath, get_customer
from core.settings import Settings
from portal.addresses import PERSONAL_KINDS
from portal.requests import request_signin, send_signin_link
from portal.sessions import SESSION_COOKIE, end_session, find_session, open_session, redeem

log = logging.getLogger(__name__)

router = APIRouter(prefix="/signin", tags=["customer"])
staff_router = APIRouter(tags=["registry"])

REQUESTED = {
    "detail": "if this address belongs to a verified channel of a customer, a sign-in link "
    "is on its way to it"
}


class SigninToken(BaseModel):
    token: str = Field(min_length=1, max_length=100)


class SignedIn(BaseModel):
    customer_id: str
    name: str
    expires_at: datetime


def _secure(request: Request, public_url: str) -> bool:
    """Whether the cookie must only travel over TLS: when the page is served over it, as
    seen here or as the operator says customers reach it (a TLS proxy in front)."""
    return request.url.scheme == "https" or public_url.startswith("https://")


@router.post("/request", status_code=202)
def request_link(
    body: SigninRequest, request: Request, background: BackgroundTasks, settings: AppSettings
) -> dict:
    """Ask for a sign-in link (no key): it goes to the verified channel (e-mail, SMS, push)
    with this address, if one exists. The answer is the same whatever happened, and comes
    before anything is looked up: it tells no one which addresses we know (the limits, a few
    an hour per address and per customer, are not in it either)."""
    background.add_task(_request_in_background, request.app.state.pool, body.address, settings)
    return REQUESTED


def _request_in_background(pool: ConnectionPool, address: str, settings: Settings) -> None:
    try:
        with pool.connection() as conn:
            request_signin(conn, address, settings, datetime.now(UTC))
    except Exception:  # after the answer: logged and counted, never shown
        log.exception("sign-in request failed")


@router.post("/redeem", response_model=SignedIn)
def redeem_link(
    body: SigninToken, request: Request, response: Response, conn: DbConn, settings: AppSettings
) -> SignedIn:
    """Spend a sign-in link's token: a session for its customer, as an HttpOnly cookie.
    404 for a token that is unknown, used or expired (one answer for the three)."""
    now = datetime.now(UTC)
    lifetime = timedelta(hours=settings.portal_session_hours)
    with conn.transaction():
        customer_id = redeem(conn, body.token, now)
        if customer_id is None:
            raise HTTPException(
                404, "this sign-in link has expired or was already used: ask for a new one"
            )
        token = open_session(conn, customer_id, now, lifetime)
        name = conn.execute("SELECT name FROM customers WHERE id = %s", (customer_id,)).fetchone()
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(lifetime.total_seconds()),
        path="/",
        httponly=True,
        samesite="lax",
        secure=_secure(request, settings.public_url),
    )
    log.info("customer %s signed in", customer_id)
    return SignedIn(customer_id=customer_id, name=name[0], expires_at=now + lifetime)


@router.post("/out", status_code=204)
def sign_out(
    response: Response,
    conn: DbConn,
    session: Annotated[str | None, Depends(session_cookie)] = None,
) -> None:
    """End this browser's session (nothing to do without one)."""
    now = datetime.now(UTC)
    found = find_session(conn, session, now)
    if found is not None:
        end_session(conn, found.id, now)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax")


_VERIFIED_CHANNELS = """
SELECT id, kind, label FROM contact_channels
WHERE customer_id = %s AND verified_at IS NOT NULL AND kind = ANY(%s) ORDER BY id
"""


@staff_router.post(
    "/customers/{customer_id}/signin-link", response_model=SigninLinkSent, status_code=202
)
def send_link_to_customer(
    customer_id: CustomerIdPath,
    body: SigninLinkRequest,
    key: StaffKey,
    conn: DbConn,
    settings: AppSettings,
) -> SigninLinkSent:
    """Send the customer a sign-in link: to the channel named (one of theirs, verified, and
    reaching a person: e-mail, SMS or push), or else to their first such. The answer names
    the channel, never its URL or the link. 409 when there is no such channel."""
    get_customer(conn, customer_id)
    channels = conn.execute(_VERIFIED_CHANNELS, (customer_id, list(PERSONAL_KINDS))).fetchall()
    if body.channel_id is not None:
        chosen = [c for c in channels if c[0] == body.channel_id]
        if not chosen:
            exists = conn.execute(
                "SELECT 1 FROM contact_channels WHERE id = %s AND customer_id = %s",
                (body.channel_id, customer_id),
            ).fetchone()
            if exists is None:
                raise HTTPException(404, f"customer {customer_id} has no channel {body.channel_id}")
            raise HTTPException(
                409,
                f"channel {body.channel_id} cannot take a sign-in link: it is not verified, "
                "or it does not reach a person (e-mail, SMS, push)",
            )
    elif not channels:
        raise HTTPException(
            409,
            f"customer {customer_id} has no verified e-mail, SMS or push channel to send a "
            "sign-in link to",
        )
    channel_id, kind, label = (chosen if body.channel_id is not None else channels)[0]
    with conn.transaction():
        send_signin_link(
            conn,
            customer_id=customer_id,
            channel_id=channel_id,
            requested_by=key.name,
            settings=settings,
            now=datetime.now(UTC),
        )
    return SigninLinkSent(
        channel=ChannelBrief(id=channel_id, kind=kind, label=label),
        expires_in_minutes=settings.portal_signin_minutes,
    )
