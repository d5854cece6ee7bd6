"""Message links: every message to a customer leads to their page for what it is about.

    mint_for_messages  a new token per customer message the dispatcher is about to send, its
                       hash COPYed with the message's subjects; `link` in each item's context
    find_link          the link a token opens at `now`: its customer and subjects, or None
    link_valid         whether a link still works at `now` (pure)

One link per message: a digest's one link covers the subjects of all its notifications
(`message_link_subjects`, one row per notification). A retry of a message is a new message
with a new link; the earlier one simply expires.

Why a random token stored as its SHA-256, rather than a signature made with a server
secret (an HMAC over customer, subject and expiry): nothing in the database or in any
process's configuration then opens a link (a copy of the tables holds hashes only), no
secret has to be shared by every process and rotated, and a link can be looked up, listed
and withdrawn like any row. The link's customer and subjects are the row's, so a token
opens that customer's things only, whatever the page asks. The token travels in the URL's
fragment (`/my/#link=...`): browsers never send a fragment to the server, so it is in no
access log and no Referer; the page reads it and POSTs it.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import psycopg

log = logging.getLogger(__name__)

# 32 random bytes: 43 URL-safe characters.
TOKEN_BYTES = 32
# What a token looks like; anything else is refused before any lookup (as unknown).
TOKEN = re.compile(r"^[A-Za-z0-9_-]{43}$")

_SUBJECTS_OF = """
SELECT id, customer_id, device_id, incident_id, campaign_id FROM notifications
WHERE id = ANY(%s) AND customer_id IS NOT NULL AND device_id IS NOT NULL
"""
_COPY_LINKS = (
    "COPY message_links (token_hash, customer_id, message_id, created_at, expires_at) FROM STDIN"
)
_COPY_SUBJECTS = (
    "COPY message_link_subjects (token_hash, notification_id, device_id, incident_id, "
    "campaign_id) FROM STDIN"
)

_FIND = """
SELECT l.customer_id, c.name, c.timezone, l.created_at, l.expires_at
FROM message_links l JOIN customers c ON c.id = l.customer_id
WHERE l.token_hash = %s
"""
_FIND_SUBJECTS = """
SELECT device_id, incident_id, campaign_id FROM message_link_subjects
WHERE token_hash = %s ORDER BY notification_id
"""


@dataclass(frozen=True, slots=True)
class Subject:
    """A device a link is about, with its incident and its recall when the message had them."""

    device_id: str
    incident_id: int | None = None
    campaign_id: int | None = None


@dataclass(frozen=True, slots=True)
class Link:
    token_hash: bytes
    customer_id: str
    customer_name: str
    timezone: str
    created_at: datetime
    expires_at: datetime
    subjects: tuple[Subject, ...]

    def subject(self, device_id: str) -> Subject | None:
        return next((s for s in self.subjects if s.device_id == device_id), None)


def token_hash(token: str) -> bytes:
    """The stored form of a link's token."""
    return hashlib.sha256(token.encode()).digest()


def link_url(public_url: str, token: str) -> str:
    """The address in the message: the customer page, the token in its fragment."""
    return f"{public_url.rstrip('/')}/my/#link={token}"


def link_valid(expires_at: datetime, now: datetime) -> bool:
    """Whether a link still opens its page and takes its owner's answer at `now`."""
    return now < expires_at


def merge_subjects(rows: list[tuple[str, int | None, int | None]]) -> tuple[Subject, ...]:
    """One subject per device, in the order first named: a digest may hold two messages
    about one device (offline, then back); the latest incident and recall named win."""
    merged: dict[str, Subject] = {}
    for device, incident, campaign in rows:
        old = merged.get(device, Subject(device))
        merged[device] = Subject(
            device,
            incident if incident is not None else old.incident_id,
            campaign if campaign is not None else old.campaign_id,
        )
    return tuple(merged.values())


def mint_for_messages(
    conn: psycopg.Connection,
    messages: list,
    now: datetime,
    *,
    public_url: str,
    link_days: int,
) -> int:
    """Give each message to a customer's channel a link of its own; return how many.

    `messages`: the dispatcher's claimed messages (a `channel_key`, `message_id` and
    `items` with `id` and `context` each); a customer's items are replaced by copies whose
    context has `link`. Staff messages get none. Runs in the caller's transaction, which
    must commit before the send: a message never carries a link that does not exist.
    """
    mine = [m for m in messages if m.channel_key.startswith("c")]
    if not mine:
        return 0
    ids = [item.id for m in mine for item in m.items]
    rows = {r[0]: r[1:] for r in conn.execute(_SUBJECTS_OF, (ids,))}
    expires = now + timedelta(days=link_days)
    links, subjects, minted = [], [], 0
    for message in mine:
        found = [(item.id, rows[item.id]) for item in message.items if item.id in rows]
        if not found:
            continue
        token = secrets.token_urlsafe(TOKEN_BYTES)
        digest = token_hash(token)
        links.append((digest, found[0][1][0], message.message_id, now, expires))
        subjects += [(digest, nid, row[1], row[2], row[3]) for nid, row in found]
        url = link_url(public_url, token)
        message.items = [replace(i, context={**i.context, "link": url}) for i in message.items]
        minted += 1
    with conn.cursor().copy(_COPY_LINKS) as copy:
        for row in links:
            copy.write_row(row)
    with conn.cursor().copy(_COPY_SUBJECTS) as copy:
        for row in subjects:
            copy.write_row(row)
    return minted


def find_link(conn: psycopg.Connection, token: str, now: datetime) -> Link | None:
    """The link `token` opens at `now`; None when malformed, unknown or expired alike."""
    if not isinstance(token, str) or not TOKEN.match(token):
        return None
    digest = token_hash(token)
    row = conn.execute(_FIND, (digest,)).fetchone()
    if row is None or not link_valid(row[4], now):
        return None
    subjects = merge_subjects(conn.execute(_FIND_SUBJECTS, (digest,)).fetchall())
    return Link(digest, *row, subjects)
