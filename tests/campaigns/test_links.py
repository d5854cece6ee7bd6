"""When a recall's link works (pure), and that a link token is kept only as its hash."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from campaigns.links import link_open, token_hash

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


@pytest.mark.parametrize(
    ("status", "finished_at", "now", "works"),
    [
        ("scheduled", None, T0, True),
        ("running", None, T0 + 30 * DAY, True),
        ("paused", None, T0, True),
        ("halted", None, T0, True),
        ("cancelled", T0, T0, False),
        ("cancelled", T0 + DAY, T0, False),  # whatever the clock says
        ("completed", T0, T0 + DAY - timedelta(seconds=1), True),
        ("completed", T0, T0 + DAY, False),
        ("completed", None, T0, False),
    ],
)
def test_a_link_works_while_its_recall_is_open_and_a_grace_after_completion(
    status, finished_at, now, works
):
    assert link_open(status, finished_at, now, DAY) is works


def test_a_token_is_stored_as_its_sha256():
    assert len(token_hash("abc")) == 32 and token_hash("abc") != token_hash("abd")
