"""The live stream: server-sent events of incident and campaign timelines as they happen.

Every status change the monitor makes lands on an incident's timeline (a device goes
offline or degraded: `opened`; it is back: `resolved`), so this one stream carries status
changes and incidents alike; staff keys also get campaign progress (`event: campaign`).
A customer or firmware key gets the lines, and the fields, its incident timeline shows
(api/visibility.py: `Viewer.line`), and nothing of the others.
Each message's id is a position `I-C` (incident event, campaign event): resume after a
disconnect with `Last-Event-ID` (or `since` for incident events alone).

New events come from the process's one reader (api/feed.py); what a stream missed before it
opened (a resume) is read once from the database. A stream holds no database connection.
"""

from __future__ import annotations

import json
import time
from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.auth import ApiKey
from api.deps import current_key, session_cookie
from api.feed import BATCH, CampaignEvent, IncidentEvent, TooManyStreams, read_events
from api.visibility import Viewer, viewer_for

router = APIRouter(tags=["live"])

# A comment line this often keeps proxies from closing an idle stream; it carries the
# stream's position, so a client resumes after what it was not shown too.
KEEPALIVE_S = 15.0
_MAX_ID = 2**63 - 1
_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer fwk_...`")


def stream_key(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    session: Annotated[str | None, Depends(session_cookie)] = None,
) -> ApiKey:
    """The caller's key (or session), looked up on a connection given back at once: a stream
    lasts hours and must not hold one of the pool's few connections all that time."""
    with request.app.state.pool.connection() as conn:
        return current_key(conn, request, credentials, session)


def stream_viewer(
    request: Request, key: Annotated[ApiKey, Depends(stream_key)]
) -> tuple[ApiKey, Viewer]:
    """The key and what it may read of timelines (its own channels, for a customer), on a
    connection given back at once. A channel added later shows from the next stream."""
    with request.app.state.pool.connection() as conn:
        return key, viewer_for(conn, key)


def incident_message(
    event: IncidentEvent, customer: str | None, position: str, viewer: Viewer
) -> str | None:
    """The message a key is shown of one incident timeline event, or None when it may not
    see it. A customer's events are filtered here, and only here: whose devices (the
    customer) and which lines and fields (the viewer, api/visibility.py)."""
    if customer is not None and event.customer_id != customer:
        return None
    line = viewer.line(event.kind, event.detail)
    if line is None:
        return None
    return format_incident(event, position, line)


def format_incident(event: IncidentEvent, position: str, line: tuple[dict, str]) -> str:
    """One SSE message for one incident timeline event, with the detail and words shown."""
    data = {
        "event": event.kind,
        "at": event.at.isoformat(),
        "detail": line[0],
        "text": line[1],
        "incident": {
            "id": event.incident_id,
            "kind": event.incident_kind,
            "scope": event.scope,
            "device_id": event.device_id,
            "severity": event.severity,
            "status": event.status,
            "summary": event.summary,
        },
    }
    return f"id: {position}\nevent: incident\ndata: {json.dumps(data)}\n\n"


def format_campaign(event: CampaignEvent, position: str) -> str:
    """One SSE message for one campaign timeline event."""
    data = {
        "event": event.kind,
        "at": event.at.isoformat(),
        "detail": event.detail,
        "campaign": {
            "id": event.campaign_id,
            "name": event.name,
            "kind": event.campaign_kind,
            "status": event.status,
            "current_wave": event.current_wave,
        },
    }
    return f"id: {position}\nevent: campaign\ndata: {json.dumps(data, default=str)}\n\n"


def parse_position(text: str) -> tuple[int, int | None]:
    """`I-C` or `I` (then campaign events start from now); 400 for anything else."""
    parts = text.split("-")
    if len(parts) > 2 or not all(p.isdigit() and len(p) <= 19 for p in parts):
        raise HTTPException(400, "Last-Event-ID must be a position this stream sent")
    numbers = [int(p) for p in parts]
    if any(n > _MAX_ID for n in numbers):
        raise HTTPException(400, "Last-Event-ID must be a position this stream sent")
    return numbers[0], numbers[1] if len(numbers) == 2 else None


class EventStreamResponse(StreamingResponse):
    """A StreamingResponse that gives its place at the feed back however it ends: finished,
    cut off by the client, or never started."""

    def __init__(self, content, *, on_end, **kwargs) -> None:
        super().__init__(content, **kwargs)
        self._on_end = on_end

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_end()


@router.get(
    "/events",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}},
        429: {"description": "This key already has its share of open streams here"},
    },
)
async def events(
    request: Request,
    reader: Annotated[tuple[ApiKey, Viewer], Depends(stream_viewer)],
    since: Annotated[int | None, Query(ge=0, le=_MAX_ID)] = None,
    last_event_id: Annotated[str | None, Header(max_length=40, pattern=r"^[0-9-]+$")] = None,
    limit: Annotated[int | None, Query(ge=1, le=100_000, description="end after this many")] = None,
) -> StreamingResponse:
    """A text/event-stream of timeline events (only your devices' with a customer key)."""
    pool, feed = request.app.state.pool, request.app.state.feed
    key, viewer = reader
    customer = key.customer_scope
    incident_start, campaign_start = None, None
    if last_event_id:
        incident_start, campaign_start = parse_position(last_event_id)
    if since is not None:
        incident_start = since
    try:
        subscription = feed.open(key.caller_id)
    except TooManyStreams as refused:
        raise HTTPException(429, str(refused), headers={"Retry-After": "30"}) from None

    def shown(incidents: list[IncidentEvent], campaigns: list[CampaignEvent], after: list[int]):
        """The messages this key is shown of a batch, advancing `after` over all of it."""
        for event in incidents:
            if event.id > after[0]:
                after[0] = event.id
                position = f"{after[0]}-{after[1]}"
                if message := incident_message(event, customer, position, viewer):
                    yield message
        if customer is None:
            for event in campaigns:
                if event.id > after[1]:
                    after[1] = event.id
                    yield format_campaign(event, f"{after[0]}-{after[1]}")
        elif campaigns:
            after[1] = max(after[1], campaigns[-1].id)

    async def stream():
        upto = await feed.started(subscription)
        after = [
            upto[0] if incident_start is None else incident_start,
            upto[1] if campaign_start is None else campaign_start,
        ]
        if customer is not None:  # campaign events are never theirs
            after[1] = max(after[1], upto[1])
        sent = 0
        # The starting position as an id, so a client cut off before any event resumes here.
        yield f"id: {after[0]}-{after[1]}\n: connected\n\n"
        # What happened before the stream opened (a resume): once, from the database.
        while after[0] < upto[0] or (customer is None and after[1] < upto[1]):
            incidents, campaigns = await anyio.to_thread.run_sync(
                lambda: read_events(
                    pool, tuple(after), upto=upto, customer=customer, campaigns=customer is None
                )
            )
            for message in shown(incidents, campaigns, after):
                yield message
                sent += 1
                if limit is not None and sent >= limit:
                    return
            if len(incidents) < BATCH:
                after[0] = max(after[0], upto[0])
            if len(campaigns) < BATCH:
                after[1] = max(after[1], upto[1])
        # From then on, what the feed hands over; a keepalive when nothing was sent for a
        # while (a customer's stream may be handed many events and shown none).
        last_sent = time.monotonic()
        while True:
            quiet_for = time.monotonic() - last_sent
            batch = await subscription.take(max(0.0, KEEPALIVE_S - quiet_for))
            if batch is None:  # fell too far behind: the client resumes from the database
                return
            for message in shown(*batch, after) if batch else ():
                yield message
                last_sent = time.monotonic()
                sent += 1
                if limit is not None and sent >= limit:
                    return
            if time.monotonic() - last_sent >= KEEPALIVE_S:
                yield f"id: {after[0]}-{after[1]}\n: keepalive\n\n"
                last_sent = time.monotonic()

    return EventStreamResponse(
        stream(),
        on_end=lambda: feed.close(subscription),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache"},
    )
