"""Who may read what of a timeline line: the one allow-list, and the words for each kind.

    customer_view(kind, detail, own_channels)  the fields an owner may read, or None: not
                                               theirs to see (a firmware key reads the same,
                                               with no channel of its own)
    describe(kind, detail)                     the line as a sentence; staff read the same
                                               sentence as the owner, then what only they see

Pure: data in, data out. The API (incident detail, device detail, the live stream) calls
these; a kind or a field not listed here is never shown to a customer.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# Reasons the monitor records as codes, in words.
REASONS = {
    "silent": "no heartbeat in time",
    "missed_checkin": "it did not check in when it said it would",
    "last_will": "its connection dropped",
    "never_reported": "it has not reported since it was set up",
    "heartbeat": "a heartbeat came in",
    "stable": "its connection has been stable again",
    "stopped_watching": "the owner stopped watching it on purpose, until it reports again",
}


def _reason(detail: Mapping) -> str:
    reason = detail.get("reason")
    return REASONS.get(reason, str(reason)) if reason else ""


def _opened(d: Mapping) -> str:
    text = "Problem found" + (f": {_reason(d)}" if d.get("reason") else "")
    if d.get("spells"):
        text += f"; the connection dropped {d['spells']} times"
    if d.get("expected_at"):
        text += f"; it was due at {d['expected_at']}"
    return text + (f" (since {d['since']})" if d.get("since") else "")


def _resolved(d: Mapping) -> str:
    text = "Resolved" + (f": {_reason(d)}" if d.get("reason") else "")
    return text + (f" (back since {d['back']})" if d.get("back") else "")


def _notified(d: Mapping) -> str:
    attempt = d.get("attempt")
    again = f" on attempt {attempt}" if isinstance(attempt, int) and attempt > 1 else ""
    return f"Message sent to {d.get('channel', 'a channel')}{again}"


def _failed(d: Mapping) -> str:
    text = f"Message to {d.get('channel', 'a channel')} could not be delivered"
    return text + (f": {d['error']}" if d.get("error") else "")


def _utc(value: Any) -> str:
    """An ISO time as people read it, '15:00 UTC on 6 Dec 2026'; as stored if not a time."""
    try:
        at = datetime.fromisoformat(str(value)).astimezone(UTC)
    except ValueError:
        return str(value)
    return f"{at:%H:%M} UTC on {at.day} {at:%b %Y}"


def _update(d: Mapping) -> str:
    # Staff's words, as written: whoever shows them shows them as text, never as markup.
    text = f"Update from our team: {d.get('text', '')}"
    return text + (
        f" (next update by {_utc(d['next_update_at'])})" if d.get("next_update_at") else ""
    )


@dataclass(frozen=True, slots=True)
class Kind:
    """One kind of timeline line: its sentence, and what of it an owner may read."""

    sentence: Callable[[Mapping], str]
    # The fields an owner may read; None: owners never see this kind.
    customer_fields: tuple[str, ...] | None = None
    # Shown to an owner only when about one of their own channels (`channel_id`).
    own_channel_only: bool = False
    # Shown to an owner only when staff meant it for them (a note).
    for_customer_only: bool = False


KINDS: dict[str, Kind] = {
    # The lifecycle (incidents/lifecycle.py, monitor/transitions.py).
    "opened": Kind(_opened, ("reason", "since", "value", "spells", "expected_at")),
    "resolved": Kind(_resolved, ("reason", "back")),
    "acknowledged": Kind(
        lambda d: (
            "The owner knows: no more reminders"
            if d.get("owner") is True
            else "Acknowledged: someone is looking into it"
        ),
        ("owner",),
    ),
    # The owner's own answers (portal/actions.py).
    "snoozed": Kind(lambda d: f"Snoozed by the owner until {_utc(d.get('until'))}", ("until",)),
    "unsnoozed": Kind(lambda d: "The owner ended their snooze", ()),
    "comment": Kind(lambda d: f"Note: {d.get('text', '')}", ("text",), for_customer_only=True),
    # Staff's update to customers (incidents/updates.py), on a fleet outage's members too.
    "update": Kind(_update, ("text", "next_update_at")),
    "update_promise_missed": Kind(
        lambda d: f"The update promised by {_utc(d.get('promised'))} did not come: staff nudged"
    ),
    "attached": Kind(
        lambda d: f"Part of fleet incident {d.get('group_incident_id')}: the owner's alert waits"
    ),
    "detached": Kind(lambda d: f"No longer part of fleet incident {d.get('group_incident_id')}"),
    "customers_told": Kind(lambda d: f"Owners told we know about it ({d.get('notices')} notices)"),
    "escalated": Kind(
        lambda d: f"Escalated to staff after {d.get('waited', 'a while')} unacknowledged"
    ),
    "reminded": Kind(
        lambda d: f"Reminder {d.get('reminder', '')} sent to the owner", ("reminder",)
    ),
    "suppressed": Kind(lambda d: f"No message of its own: {_reason(d)}", ("reason",)),
    # What became of the messages (alerts/): an owner sees those to their own channels.
    "notified": Kind(_notified, ("channel", "attempt"), own_channel_only=True),
    "notification_failed": Kind(_failed, ("channel", "attempt", "error"), own_channel_only=True),
    "silenced": Kind(
        lambda d: (
            f"Messages about it held by the owner's snooze until {_utc(d.get('until'))}"
            if d.get("owner") is True
            else f"Messages about it held by a silence until {_utc(d.get('until'))}"
        ),
        ("until", "owner"),
    ),
    "rate_limited": Kind(
        lambda d: f"Messages held until {d.get('until')}: the hourly message limit was reached",
        ("until",),
        own_channel_only=True,
    ),
}

# What staff read after the sentence, from fields no owner sees: (field, wording).
_STAFF_ONLY: tuple[tuple[str, Callable[[Any], str]], ...] = (
    ("by", lambda v: f"by {v}"),
    ("for_customer", lambda v: "shown to the customer" if v is True else ""),
    ("note", lambda v: f"note: {v}"),
    ("cancelled", lambda v: f"{v} waiting messages cancelled"),
    ("released", lambda v: f"{v} held messages released"),
    ("silence_id", lambda v: f"silence {v}"),
)


def customer_view(
    kind: str, detail: Mapping, own_channels: Collection[int] = ()
) -> dict[str, Any] | None:
    """What an owner may read of one timeline line, or None when it is not for them.

    `own_channels`: the ids of the owner's channels (empty for a firmware key: nobody's).
    """
    spec = KINDS.get(kind)
    if spec is None or spec.customer_fields is None:
        return None
    if spec.for_customer_only and detail.get("for_customer") is not True:
        return None
    if spec.own_channel_only and detail.get("channel_id") not in own_channels:
        return None
    return {k: detail[k] for k in spec.customer_fields if k in detail}


def describe(kind: str, detail: Mapping) -> str:
    """The line as people read it. Staff, who get the whole detail, read the owner's sentence
    followed by what only they see, in parentheses."""
    spec = KINDS.get(kind)
    text = spec.sentence(detail) if spec else kind.replace("_", " ").capitalize()
    extra = [word(detail[field]) for field, word in _STAFF_ONLY if field in detail]
    extra = [e for e in extra if e]
    return text + (f" ({'; '.join(extra)})" if extra else "")
