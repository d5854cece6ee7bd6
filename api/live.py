"""The live stream: server-sent events of incident timelines as they happen.

Every status change the monitor makes lands on an incident's timeline (a device goes
offline or degraded: `opened`; it is back: `resolved`), so this one stream carries status
changes and incidents alike. Resume after a disconnect with `Last-Event-ID` (or `since`).
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import anyio
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from api.deps import CurrentKey

router = APIRouter(tags=["live"])

POLL_S = 1.0
# A comment line this often keeps proxies from closing an idle stream.
KEEPALIVE_S = 15.0
BATCH = 500

_EVENTS = """
SELECT e.id, e.at, e.kind, i.id, i.kind, i.scope, i.device_id, i.severity, i.status, i.summary
FROM incident_events e JOIN incidents i ON i.id = e.incident_id
WHERE e.id > %(after)s {scope}
ORDER BY e.id LIMIT %(limit)s
"""
_SCOPE = "AND i.device_id IN (SELECT id FROM devices WHERE customer_id = %(customer)s)"


def _fetch(pool, after: int, customer: str | None) -> list[tuple]:
    with pool.connection() as conn:
        if after < 0:  # start from now
            return [
                (conn.execute("SELECT coalesce(max(id), 0) FROM incident_events").fetchone()[0],)
            ]
        sql = _EVENTS.format(scope=_SCOPE if customer else "")
        return conn.execute(sql, {"after": after, "customer": customer, "limit": BATCH}).fetchall()


def format_event(row: tuple) -> str:
    """One SSE message for one timeline event."""
    event_id, at, kind, incident_id, incident_kind, scope, device, severity, status, summary = row
    data = {
        "event": kind,
        "at": at.isoformat(),
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
    return f"id: {event_id}\nevent: incident\ndata: {json.dumps(data)}\n\n"


@router.get(
    "/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def events(
    request: Request,
    key: CurrentKey,
    since: Annotated[int | None, Query(ge=0, le=2**63 - 1)] = None,
    last_event_id: Annotated[str | None, Header(max_length=20, pattern=r"^\d+$")] = None,
    limit: Annotated[int | None, Query(ge=1, le=100_000, description="end after this many")] = None,
) -> StreamingResponse:
    """A text/event-stream of timeline events (only your devices' with a customer key)."""
    pool = request.app.state.pool
    customer = key.customer_scope
    start = since if since is not None else int(last_event_id) if last_event_id else -1

    async def stream():
        after, sent, idle = start, 0, 0.0
        if after < 0:
            after = (await anyio.to_thread.run_sync(_fetch, pool, -1, customer))[0][0]
        # The starting position as an id, so a client cut off before any event resumes here.
        yield f"id: {after}\n: connected\n\n"
        while not await request.is_disconnected():
            rows = await anyio.to_thread.run_sync(_fetch, pool, after, customer)
            for row in rows:
                yield format_event(row)
                after, sent = row[0], sent + 1
                if limit is not None and sent >= limit:
                    return
            if len(rows) == BATCH:
                continue
            await asyncio.sleep(POLL_S)
            idle += POLL_S
            if idle >= KEEPALIVE_S:
                idle = 0.0
                yield ": keepalive\n\n"

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )
