"""The live stream: server-sent events of incident and campaign timelines as they happen.

Every status change the monitor makes lands on an incident's timeline (a device goes
offline or degraded: `opened`; it is back: `resolved`), so this one stream carries status
changes and incidents alike; staff keys also get campaign progress (`event: campaign`).
A customer or firmware key gets the lines, and the fields, its incident timeline shows
(api/visibility.py: `Viewer.line`), and nothing of the others.
Each message's id is a position `I-C` (incident event, campaign event): resume after a
disconnect with `Last-Event-ID` (or `since` for incident events alone).
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import anyio
from fastapi import APIRouter, Header, HTTPException, Query, Request
from fastapi.responses import StreamingResponse

from api.deps import CurrentKey
from api.visibility import Viewer, viewer_for

router = APIRouter(tags=["live"])

POLL_S = 1.0
# A comment line this often keeps proxies from closing an idle stream.
KEEPALIVE_S = 15.0
BATCH = 500
_MAX_ID = 2**63 - 1

_INCIDENT_EVENTS = """
SELECT e.id, e.at, e.kind, i.id, i.kind, i.scope, i.device_id, i.severity, i.status, i.summary,
       e.detail
FROM incident_events e JOIN incidents i ON i.id = e.incident_id
WHERE e.id > %(after)s {scope}
ORDER BY e.id LIMIT %(limit)s
"""
_SCOPE = "AND i.device_id IN (SELECT id FROM devices WHERE customer_id = %(customer)s)"
_CAMPAIGN_EVENTS = """
SELECT e.id, e.at, e.kind, e.detail, c.id, c.name, c.kind, c.status, c.current_wave
FROM campaign_events e JOIN campaigns c ON c.id = e.campaign_id
WHERE e.id > %(after)s ORDER BY e.id LIMIT %(limit)s
"""
_NOW = """
SELECT (SELECT coalesce(max(id), 0) FROM incident_events),
       (SELECT coalesce(max(id), 0) FROM campaign_events)
"""


def _fetch(pool, after: tuple[int, int], customer: str | None):
    """New incident and campaign events after `after`; campaign events for staff only."""
    with pool.connection() as conn:
        incidents = conn.execute(
            _INCIDENT_EVENTS.format(scope=_SCOPE if customer else ""),
            {"after": after[0], "customer": customer, "limit": BATCH},
        ).fetchall()
        campaigns = []
        if customer is None:
            campaigns = conn.execute(
                _CAMPAIGN_EVENTS, {"after": after[1], "limit": BATCH}
            ).fetchall()
        return incidents, campaigns


def _now(pool) -> tuple[int, int]:
    with pool.connection() as conn:
        return tuple(conn.execute(_NOW).fetchone())


def _viewer(pool, key) -> Viewer:
    with pool.connection() as conn:
        return viewer_for(conn, key)


def format_incident(row: tuple, position: str, viewer: Viewer) -> str | None:
    """One SSE message for one incident timeline event; None when not for this reader."""
    _, at, kind, incident_id, incident_kind, scope, device, severity, status, summary, detail = row
    line = viewer.line(kind, detail)
    if line is None:
        return None
    data = {
        "event": kind,
        "at": at.isoformat(),
        "detail": line[0],
        "text": line[1],
        "incident": {
            "id": incident_id,
            "kind": incident_kind,
            "scope": scope,
            "device_id": device,
            "severity": severity,
            "status": status,
            "summary": summary,
        },
    }
    return f"id: {position}\nevent: incident\ndata: {json.dumps(data)}\n\n"


def format_campaign(row: tuple, position: str) -> str:
    """One SSE message for one campaign timeline event."""
    _, at, kind, detail, campaign_id, name, campaign_kind, status, wave = row
    data = {
        "event": kind,
        "at": at.isoformat(),
        "detail": detail,
        "campaign": {
            "id": campaign_id,
            "name": name,
            "kind": campaign_kind,
            "status": status,
            "current_wave": wave,
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


@router.get(
    "/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def events(
    request: Request,
    key: CurrentKey,
    since: Annotated[int | None, Query(ge=0, le=_MAX_ID)] = None,
    last_event_id: Annotated[str | None, Header(max_length=40, pattern=r"^[0-9-]+$")] = None,
    limit: Annotated[int | None, Query(ge=1, le=100_000, description="end after this many")] = None,
) -> StreamingResponse:
    """A text/event-stream of timeline events (only your devices' with a customer key)."""
    pool = request.app.state.pool
    customer = key.customer_scope
    incident_start, campaign_start = None, None
    if last_event_id:
        incident_start, campaign_start = parse_position(last_event_id)
    if since is not None:
        incident_start = since

    async def stream():
        now = await anyio.to_thread.run_sync(_now, pool)
        # Built once: a channel the customer adds later shows from their next connection.
        viewer = await anyio.to_thread.run_sync(_viewer, pool, key)
        after = [
            now[0] if incident_start is None else incident_start,
            now[1] if campaign_start is None else campaign_start,
        ]
        sent, idle = 0, 0.0
        # The starting position as an id, so a client cut off before any event resumes here.
        yield f"id: {after[0]}-{after[1]}\n: connected\n\n"
        while not await request.is_disconnected():
            incidents, campaigns = await anyio.to_thread.run_sync(
                _fetch, pool, tuple(after), customer
            )
            for row in incidents:
                after[0] = row[0]
                message = format_incident(row, f"{after[0]}-{after[1]}", viewer)
                if message is None:
                    continue
                yield message
                sent += 1
                if limit is not None and sent >= limit:
                    return
            for row in campaigns:
                after[1] = row[0]
                yield format_campaign(row, f"{after[0]}-{after[1]}")
                sent += 1
                if limit is not None and sent >= limit:
                    return
            if len(incidents) == BATCH or len(campaigns) == BATCH:
                continue
            await asyncio.sleep(POLL_S)
            idle += POLL_S
            if idle >= KEEPALIVE_S:
                idle = 0.0
                yield ": keepalive\n\n"

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )
