"""Sign-in links and customer sessions: no password anywhere.

    mint_signin_link  a single-use token for one customer, valid a few minutes
    redeem            spend a sign-in token: the customer it was for, once, before it expires
    open_session      a session token for a customer (the cookie's value)
    find_session      the live session a cookie names, or None
    end_session       sign out

A sign-in link is a token in the page address's fragment (`/my/#signin=...`): browsers send
neither the fragment to servers nor it in a Referer, so it stays out of access logs; the page
posts it. Redeeming is one UPDATE that only succeeds while the link is unused and unexpired,
so two tabs racing with one link open one session between them.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg

log = logging.getLogger(__name__)

# 32 random bytes: 43 URL-safe characters.
TOKEN_BYTES = 32
# Longest token accepted from a caller: anything longer is not ours, and not hashed.
TOKEN_MAX = 64
SESSION_COOKIE = "fw_session"


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def plausible(token: str | None) -> bool:
    """Whether `token` could be one of ours (cheap check before any lookup)."""
    return token is not None and 16 <= len(token) <= TOKEN_MAX and token.isascii()


@dataclass(frozen=True, slots=True)
class Session:
    id: int
    customer_id: str
    customer_name: str
    expires_at: datetime


def mint_signin_link(
    conn: psycopg.Connection,
    customer_id: str,
    *,
    channel_id: int | None,
    requested_by: str,
    now: datetime,
    ttl: timedelta,
) -> str:
    """A new sign-in token for `customer_id`; only its hash is stored."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    conn.execute(
        "INSERT INTO signin_links (token_hash, customer_id, channel_id, requested_by, "
        "created_at, expires_at) VALUES (%s, %s, %s, %s, %s, %s)",
        (token_hash(token), customer_id, channel_id, requested_by, now, now + ttl),
    )
    log.info("customer %s: sign-in link made (by %s)", customer_id, requested_by)
    return token


def signin_url(public_url: str, token: str) -> str:
    return f"{public_url.rstrip('/')}/my/#signin={token}"


def redeem(conn: psycopg.Connection, token: str, now: datetime) -> str | None:
    """The customer a sign-in token was for, spending it; None if unknown, used or expired."""
    if not plausible(token):
        return None
    row = conn.execute(
        "UPDATE signin_links SET used_at = %s "
        "WHERE token_hash = %s AND used_at IS NULL AND expires_at > %s RETURNING customer_id",
        (now, token_hash(token), now),
    ).fetchone()
    return row[0] if row else None


def open_session(
    conn: psycopg.Connection, customer_id: str, now: datetime, lifetime: timedelta
) -> str:
    """A new session for `customer_id`: the token (the cookie's value) is returned, not kept."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    row = conn.execute(
        "INSERT INTO customer_sessions (token_hash, customer_id, created_at, expires_at, "
        "last_seen_at) VALUES (%s, %s, %s, %s, %s) RETURNING id",
        (token_hash(token), customer_id, now, now + lifetime, now),
    ).fetchone()
    log.info("customer %s: session %d opened", customer_id, row[0])
    return token


def find_session(conn: psycopg.Connection, token: str | None, now: datetime) -> Session | None:
    """The live session `token` names, or None (unknown, malformed, ended or expired)."""
    if not plausible(token):
        return None
    row = conn.execute(
        "SELECT s.id, s.customer_id, c.name, s.expires_at, s.last_seen_at "
        "FROM customer_sessions s JOIN customers c ON c.id = s.customer_id "
        "WHERE s.token_hash = %s AND s.ended_at IS NULL AND s.expires_at > %s",
        (token_hash(token), now),
    ).fetchone()
    if row is None:
        return None
    if row[4] < now - timedelta(minutes=1):
        # Written at most once a minute: a page polling every few seconds costs no writes.
        conn.execute("UPDATE customer_sessions SET last_seen_at = %s WHERE id = %s", (now, row[0]))
    return Session(row[0], row[1], row[2], row[3])


def end_session(conn: psycopg.Connection, session_id: int, now: datetime) -> None:
    conn.execute(
        "UPDATE customer_sessions SET ended_at = %s WHERE id = %s AND ended_at IS NULL",
        (now, session_id),
    )
    log.info("session %d ended", session_id)
