"""API keys: made once and shown once, kept only as a SHA-256, each with one role.

admin     everything, keys included
staff     the fleet, incidents (acknowledge, resolve, comment), silences, channels
firmware  reads the fleet; runs update campaigns
customer  only its own customer's devices, incidents, notifications and channels
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime

import psycopg

log = logging.getLogger(__name__)

ROLES = ("admin", "staff", "firmware", "customer")
KEY_PREFIX = "fwk_"
# The part of a key shown in listings: enough to tell keys apart, useless to an attacker.
_SHOWN = len(KEY_PREFIX) + 6


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: int
    role: str
    customer_id: str | None
    label: str | None
    # A customer signed in on their page (portal/sessions.py) rather than a program with a
    # key: `id` is then the session's, and `label` the customer's name.
    session: bool = False

    @property
    def name(self) -> str:
        """How the caller is named on timelines ("key 12 (ops laptop)", "Jane Doe (owner,
        signed in)")."""
        if self.session:
            return f"{self.label} (owner, signed in)"
        return f"key {self.id}" + (f" ({self.label})" if self.label else "")

    @property
    def caller_id(self) -> tuple[str, int]:
        """One caller, whether a key or a session (their ids are counted apart)."""
        return ("session" if self.session else "key", self.id)

    @property
    def customer_scope(self) -> str | None:
        """The only customer this key may see, or None for staff roles."""
        return self.customer_id if self.role == "customer" else None


def hash_key(key: str) -> bytes:
    """The stored form of a key."""
    return hashlib.sha256(key.encode()).digest()


def create_key(
    conn: psycopg.Connection,
    role: str,
    *,
    customer_id: str | None = None,
    label: str | None = None,
) -> tuple[int, str]:
    """Make a key; return its id and the key itself, which is never stored."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}: one of {', '.join(ROLES)}")
    if (role == "customer") != (customer_id is not None):
        raise ValueError("a customer key needs a customer, and only a customer key has one")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = conn.execute(
        "INSERT INTO api_keys (prefix, key_hash, role, customer_id, label) "
        "VALUES (%s, %s, %s, %s, %s) RETURNING id",
        (key[:_SHOWN], hash_key(key), role, customer_id, label),
    ).fetchone()
    log.info("api key %d created: role=%s customer=%s", row[0], role, customer_id)
    return row[0], key


def find_key(conn: psycopg.Connection, key: str, now: datetime) -> ApiKey | None:
    """The live key matching `key`, or None (unknown, malformed or revoked)."""
    if not key.startswith(KEY_PREFIX) or len(key) > 200:
        return None
    digest = hash_key(key)
    row = conn.execute(
        "SELECT id, role, customer_id, label, key_hash FROM api_keys "
        "WHERE key_hash = %s AND revoked_at IS NULL",
        (digest,),
    ).fetchone()
    # The index found the row by hash; compare again in constant time all the same, so no
    # code path depends on where two hashes first differ.
    if row is None or not hmac.compare_digest(bytes(row[4]), digest):
        return None
    conn.execute(
        "UPDATE api_keys SET last_used_at = %s WHERE id = %s "
        "AND (last_used_at IS NULL OR last_used_at < %s - interval '1 minute')",
        (now, row[0], now),
    )
    return ApiKey(row[0], row[1], row[2], row[3])


def revoke_key(conn: psycopg.Connection, key_id: int, now: datetime) -> bool:
    """Revoke a key at once; False if it was unknown or already revoked."""
    done = conn.execute(
        "UPDATE api_keys SET revoked_at = %s WHERE id = %s AND revoked_at IS NULL", (now, key_id)
    ).rowcount
    if done:
        log.info("api key %d revoked", key_id)
    return bool(done)
