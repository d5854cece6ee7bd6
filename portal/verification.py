"""Verifying the channels customers add: a code goes to the channel, and only it; the channel
counts (for alerts, for sign-in links) once the code comes back. Owns `channel_codes`.

    code_verdict   pure: what a code given now means for the channel's live code
    issue_code     a new code for a channel, sent through the outbox (limited per hour)
    verify_code    the customer's answer: the channel verified, or why not

A code is 6 digits, lives `portal_code_minutes`, and ends after `portal_code_tries` wrong
answers; a new code ends the one before. Only a salted SHA-256 is stored.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg

from alerts.outbox import write_personal_row
from alerts.ratelimit import next_test_message_at
from core.settings import Settings

log = logging.getLogger(__name__)

CODE_DIGITS = 6
CODE_WINDOW = timedelta(hours=1)


def code_hash(salt: bytes, channel_id: int, code: str) -> bytes:
    return hashlib.sha256(salt + f"{channel_id}:{code}".encode()).digest()


@dataclass(frozen=True, slots=True)
class LiveCode:
    """A channel's newest code that has not ended."""

    id: int
    code_hash: bytes
    salt: bytes
    expires_at: datetime
    tries: int


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: str  # verified | wrong | spent | expired | none
    tries_left: int = 0


def code_verdict(
    live: LiveCode | None, channel_id: int, given: str, *, max_tries: int, now: datetime
) -> Verdict:
    """What `given` means at `now`: the channel is verified, or the code is wrong (with the
    tries left; `spent` when that was the last), expired, or there is none to check."""
    if live is None:
        return Verdict("none")
    if live.expires_at <= now:
        return Verdict("expired")
    if live.tries >= max_tries:
        return Verdict("spent")
    if hmac.compare_digest(code_hash(live.salt, channel_id, given), live.code_hash):
        return Verdict("verified")
    left = max_tries - live.tries - 1
    return Verdict("wrong" if left > 0 else "spent", left)


_LIVE = """
SELECT id, code_hash, salt, expires_at, tries FROM channel_codes
WHERE channel_id = %s AND ended_at IS NULL
ORDER BY created_at DESC, id DESC LIMIT 1
FOR UPDATE
"""
_SENT_WITHIN = "SELECT created_at FROM channel_codes WHERE channel_id = %s AND created_at > %s"
_END_OLD = "UPDATE channel_codes SET ended_at = %s WHERE channel_id = %s AND ended_at IS NULL"
_INSERT = """
INSERT INTO channel_codes (channel_id, customer_id, code_hash, salt, created_at, expires_at)
VALUES (%s, %s, %s, %s, %s, %s)
"""
_WRONG = """
UPDATE channel_codes SET tries = tries + 1, ended_at = CASE WHEN %s THEN %s END WHERE id = %s
"""
_USED = "UPDATE channel_codes SET ended_at = %s WHERE id = %s"
_VERIFIED = "UPDATE contact_channels SET verified_at = %s WHERE id = %s AND verified_at IS NULL"
_CUSTOMER_NAME = "SELECT name FROM customers WHERE id = %s"


class TooSoon(Exception):
    """Too many codes for this channel within the hour; `retry_at` says when the next may go."""

    def __init__(self, retry_at: datetime) -> None:
        super().__init__(f"next code at {retry_at.isoformat()}")
        self.retry_at = retry_at


def issue_code(
    conn: psycopg.Connection,
    *,
    channel_id: int,
    customer_id: str,
    settings: Settings,
    now: datetime,
) -> int:
    """A new code for the channel, queued to it (and only it); the notification's id.
    Raises TooSoon past `portal_codes_per_hour`. Call inside a transaction holding the
    channel's customer (two at once cannot both take the last)."""
    sent = [at for (at,) in conn.execute(_SENT_WITHIN, (channel_id, now - CODE_WINDOW))]
    retry_at = next_test_message_at(sent, settings.portal_codes_per_hour, now)
    if retry_at is not None:
        log.info("customer %s: code for channel %d refused (limit)", customer_id, channel_id)
        raise TooSoon(retry_at)
    code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
    salt = secrets.token_bytes(16)
    minutes = settings.portal_code_minutes
    conn.execute(_END_OLD, (now, channel_id))
    conn.execute(
        _INSERT,
        (
            channel_id,
            customer_id,
            code_hash(salt, channel_id, code),
            salt,
            now,
            now + timedelta(minutes=minutes),
        ),
    )
    name = conn.execute(_CUSTOMER_NAME, (customer_id,)).fetchone()[0]
    notification = write_personal_row(
        conn,
        customer_id=customer_id,
        channel_id=channel_id,
        template="channel_code",
        context={"customer_name": name, "code": code, "minutes": minutes},
        now=now,
    )
    log.info("customer %s: code sent to channel %d", customer_id, channel_id)
    return notification


def verify_code(
    conn: psycopg.Connection, *, channel_id: int, code: str, settings: Settings, now: datetime
) -> Verdict:
    """Check the customer's answer for the channel's live code; on the right one, the
    channel is verified. Call inside a transaction."""
    row = conn.execute(_LIVE, (channel_id,)).fetchone()
    live = LiveCode(*row) if row else None
    verdict = code_verdict(
        live, channel_id, code.strip(), max_tries=settings.portal_code_tries, now=now
    )
    if verdict.outcome == "verified":
        conn.execute(_USED, (now, live.id))
        conn.execute(_VERIFIED, (now, channel_id))
    elif verdict.outcome in ("wrong", "spent") and live.tries < settings.portal_code_tries:
        # This answer was a try: counted, and the last one ends the code.
        conn.execute(_WRONG, (verdict.outcome == "spent", now, live.id))
    log.info("channel %d: code %s", channel_id, verdict.outcome)
    return verdict
