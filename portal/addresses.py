"""Where a channel delivers, as one normalized address a person can type to ask for a link.

    channel_address       the address of an Apprise URL, parsed by Apprise's own plugin
    normalize_address     what a person typed, in the same form
    fill_missing_addresses  the addresses of channels saved before there were any

Apprise knows each service's URL shape; we only ask its plugin where it sends: an e-mail
plugin's `targets` ((name, address) pairs), an SMS gateway's `targets` (phone numbers), ntfy's
`topics`. A URL naming several recipients gets the first: the one the channel was made for in
every case we know (a customer's own address first). Webhooks and services that name no
person (Pushover's user key) have no address: they cannot be asked for a link by address, but
staff can still send one to them.
"""

from __future__ import annotations

import logging
import re

import apprise
import psycopg

from alerts.redact import _quiet

log = logging.getLogger(__name__)

# Kinds whose channels reach a person: the only ones a sign-in link may go to.
PERSONAL_KINDS = ("email", "sms", "push")

_PHONE = re.compile(r"^\+?[\d\s().-]{6,}$")


def normalize_address(text: str) -> str | None:
    """The form addresses are stored in: an e-mail in lower case, a phone number as '+'
    and its digits (a leading 00 is the international prefix), else the text stripped (a push
    topic, case kept as services keep it). None for nothing."""
    text = text.strip()
    if not text:
        return None
    if "@" in text:
        return text.lower()
    if _PHONE.match(text):
        digits = re.sub(r"\D", "", text)
        if digits.startswith("00"):
            digits = digits[2:]
        return "+" + digits
    return text


def channel_address(url: str, kind: str) -> str | None:
    """The normalized address an Apprise URL delivers to, or None (webhooks, unknown)."""
    if kind not in PERSONAL_KINDS:
        return None
    with _quiet():  # Apprise's complaints about a URL are not news here
        try:
            plugin = apprise.Apprise.instantiate(url)
        except Exception:  # a plugin that cannot read its URL: no address, still a channel
            return None
    if plugin is None:
        return None
    for attribute in ("targets", "topics"):
        for target in getattr(plugin, attribute, None) or ():
            # E-mail plugins hold (name, address); Twilio (type, number); others the string.
            value = target[-1] if isinstance(target, tuple | list) else target
            if isinstance(value, str) and value and value.upper() != "ALL_DEVICES":
                return normalize_address(value)
    return None


_MISSING = """
SELECT id, apprise_url, kind FROM contact_channels
WHERE address IS NULL AND kind = ANY(%(kinds)s) AND id > %(after)s
ORDER BY id LIMIT %(limit)s
"""
_SET = "UPDATE contact_channels SET address = %s WHERE id = %s AND address IS NULL"


def fill_missing_addresses(conn: psycopg.Connection, batch: int = 1000) -> int:
    """Give channels without an address theirs (those saved before migration 022); return
    how many got one. Channels whose URL names nobody stay NULL and are parsed again next
    time: a few milliseconds each, once per API start."""
    filled, after, rows = 0, 0, [None] * batch
    while len(rows) == batch:
        rows = conn.execute(
            _MISSING, {"kinds": list(PERSONAL_KINDS), "after": after, "limit": batch}
        ).fetchall()
        found = [(channel_address(url, kind), cid) for cid, url, kind in rows]
        found = [(address, cid) for address, cid in found if address]
        if found:
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(_SET, found)
            filled += len(found)
        after = rows[-1][0] if rows else after
    if filled:
        log.info("channel addresses filled in for %d channels", filled)
    return filled
