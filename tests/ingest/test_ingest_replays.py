"""Telling a retained status sent again apart in memory (ingest/replays.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from contract.messages import StatusReport
from ingest.replays import LastStatuses, ReplayedStatus

AT = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)

# Statuses of one device in the order received, (status, retained) -> which are replays.
ROWS = (
    # A first retained status is news: nothing known yet.
    ([("online", True)], [False]),
    # The same retained status again: a replay (a bridge reconnecting).
    ([("online", True), ("online", True)], [False, True]),
    # A live (not retained) status is never a replay, even if it says the same.
    ([("online", True), ("online", False)], [False, False]),
    # A change is news; its replay then is not.
    ([("online", True), ("offline", True), ("offline", True)], [False, False, True]),
    # Back to online after offline: news, though online was seen before.
    ([("online", True), ("offline", True), ("online", True)], [False, False, False]),
)


@pytest.mark.parametrize(("sequence", "replays"), ROWS)
def test_a_retained_status_saying_the_last_status_again_is_a_replay(sequence, replays):
    last = LastStatuses()
    sorted_ = [last.sort(StatusReport("dev-1", s, AT, retained)) for s, retained in sequence]
    assert [isinstance(r, ReplayedStatus) for r in sorted_] == replays


def test_each_device_has_its_own_last_status():
    last = LastStatuses()
    assert isinstance(last.sort(StatusReport("dev-1", "online", AT, True)), StatusReport)
    # Another device's first 'online' is news, not dev-1's replay.
    assert isinstance(last.sort(StatusReport("dev-2", "online", AT, True)), StatusReport)
    assert isinstance(last.sort(StatusReport("dev-1", "online", AT, True)), ReplayedStatus)
    assert len(last) == 2


def test_a_memory_seeded_with_stored_statuses_skips_their_first_replay():
    last = LastStatuses()
    assert last.seed([("dev-1", "online"), ("dev-2", "offline")]) == 2
    assert isinstance(last.sort(StatusReport("dev-1", "online", AT, True)), ReplayedStatus)
    assert isinstance(last.sort(StatusReport("dev-2", "online", AT, True)), StatusReport)
