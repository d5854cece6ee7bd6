"""Recall links: the page a recall notice points to, where its owner confirms without a key.

    mint_links   a new token per device for the notice being recorded; only its SHA-256 is
                 stored (`recall_links`), the token itself goes into that notice's message
    token_hash   how a link's token is looked up
    link_open    whether a link still works (pure): while its recall is open, and a grace
                 after it completed; never after a cancellation

Why a token per notice, made when the notice is recorded, rather than one derived from a
server secret: nothing in the database then opens a link (a copy of the campaign tables
holds hashes only), no secret has to be configured and shared by every process, and each
message's link is its own (the repeat notice's link does not reveal the first's).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from datetime import datetime, timedelta

import psycopg

from campaigns.store import record_event

log = logging.getLogger(__name__)

# 32 random bytes: 43 URL-safe characters, within the link's 16-64 (api/campaigns.py).
TOKEN_BYTES = 32

# An owner's confirmation that they read a recall ({which}: whose devices). A recall
# notice's device moves to `acknowledged`; a safety recall's keeps its update's state and only
# records the acknowledgement (on any channel's link, the page, or the API).
ACK_RECALL = """
UPDATE campaign_devices cd
SET state = CASE WHEN c.kind = 'recall_notice' THEN 'acknowledged' ELSE cd.state END,
    state_at = CASE WHEN c.kind = 'recall_notice' THEN %(now)s ELSE cd.state_at END,
    acknowledged_at = %(now)s
FROM campaigns c
WHERE c.id = cd.campaign_id
  AND ((c.kind = 'recall_notice' AND cd.state = 'notified')
       OR (c.kind = 'safety_recall' AND cd.notified_at IS NOT NULL
           AND cd.acknowledged_at IS NULL))
  AND {which}
RETURNING cd.campaign_id, cd.device_id
"""

_COPY = "COPY recall_links (token_hash, campaign_id, device_id, created_at) FROM STDIN"


def token_hash(token: str) -> bytes:
    """The stored form of a link's token."""
    return hashlib.sha256(token.encode()).digest()


def mint_links(
    conn: psycopg.Connection, campaign_id: int, device_ids: list[str], now: datetime
) -> dict[str, str]:
    """A new link token for each device's notice: {device id: token}, kept as hashes."""
    tokens = {device: secrets.token_urlsafe(TOKEN_BYTES) for device in device_ids}
    with conn.cursor().copy(_COPY) as copy:
        for device, token in tokens.items():
            copy.write_row((token_hash(token), campaign_id, device, now))
    return tokens


def link_open(status: str, finished_at: datetime | None, now: datetime, grace: timedelta) -> bool:
    """Whether a recall's link still works at `now`.

    A completed recall's links show their page for `grace` more: the last owner's confirmation
    is what completes it, and coming back to the page should thank them, not call the link
    invalid; nothing is left to confirm by then. A cancelled recall's links stop at once.
    """
    if status == "cancelled":
        return False
    if status == "completed":
        return finished_at is not None and now < finished_at + grace
    return True


def confirm_recall(
    conn: psycopg.Connection, campaign_id: int, device_id: str, by: str, now: datetime
) -> bool:
    """The owner confirms one device's recall notice (from a link, or their page); False if
    it was not waiting for that. A line on the campaign's timeline says who."""
    with conn.transaction():
        done = conn.execute(
            ACK_RECALL.format(which="cd.campaign_id = %(campaign)s AND cd.device_id = %(device)s"),
            {"now": now, "campaign": campaign_id, "device": device_id},
        ).fetchall()
        if done:
            record_event(conn, campaign_id, now, "recall_confirmed", device_id=device_id, by=by)
    if done:
        log.info("campaign %d device %s: recall confirmed by %s", campaign_id, device_id, by)
    return bool(done)
