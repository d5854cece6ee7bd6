"""The ingest's two decisions, pure: which ticks move its watermark, and how many of one
device's rejections it stores (plain datetimes, no broker, no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from contract.messages import Rejection
from ingest.rejections import RejectionsKept, ration_rejections
from ingest.watermark import RefusedTick, Tick, accept_tick, tick_payload

NOW = datetime(2026, 11, 25, 14, 2, 30, tzinfo=UTC)
SENT = NOW - timedelta(seconds=2)  # the last tick this ingest sent
BELIEVED = NOW - timedelta(seconds=5)  # the last tick it believed
S = timedelta(seconds=1)

# (payload, last sent, last believed, what comes of it)
TICKS = (
    (tick_payload(SENT), SENT, BELIEVED, Tick(SENT)),
    (tick_payload(SENT - S), SENT, BELIEVED, Tick(SENT - S)),  # sent before the last one
    (tick_payload(BELIEVED), SENT, BELIEVED, Tick(BELIEVED)),  # redelivered: harmless
    # A tick of this ingest's previous run, queued in its session: it sent nothing yet.
    (tick_payload(NOW - timedelta(hours=1)), None, None, Tick(NOW - timedelta(hours=1))),
    # Another offset is the same instant.
    (
        (SENT - S).astimezone(timezone(timedelta(hours=2))).isoformat().encode(),
        SENT,
        BELIEVED,
        Tick(SENT - S),
    ),
    (tick_payload(NOW + S), NOW + S, None, RefusedTick("from_the_future")),
    (tick_payload(NOW + timedelta(days=1)), None, None, RefusedTick("from_the_future")),
    (tick_payload(SENT + S), SENT, BELIEVED, RefusedTick("never_sent")),
    (tick_payload(BELIEVED - S), SENT, BELIEVED, RefusedTick("older_than_last")),
    (SENT.replace(tzinfo=None).isoformat().encode(), SENT, None, RefusedTick("no_timezone")),
    (b"noon", SENT, BELIEVED, RefusedTick("not_a_time")),
    (b"\xff\xfe", SENT, BELIEVED, RefusedTick("not_a_time")),
    (b"", None, None, RefusedTick("not_a_time")),
)


@pytest.mark.parametrize(("payload", "last_sent", "last_accepted", "expected"), TICKS)
def test_only_a_tick_this_ingest_could_have_sent_moves_the_watermark(
    payload, last_sent, last_accepted, expected
):
    got = accept_tick(payload, now=NOW, last_sent=last_sent, last_accepted=last_accepted)

    assert got == expected
    if isinstance(got, Tick):
        assert got.sent_at <= NOW


def rejection(device_id: str | None, n: int = 0, at: datetime = NOW) -> Rejection:
    return Rejection(f"fleet/{device_id}/heartbeat", device_id, "not_json", "", b"%d" % n, at)


def test_each_device_has_its_own_allowance_a_minute():
    flood = [rejection("dev-flood", n) for n in range(1000)]
    others = [rejection("dev-1"), rejection("dev-2"), rejection(None)]

    rationed = ration_rejections(
        [*flood[:500], *others, *flood[500:]], RejectionsKept(), now=NOW, per_device_per_minute=3
    )

    assert rationed.kept == [*flood[:3], *others]
    assert rationed.unkept == 997
    assert rationed.used.by_device == {"dev-flood": 3, "dev-1": 1, "dev-2": 1, None: 1}


# (when the next batch comes, relative to the first, how many more of dev-1's are kept)
NEXT_BATCH = (
    (timedelta(seconds=20), 1),  # same minute: what is left of its allowance
    (timedelta(seconds=30), 3),  # 14:03:00: a new minute, a new allowance
    (timedelta(minutes=5), 3),
)


@pytest.mark.parametrize(("later", "kept"), NEXT_BATCH)
def test_the_allowance_is_used_up_within_its_minute_and_renewed_in_the_next(later, kept):
    two = [rejection("dev-1", n) for n in range(2)]
    first = ration_rejections(two, RejectionsKept(), now=NOW, per_device_per_minute=3)
    batch = [rejection("dev-1", n) for n in range(10)]

    second = ration_rejections(batch, first.used, now=NOW + later, per_device_per_minute=3)

    assert (len(second.kept), second.unkept) == (kept, 10 - kept)
    assert first.used.by_device == {"dev-1": 2}  # the allowance given is never changed


def test_an_allowance_of_zero_stores_none_and_counts_all():
    rationed = ration_rejections(
        [rejection("dev-1")] * 4, RejectionsKept(), now=NOW, per_device_per_minute=0
    )
    assert (rationed.kept, rationed.unkept) == ([], 4)
