"""The live stream's one reader per API process.

    PostgreSQL ──poll: events after the last read, once a second──► EventFeed
                                                                      │ every new event
                                          ┌───────────────────────────┼──────────────┐
                                          ▼                           ▼              ▼
                                 stream (staff key)       stream (customer A)      ...
                                 shows all               filters: A's devices only

A poll reads only the events written since the one before (`e.id > position`, through
the primary key), however many there are behind and whoever is listening: its cost
follows what happens now, never the history. Each stream filters what it is handed
(api/live.py); a stream that falls too far behind is ended, and its client resumes with
Last-Event-ID. The reader runs while at least one stream is open.

Streams per key are capped in each process (FLEETWATCH_API_STREAMS_PER_KEY): one more is
refused (TooManyStreams, a 429).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Hashable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import anyio

log = logging.getLogger(__name__)

# How often the reader looks for new events: what a live view waits at most, against one
# indexed query a second per API process (not per stream).
POLL_S = 1.0
# Most events of each kind one query reads; a full batch is followed by the next at once.
BATCH = 500
# Events a stream may have waiting; past this it ends, and its client resumes from the
# database with Last-Event-ID. Bounds what a slow reader makes the process hold.
BACKLOG = 10_000


@dataclass(frozen=True, slots=True)
class IncidentEvent:
    """One line of an incident's timeline, with the customer whose device it is about."""

    id: int
    at: datetime
    kind: str
    detail: dict[str, Any]
    incident_id: int
    incident_kind: str
    scope: str
    device_id: str | None
    severity: str
    status: str
    summary: str
    customer_id: str | None


@dataclass(frozen=True, slots=True)
class CampaignEvent:
    """One line of a campaign's timeline (staff only)."""

    id: int
    at: datetime
    kind: str
    detail: dict[str, Any]
    campaign_id: int
    name: str
    campaign_kind: str
    status: str
    current_wave: int


_INCIDENT_EVENTS = """
SELECT e.id, e.at, e.kind, e.detail, i.id, i.kind, i.scope, i.device_id, i.severity, i.status,
       i.summary, d.customer_id
FROM incident_events e JOIN incidents i ON i.id = e.incident_id
LEFT JOIN devices d ON d.id = i.device_id
WHERE e.id > %(after)s AND e.id <= %(upto)s {customer}
ORDER BY e.id LIMIT %(limit)s
"""
_OF_CUSTOMER = "AND d.customer_id = %(customer)s"
_CAMPAIGN_EVENTS = """
SELECT e.id, e.at, e.kind, e.detail, c.id, c.name, c.kind, c.status, c.current_wave
FROM campaign_events e JOIN campaigns c ON c.id = e.campaign_id
WHERE e.id > %(after)s AND e.id <= %(upto)s ORDER BY e.id LIMIT %(limit)s
"""
_POSITION = """
SELECT (SELECT coalesce(max(id), 0) FROM incident_events),
       (SELECT coalesce(max(id), 0) FROM campaign_events)
"""
_NO_END = 2**63 - 1


def read_events(
    pool,
    after: tuple[int, int],
    *,
    upto: tuple[int, int] = (_NO_END, _NO_END),
    customer: str | None = None,
    campaigns: bool = True,
    limit: int = BATCH,
) -> tuple[list[IncidentEvent], list[CampaignEvent]]:
    """Incident events in (after[0], upto[0]] (of `customer`'s devices only, when given) and
    campaign events in (after[1], upto[1]], at most `limit` of each, in order."""
    with pool.connection() as conn:
        incidents = [
            IncidentEvent(*row)
            for row in conn.execute(
                _INCIDENT_EVENTS.format(customer=_OF_CUSTOMER if customer else ""),
                {"after": after[0], "upto": upto[0], "customer": customer, "limit": limit},
            )
        ]
        changes = []
        if campaigns:
            changes = [
                CampaignEvent(*row)
                for row in conn.execute(
                    _CAMPAIGN_EVENTS, {"after": after[1], "upto": upto[1], "limit": limit}
                )
            ]
        return incidents, changes


def latest_position(pool) -> tuple[int, int]:
    """The newest incident and campaign event ids."""
    with pool.connection() as conn:
        return tuple(conn.execute(_POSITION).fetchone())


class TooManyStreams(Exception):
    """The key already has as many streams open here as it may."""


class Subscription:
    """One stream's place at the feed: what it has been handed and not yet taken."""

    def __init__(self, key_id: Hashable, upto: tuple[int, int] | None) -> None:
        self.key_id = key_id
        # Everything after this position comes through `take`; before it, the database.
        self.upto = upto
        self.ended = False  # fell more than BACKLOG behind: nothing more is handed
        self._batches: asyncio.Queue = asyncio.Queue()
        self._waiting = 0

    def hand(self, incidents: list[IncidentEvent], campaigns: list[CampaignEvent]) -> None:
        if self.ended:
            return
        self._waiting += len(incidents) + len(campaigns)
        if self._waiting > BACKLOG:
            self.ended = True
            self._batches.put_nowait(None)
            return
        self._batches.put_nowait((incidents, campaigns))

    async def take(self, timeout_s: float):
        """The next batch (incidents, campaigns); () after `timeout_s` without one; None
        once the stream has fallen too far behind (after the batches it was handed)."""
        try:
            batch = await asyncio.wait_for(self._batches.get(), timeout_s)
        except TimeoutError:
            return ()
        if batch is not None:
            self._waiting -= len(batch[0]) + len(batch[1])
        return batch


class EventFeed:
    """The reader: polls the timelines for new events while streams are open, and hands
    each event to every open stream. Counts `polls`, `events_read` and `errors`."""

    def __init__(self, pool, *, streams_per_key: int) -> None:
        self.pool = pool
        self.streams_per_key = streams_per_key
        self.position: tuple[int, int] | None = None
        self.polls = 0
        self.events_read = 0
        self.errors = 0
        self._by_key: dict[int, set[Subscription]] = defaultdict(set)
        self._task: asyncio.Task | None = None
        self._ready: asyncio.Event | None = None

    @property
    def streams(self) -> int:
        return sum(len(subs) for subs in self._by_key.values())

    def open(self, key_id: Hashable) -> Subscription:
        """A place for one more stream of `key_id`; TooManyStreams past its share."""
        if len(self._by_key[key_id]) >= self.streams_per_key:
            raise TooManyStreams(
                f"at most {self.streams_per_key} open streams per key: close one first"
            )
        subscription = Subscription(key_id, self.position)
        self._by_key[key_id].add(subscription)
        if self._task is None:
            self._ready = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="event-feed")
        return subscription

    async def started(self, subscription: Subscription) -> tuple[int, int]:
        """Once the reader knows where it starts: the position after which `subscription`
        is handed every event."""
        await self._ready.wait()
        return subscription.upto

    def close(self, subscription: Subscription) -> None:
        """The stream has ended (the reader stops with the last one); twice is harmless."""
        subs = self._by_key.get(subscription.key_id)
        if subs is not None:
            subs.discard(subscription)
            if not subs:
                del self._by_key[subscription.key_id]

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with_task, self._task = self._task, None
            await asyncio.gather(with_task, return_exceptions=True)

    async def _run(self) -> None:
        try:
            while self.streams and self.position is None:
                try:
                    self.position = await anyio.to_thread.run_sync(latest_position, self.pool)
                except Exception:
                    self.errors += 1
                    log.exception("event feed: cannot read where the timelines end; again soon")
                    await asyncio.sleep(POLL_S)
            for subs in list(self._by_key.values()):
                for subscription in subs:
                    subscription.upto = subscription.upto or self.position
            self._ready.set()
            while self.streams:
                try:
                    incidents, campaigns = await anyio.to_thread.run_sync(
                        read_events, self.pool, self.position
                    )
                except Exception:
                    self.errors += 1
                    log.exception("event feed: reading the timelines failed; again soon")
                    await asyncio.sleep(POLL_S)
                    continue
                self.polls += 1
                self._hand(incidents, campaigns)
                if len(incidents) < BATCH and len(campaigns) < BATCH:
                    await asyncio.sleep(POLL_S)
        finally:
            # Nothing awaits between the last check and here: a stream opened from now on
            # starts a new reader.
            self._task, self._ready, self.position = None, None, None

    def _hand(self, incidents: list[IncidentEvent], campaigns: list[CampaignEvent]) -> None:
        if not incidents and not campaigns:
            return
        self.events_read += len(incidents) + len(campaigns)
        self.position = (
            incidents[-1].id if incidents else self.position[0],
            campaigns[-1].id if campaigns else self.position[1],
        )
        for subs in list(self._by_key.values()):
            for subscription in list(subs):
                subscription.hand(incidents, campaigns)
