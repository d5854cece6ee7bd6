"""What routes depend on: a database connection from the pool, and the caller's key."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated

import psycopg
from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.auth import ApiKey, find_key

_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer fwk_...`")


def get_conn(request: Request) -> Iterator[psycopg.Connection]:
    """An autocommit connection from the app's pool; writers open their own transaction."""
    with request.app.state.pool.connection() as conn:
        yield conn


DbConn = Annotated[psycopg.Connection, Depends(get_conn)]


def current_key(
    conn: DbConn,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> ApiKey:
    """The caller's live API key; 401 without one."""
    if credentials is None:
        raise HTTPException(401, "an API key is required: Authorization: Bearer <key>")
    key = find_key(conn, credentials.credentials, datetime.now(UTC))
    if key is None:
        raise HTTPException(401, "unknown or revoked API key")
    return key


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
