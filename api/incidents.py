"""Incident routes: list, detail with timeline, acknowledge, resolve, comment, staff's updates
to customers; silences."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

import psycopg
from fastapi import APIRouter, HTTPException, Path, Query

import incidents
from alerts import silences
from alerts.notices import record_notices
from alerts.redact import redact_url
from alerts.silences import COLUMNS as _SILENCE_COLUMNS
from alerts.updates import update_notices
from api.deps import CurrentKey, DbConn, StaffKey
from api.fleet import (
    INCIDENT_COLUMNS,
    DeviceIdQuery,
    decode_cursor,
    encode_cursor,
    incident_from_row,
)
from api.models import (
    Comment,
    IncidentDetail,
    IncidentPage,
    IncidentPublic,
    NotificationPublic,
    Resolve,
    SilenceCreate,
    SilencePublic,
    TimelineEvent,
    UpdateCreate,
)
from api.visibility import incident_details_for, incident_for, viewer_for

log = logging.getLogger(__name__)
router = APIRouter(tags=["incidents"])

IncidentId = Annotated[int, Path(ge=1, le=2**63 - 1)]
_CUSTOMER_INCIDENTS = "i.device_id IN (SELECT id FROM devices WHERE customer_id = %(customer)s)"


@router.get("/incidents", response_model=IncidentPage)
def list_incidents(
    key: CurrentKey,
    conn: DbConn,
    status: Literal["active", "open", "acknowledged", "resolved"] | None = None,
    severity: Literal["info", "warning", "critical"] | None = None,
    scope: Literal["device", "fleet", "system", "site"] | None = None,
    kind: Annotated[str | None, Query(min_length=1, max_length=64, pattern=r"^[a-z0-9_]+$")] = None,
    device_id: DeviceIdQuery = None,
    since: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> IncidentPage:
    """Incidents newest first; `active` is open or acknowledged."""
    if since is not None and since.tzinfo is None:
        raise HTTPException(400, "since needs a UTC offset, e.g. 2026-12-01T00:00:00Z")
    after = decode_cursor(cursor)
    if after is not None and (not after.isdigit() or int(after) > 2**63 - 1):
        raise HTTPException(400, "invalid cursor: pass back the next_cursor of a page")
    rows = find_incidents(
        conn,
        status=status,
        severity=severity,
        scope=scope,
        kind=kind,
        device_id=device_id,
        since=since,
        customer=key.customer_scope,
        before_id=int(after) if after is not None else None,
        limit=limit + 1,
    )
    items = [incident_for(key, i) for i in rows[:limit]]
    more = len(rows) > limit
    return IncidentPage(items=items, next_cursor=encode_cursor(str(items[-1].id)) if more else None)


def find_incidents(
    conn: psycopg.Connection,
    *,
    status: str | None = None,
    severity: str | None = None,
    scope: str | None = None,
    kind: str | None = None,
    device_id: str | None = None,
    since: datetime | None = None,
    customer: str | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> list[IncidentPublic]:
    """Incidents newest first, filtered (`active`: open or acknowledged; `customer`: only
    that customer's devices'); the API and the CLI read through this."""
    where, params = ["true"], {"limit": limit}
    if status == "active":
        where.append("i.status <> 'resolved'")
    elif status:
        where.append("i.status = %(status)s")
        params["status"] = status
    for name, value in (
        ("severity", severity),
        ("scope", scope),
        ("kind", kind),
        ("device_id", device_id),
    ):
        if value is not None:
            where.append(f"i.{name} = %({name})s")
            params[name] = value
    if since is not None:
        where.append("i.opened_at >= %(since)s")
        params["since"] = since
    if customer:
        where.append(_CUSTOMER_INCIDENTS)
        params["customer"] = customer
    if before_id is not None:
        where.append("i.id < %(after)s")
        params["after"] = before_id
    rows = conn.execute(
        f"SELECT {INCIDENT_COLUMNS} FROM incidents i WHERE {' AND '.join(where)} "
        "ORDER BY i.id DESC LIMIT %(limit)s",
        params,
    ).fetchall()
    return [incident_from_row(r) for r in rows]


def _visible(conn: psycopg.Connection, incident_id: int, customer: str | None):
    row = conn.execute(
        f"SELECT {INCIDENT_COLUMNS}, i.details FROM incidents i WHERE i.id = %(id)s"
        + (f" AND {_CUSTOMER_INCIDENTS}" if customer else ""),
        {"id": incident_id, "customer": customer},
    ).fetchone()
    if row is None:
        raise HTTPException(404, f"no incident {incident_id}")
    return row


_NOTIFICATIONS = """
SELECT n.id, n.incident_id, n.device_id, coalesce(n.channel_id, n.staff_channel_id),
       coalesce(c.apprise_url, s.apprise_url), n.template, n.severity, n.status, n.created_at,
       n.due_at, n.sent_at, n.attempts, n.last_error
FROM notifications n
LEFT JOIN contact_channels c ON c.id = n.channel_id
LEFT JOIN staff_channels s ON s.id = n.staff_channel_id
WHERE {where}
ORDER BY n.id DESC LIMIT %(limit)s
"""


def notifications(conn: psycopg.Connection, where: str, params: dict, limit: int = 200):
    """Outbox rows, their channel shown redacted."""
    rows = conn.execute(_NOTIFICATIONS.format(where=where), {**params, "limit": limit})
    return [
        NotificationPublic(
            id=r[0],
            incident_id=r[1],
            device_id=r[2],
            channel_id=r[3],
            channel=redact_url(r[4]) if r[4] else None,
            template=r[5],
            severity=r[6],
            status=r[7],
            created_at=r[8],
            due_at=r[9],
            sent_at=r[10],
            attempts=r[11],
            # A recorded error was scrubbed of the URL's secrets when it was written.
            last_error=r[12],
        )
        for r in rows
    ]


# A customer's own: sent to them, on a channel that is theirs (never a staff channel's row).
OWN_NOTIFICATIONS = "n.customer_id = %(customer)s AND c.customer_id = %(customer)s"


@router.get("/incidents/{incident_id}", response_model=IncidentDetail)
def incident_detail(incident_id: IncidentId, key: CurrentKey, conn: DbConn) -> IncidentDetail:
    """One incident with its timeline and the notifications it caused. A customer or firmware
    key reads the timeline's allowed kinds and fields (incidents/visibility.py), a customer
    only the messages to their own channels, firmware none's channel."""
    row = _visible(conn, incident_id, key.customer_scope)
    viewer = viewer_for(conn, key)
    timeline = []
    for at, kind, detail in conn.execute(
        "SELECT at, kind, detail FROM incident_events WHERE incident_id = %s ORDER BY at, id",
        (incident_id,),
    ):
        line = viewer.line(kind, detail)
        if line is not None:
            timeline.append(TimelineEvent(at=at, kind=kind, detail=line[0], text=line[1]))
    where = "n.incident_id = %(id)s"
    if key.customer_scope:
        where += f" AND {OWN_NOTIFICATIONS}"
    sent = notifications(conn, where, {"id": incident_id, "customer": key.customer_scope})
    return IncidentDetail(
        **incident_for(key, incident_from_row(row[:-1])).model_dump(),
        details=incident_details_for(key, row[-1]),
        timeline=timeline,
        notifications=[viewer.notification(n) for n in sent],
    )


@router.post("/incidents/{incident_id}/ack", response_model=IncidentDetail)
def ack_incident(incident_id: IncidentId, key: StaffKey, conn: DbConn) -> IncidentDetail:
    """Someone is on it: it is not escalated any further."""
    _visible(conn, incident_id, None)
    if not incidents.acknowledge(conn, incident_id, key.name, datetime.now(UTC)):
        raise HTTPException(409, f"incident {incident_id} is not open (acknowledged or resolved)")
    return incident_detail(incident_id, key, conn)


@router.post("/incidents/{incident_id}/resolve", response_model=IncidentDetail)
def resolve_incident(
    incident_id: IncidentId, body: Resolve, key: StaffKey, conn: DbConn
) -> IncidentDetail:
    """Close an incident by hand (the timeline says who and why)."""
    _visible(conn, incident_id, None)
    with conn.transaction():
        done = incidents.resolve(
            conn,
            [incident_id],
            datetime.now(UTC),
            by=key.name,
            note=body.note,
            details={incident_id: {"manual": True}},
        )
        if not done:
            raise HTTPException(409, f"incident {incident_id} is already resolved")
    log.info("incident %d resolved by %s", incident_id, key.name)
    return incident_detail(incident_id, key, conn)


@router.post("/incidents/{incident_id}/comments", response_model=IncidentDetail, status_code=201)
def comment_incident(
    incident_id: IncidentId, body: Comment, key: StaffKey, conn: DbConn
) -> IncidentDetail:
    """Add a note to the incident's timeline: staff's own, or with `for_customer` one the
    device's owner reads too."""
    _visible(conn, incident_id, None)
    incidents.comment(
        conn, incident_id, key.name, body.text, datetime.now(UTC), for_customer=body.for_customer
    )
    return incident_detail(incident_id, key, conn)


# A promise further out than this is no promise: staff would be nudged about it in a week.
MAX_PROMISE = timedelta(days=7)


@router.post("/incidents/{incident_id}/updates", response_model=IncidentDetail, status_code=201)
def post_update(
    incident_id: IncidentId, body: UpdateCreate, key: StaffKey, conn: DbConn
) -> IncidentDetail:
    """Tell the customers an incident concerns what is going on: a line on its timeline that
    its owner reads, and one message to them; on a fleet outage, the line on every member
    still down too, and one message per owner, naming each of their devices in it. With
    `next_update_at`, staff are nudged if it passes without another update."""
    now = datetime.now(UTC)
    row = _visible(conn, incident_id, None)
    if row[1] == "system":  # (INCIDENT_COLUMNS: id, scope, ...)
        raise HTTPException(422, f"incident {incident_id} concerns no customer (system)")
    promise = body.next_update_at
    if promise is not None:
        if promise.tzinfo is None:
            raise HTTPException(422, "next_update_at needs a UTC offset, e.g. 2026-12-01T15:00Z")
        if not now < promise <= now + MAX_PROMISE:
            raise HTTPException(422, "next_update_at must be within the next 7 days")
    with conn.transaction():
        posted = incidents.post_update(
            conn, incident_id, key.name, body.text, now, next_update_at=promise
        )
        if posted is None:
            raise HTTPException(409, f"incident {incident_id} is resolved")
        told = record_notices(conn, update_notices(conn, posted, now), now)
    log.info(
        "incident %d (device %s): update by %s, on %d member incidents too, to %d owners",
        incident_id,
        posted.device_id or "-",
        key.name,
        posted.members,
        told,
    )
    return incident_detail(incident_id, key, conn)


# -- silences and maintenance windows -----------------------------------------------------

_SILENCE_FIELDS = tuple(SilencePublic.model_fields)
_TARGETS = {
    "device": "SELECT 1 FROM devices WHERE id = %s",
    "model": "SELECT 1 FROM device_models WHERE id = %s",
}


@router.get("/silences", response_model=list[SilencePublic], tags=["silences"])
def list_silences(key: StaffKey, conn: DbConn, include_ended: bool = False) -> list[SilencePublic]:
    """Silences and maintenance windows, current and upcoming (and ended if asked)."""
    rows = conn.execute(
        f"SELECT {_SILENCE_COLUMNS} FROM silences "
        + ("" if include_ended else "WHERE ends_at > now() ")
        + "ORDER BY starts_at DESC LIMIT 500"
    ).fetchall()
    return [SilencePublic(**dict(zip(_SILENCE_FIELDS, r, strict=True))) for r in rows]


@router.post("/silences", response_model=SilencePublic, status_code=201, tags=["silences"])
def create_silence(body: SilenceCreate, key: StaffKey, conn: DbConn) -> SilencePublic:
    """Hold the customer alerts of a device, a model or a label until the silence ends."""
    check = _TARGETS.get(body.scope)
    if check and conn.execute(check, (body.target,)).fetchone() is None:
        raise HTTPException(422, f"no {body.scope} {body.target!r}")
    starts = body.starts_at or datetime.now(UTC)
    try:
        ends = body.ends_at or starts + timedelta(seconds=body.duration_s or 0)
    except OverflowError:
        raise HTTPException(422, "the silence ends too far in the future") from None
    if ends <= starts:
        raise HTTPException(422, "a silence must end after it starts")
    if ends - starts > timedelta(days=90):
        raise HTTPException(422, "a silence lasts at most 90 days")
    if ends <= datetime.now(UTC):
        raise HTTPException(422, "that silence would already be over")
    row = silences.add_silence(
        conn,
        scope=body.scope,
        target=body.target,
        starts=starts,
        ends=ends,
        reason=body.reason,
        maintenance=body.maintenance,
        created_by=key.name,
    )
    log.info("silence %d on %s %s until %s by %s", row[0], body.scope, body.target, ends, key.name)
    return SilencePublic(**dict(zip(_SILENCE_FIELDS, row, strict=True)))


@router.delete("/silences/{silence_id}", response_model=SilencePublic, tags=["silences"])
def end_silence(
    silence_id: Annotated[int, Path(ge=1, le=2**63 - 1)], key: StaffKey, conn: DbConn
) -> SilencePublic:
    """End a silence now: the alerts it was holding go out at once."""
    with conn.transaction():
        # Held notices wait exactly until the silence's end (alerts/router.py): now.
        ended = silences.end_silence(conn, silence_id, datetime.now(UTC))
        if ended is None:
            raise HTTPException(404, f"no current silence {silence_id}")
    log.info("silence %d ended by %s", silence_id, key.name)
    return SilencePublic(**dict(zip(_SILENCE_FIELDS, ended, strict=True)))
