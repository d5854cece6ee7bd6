"""The allow-list of what an owner reads of a timeline line, and the words for each kind:
pure, tested with plain dicts (the API's side is tests/api/test_customer_view.py)."""

from __future__ import annotations

import pytest

from incidents.visibility import KINDS, customer_view, describe

OWN = {11}
BY = {"by": "key 3 (ops laptop)"}

# (kind, detail, what the owner reads: the fields, or None)
CASES = [
    (
        "opened",
        {"reason": "silent", "since": "t0", "limit": 15},
        {"reason": "silent", "since": "t0"},
    ),
    (
        "resolved",
        {**BY, "reason": "heartbeat", "note": "router", "cancelled": 1},
        {"reason": "heartbeat"},
    ),
    ("acknowledged", BY, {}),
    ("comment", {**BY, "text": "internal", "for_customer": False}, None),
    ("comment", {**BY, "text": "internal"}, None),
    ("comment", {**BY, "text": "for you", "for_customer": True}, {"text": "for you"}),
    ("comment", {**BY, "text": "sneaky", "for_customer": "yes"}, None),
    ("attached", {"group_incident_id": 4}, None),
    ("detached", {"group_incident_id": 4}, None),
    ("customers_told", {"notices": 3}, None),
    ("escalated", {"waited": "15 min"}, None),
    ("reminded", {"reminder": 2}, {"reminder": 2}),
    ("suppressed", {"reason": "unstable connection"}, {"reason": "unstable connection"}),
    ("notified", {"channel": "pager", "attempt": 1, "message_id": "m"}, None),
    (
        "notified",
        {"channel": "mine", "attempt": 1, "channel_id": 11},
        {"channel": "mine", "attempt": 1},
    ),
    ("notified", {"channel": "theirs", "attempt": 1, "channel_id": 12}, None),
    ("notification_failed", {"channel": "pager", "error": "e"}, None),
    (
        "notification_failed",
        {"channel": "mine", "error": "404", "channel_id": 11},
        {"channel": "mine", "error": "404"},
    ),
    ("silenced", {"until": "t1", "silence_id": 5}, {"until": "t1"}),
    ("rate_limited", {"until": "t1", "channel_id": 11}, {"until": "t1"}),
    ("rate_limited", {"until": "t1", "channel_id": 12}, None),
    ("rate_limited", {"until": "t1"}, None),
    (
        "update",
        {**BY, "text": "on it", "next_update_at": "2026-12-06T15:00:00+00:00"},
        {"text": "on it", "next_update_at": "2026-12-06T15:00:00+00:00"},
    ),
    (
        "update",
        {**BY, "text": "on it", "group_incident_id": 4},
        {"text": "on it"},
    ),
    ("update_promise_missed", {"promised": "2026-12-06T15:00:00+00:00"}, None),
    ("never_heard_of", {"x": 1}, None),
]


@pytest.mark.parametrize(("kind", "detail", "owner_reads"), CASES)
def test_an_owner_reads_only_the_allowed_kinds_and_fields(kind, detail, owner_reads):
    assert customer_view(kind, detail, OWN) == owner_reads


@pytest.mark.parametrize(("kind", "detail", "owner_reads"), CASES)
def test_staff_read_the_owners_sentence_then_what_only_they_see(kind, detail, owner_reads):
    staff = describe(kind, detail)
    if owner_reads is not None:
        assert staff.startswith(describe(kind, owner_reads))
    for secret in ("ops laptop", "router"):
        if owner_reads is not None:
            assert secret not in describe(kind, owner_reads)


def test_a_firmware_key_has_no_channel_and_reads_no_message_line():
    assert customer_view("notified", {"channel": "mine", "channel_id": 11}) is None
    assert customer_view("reminded", {"reminder": 1}) == {"reminder": 1}


def test_every_kind_has_words_and_an_unknown_one_is_named():
    for kind in KINDS:
        assert describe(kind, {})
    assert describe("a_new_kind", {"by": "key 1"}) == "A new kind (by key 1)"
    assert describe("acknowledged", BY) == (
        "Acknowledged: someone is looking into it (by key 3 (ops laptop))"
    )
    assert describe("comment", {**BY, "text": "hi", "for_customer": True}) == (
        "Note: hi (by key 3 (ops laptop); shown to the customer)"
    )
    # Staff read the customer's words of an update, then who wrote it.
    update = {"text": "Engineers on it", "next_update_at": "2026-12-06T16:00:00+01:00"}
    assert describe("update", update) == (
        "Update from our team: Engineers on it (next update by 15:00 UTC on 6 Dec 2026)"
    )
    assert describe("update", {**update, **BY}) == describe("update", update) + (
        " (by key 3 (ops laptop))"
    )
    assert describe("opened", {"reason": "silent", "since": "t0"}) == (
        "Problem found: no heartbeat in time (since t0)"
    )
