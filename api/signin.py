"""Sign-in for customers: a link's token becomes a session cookie; signing out ends it.

The page (`/my/`) reads a sign-in token from its address's fragment and posts it here; the
answer sets the session cookie: HttpOnly (no script reads it), SameSite=Lax (another site's
page cannot send changes with it), Secure when the page is served over TLS.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import BaseModel, Field

from api.deps import DbConn, session_cookie
from api.registry import AppSettings
from portal.sessions import SESSION_COOKIE, end_session, find_session, open_session, redeem

log = logging.getLogger(__name__)

router = APIRouter(prefix="/signin", tags=["customer"])


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
