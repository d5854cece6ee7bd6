"""Blind-spot decisions with plain datetimes."""

from datetime import UTC, datetime, timedelta

import pytest

from monitor.blind_spot import Sight, is_blind, offline_held

NOW = datetime(2026, 11, 25, 14, 0, tzinfo=UTC)
WINDOW = timedelta(seconds=60)
M = timedelta(minutes=1)


@pytest.mark.parametrize(
    ("sight", "blind"),
    [
        (Sight(NOW - 5 * M, 100.0, None, None), True),
        (Sight(NOW - timedelta(seconds=30), 100.0, None, None), False),
        (Sight(None, 100.0, None, None), True),  # no ingest has ever reported
        (Sight(NOW - 5 * M, 0.1, None, None), False),  # six expected a minute: proves nothing
        (Sight(None, 0.0, None, None), False),  # nothing watched
        # Already blind: blind until something arrives, whatever the rate said.
        (Sight(NOW - 5 * M, 0.0, NOW - 3 * M, None), True),
        (Sight(NOW, 0.0, NOW - 3 * M, None), False),
    ],
)
def test_is_blind(sight, blind):
    assert is_blind(sight, NOW, WINDOW) is blind


def test_offline_held_while_blind_and_for_a_grace_after():
    grace = timedelta(minutes=5)
    assert offline_held(Sight(None, 100, NOW - M, None), NOW, grace)
    assert offline_held(Sight(NOW, 100, None, NOW - 4 * M), NOW, grace)
    assert not offline_held(Sight(NOW, 100, None, NOW - 6 * M), NOW, grace)
    assert not offline_held(Sight(NOW, 100, None, None), NOW, grace)
