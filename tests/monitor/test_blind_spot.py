"""Blind-spot decisions with plain datetimes."""

from datetime import UTC, datetime, timedelta

import pytest

from monitor.blind_spot import Sight, horizon, is_blind, offline_held, wills_held

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


def test_deadlines_count_up_to_the_slowest_ingests_watermark():
    assert horizon(Sight(NOW, 100, None, None), NOW) == NOW  # no watermark: the wall clock
    behind = Sight(NOW, 100, None, None, caught_up_at=NOW - 2 * M)
    assert horizon(behind, NOW) == NOW - 2 * M
    # A watermark ahead of the monitor's clock (another host's) never moves decisions early.
    assert horizon(Sight(NOW, 100, None, None, caught_up_at=NOW + M), NOW) == NOW


def test_an_ingest_back_on_the_broker_holds_wills_and_silence_for_the_grace():
    grace = timedelta(minutes=5)
    back = Sight(NOW, 100, None, None, broker_back_at=NOW - 4 * M)
    assert wills_held(back, NOW, grace) and offline_held(back, NOW, grace)
    long_ago = Sight(NOW, 100, None, None, broker_back_at=NOW - 6 * M)
    assert not wills_held(long_ago, NOW, grace) and not offline_held(long_ago, NOW, grace)
    # After a blind spot (the ingest itself away) wills are news: the broker stayed up.
    after_blind = Sight(NOW, 100, None, NOW - M)
    assert offline_held(after_blind, NOW, grace) and not wills_held(after_blind, NOW, grace)
