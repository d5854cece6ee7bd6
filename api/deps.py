"""What routes depend on: a database connection from the pool, and the caller's key."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated

import psycopg
from fastapi import Depends, HTTPException, Request
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer

from api.auth import ApiKey, find_key
from portal.sessions import SESSION_COOKIE, find_session

_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer fwk_...`")
session_cookie = APIKeyCookie(
    name=SESSION_COOKIE,
    auto_error=False,
    description="A customer's session on their page, opened by a sign-in link",
)
# What a page sends with every change it asks for. A cookie goes with any request the
# browser makes, also one another site's page starts; a custom header cannot be set by another
# site without a CORS preflight, which this API never grants. (SameSite=Lax on the cookie is
# the second lock, for browsers that honour it.)
CSRF_HEADER = "X-Fleetwatch-Page"
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})


def get_conn(request: Request) -> Iterator[psycopg.Connection]:
    """An autocommit connection from the app's pool; writers open their own transaction."""
    with request.app.state.pool.connection() as conn:
        yield conn


DbConn = Annotated[psycopg.Connection, Depends(get_conn)]


def current_key(
    conn: DbConn,
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    session: Annotated[str | None, Depends(session_cookie)] = None,
) -> ApiKey:
    """The caller: a live API key, or else a customer's session cookie; 401 without either.

    A key in the header wins over a cookie: a program is never mistaken for a page."""
    now = datetime.now(UTC)
    if credentials is not None:
        key = find_key(conn, credentials.credentials, now)
        if key is None:
            raise HTTPException(401, "unknown or revoked API key")
        return key
    if session is None:
        raise HTTPException(401, "an API key is required: Authorization: Bearer <key>")
    found = find_session(conn, session, now)
    if found is None:
        raise HTTPException(401, "your session has ended: sign in again")
    if request.method not in _SAFE and request.headers.get(CSRF_HEADER) != "1":
        raise HTTPException(403, f"a page's request must carry {CSRF_HEADER}: 1")
    return ApiKey(found.id, "customer", found.customer_id, found.customer_name, session=True)


CurrentKey = Annotated[ApiKey, Depends(current_key)]


def require(*roles: str):
    """A dependency admitting only keys of these roles (403 for the others)."""

    def check(key: CurrentKey) -> ApiKey:
        if key.role not in roles:
            raise HTTPException(403, f"a {key.role} key may not do this (needs {'/'.join(roles)})")
        return key

    return check


# The usual sets of roles.
AnyKey = CurrentKey
StaffKey = Annotated[ApiKey, Depends(require("admin", "staff"))]
ReaderKey = Annotated[ApiKey, Depends(require("admin", "staff", "firmware"))]
AdminKey = Annotated[ApiKey, Depends(require("admin"))]
CustomerKey = Annotated[ApiKey, Depends(require("customer"))]
