"""Fleet routes: the summary, the device list and detail, and heartbeat history.

A customer key gets the same answers, restricted to its own customer's devices.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

import psycopg
from fastapi import APIRouter, HTTPException, Path, Query, Request

from api.deps import CurrentKey, DbConn
from api.history import flavour, read_history
from api.models import (
    ConnectivityEvent,
    DeviceDetail,
    DevicePage,
    DevicePublic,
    FleetSummary,
    History,
    IncidentPublic,
    OnlineShare,
    SilencePublic,
)
from api.summary import summarize
from api.visibility import incident_for, viewer_for
from contract.ids import DEVICE_ID_PATTERN

router = APIRouter(tags=["fleet"])

DeviceIdPath = Annotated[str, Path(pattern=DEVICE_ID_PATTERN)]
DeviceIdQuery = Annotated[str | None, Query(pattern=DEVICE_ID_PATTERN)]
_FILTER = Annotated[str | None, Query(min_length=1, max_length=64, pattern=r"^[^\x00]*$")]
MAX_HISTORY = timedelta(days=31)

DEVICE_COLUMNS = """
d.id, d.name, d.model_id, m.kind, m.device_type, d.serial, d.vin,
coalesce(st.firmware, d.firmware), d.customer_id, d.region, d.labels, d.timezone,
coalesce(st.status, 'provisioned'), st.status_changed_at, st.last_seen_at, st.last_metrics,
d.retired_at, d.site_id, d.parent_id
"""
_DEVICE_FIELDS = tuple(DevicePublic.model_fields)


def device_from_row(row) -> DevicePublic:
    return DevicePublic(**dict(zip(_DEVICE_FIELDS, row, strict=True)))


def encode_cursor(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> str | None:
    """The position a cursor stands for; 400 for a cursor we did not make."""
    if cursor is None:
        return None
    try:
        padded = (cursor + "=" * (-len(cursor) % 4)).encode()
        value = base64.b64decode(padded, altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise HTTPException(400, "invalid cursor: pass back the next_cursor of a page") from None
    if not value or "\x00" in value:
        raise HTTPException(400, "invalid cursor: pass back the next_cursor of a page")
    return value


@router.get("/fleet/summary", response_model=FleetSummary)
def fleet_summary(request: Request, key: CurrentKey, conn: DbConn) -> FleetSummary:
    """Device counts by status, and by model, firmware, kind and region (each by status)."""
    if key.customer_scope is None:
        return request.app.state.summary.get()
    return summarize(conn, datetime.now(UTC), customer_id=key.customer_scope)


@router.get("/fleet/online-share", response_model=list[OnlineShare])
def online_share(
    key: CurrentKey,
    conn: DbConn,
    hours: Annotated[int, Query(ge=1, le=24 * 31)] = 24,
) -> list[OnlineShare]:
    """The share of the fleet online over time: one point a minute (staff) or live (customer)."""
    if key.customer_scope is not None:
        summary = summarize(conn, datetime.now(UTC), customer_id=key.customer_scope)
        online = summary.by_status.get("online", 0) + summary.by_status.get("degraded", 0)
        share = online / summary.total if summary.total else 0.0
        return [OnlineShare(at=summary.as_of, total=summary.total, online=online, share=share)]
    rows = conn.execute(
        "SELECT at, total, online FROM fleet_history WHERE at > now() - %s ORDER BY at",
        (timedelta(hours=hours),),
    ).fetchall()
    return [
        OnlineShare(at=at, total=total, online=online, share=online / total if total else 0.0)
        for at, total, online in rows
    ]


@router.get("/devices", response_model=DevicePage)
def list_devices(
    key: CurrentKey,
    conn: DbConn,
    status: Annotated[
        Literal["provisioned", "never_seen", "online", "degraded", "offline", "paused", "retired"]
        | None,
        Query(),
    ] = None,
    model: _FILTER = None,
    firmware: _FILTER = None,
    label: _FILTER = None,
    region: _FILTER = None,
    kind: Literal["home", "vehicle"] | None = None,
    customer: _FILTER = None,
    q: Annotated[
        str | None,
        Query(min_length=1, max_length=64, pattern=r"^[^\x00]*$", description="id/name/serial/VIN"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> DevicePage:
    """Devices in id order, filtered; follow `next_cursor` for the next page."""
    where = ["true"]
    params: dict = {"limit": limit + 1}
    if status != "retired":
        where.append("d.retired_at IS NULL")
    after = decode_cursor(cursor)
    state_join = "st.device_id = d.id"
    if after is not None:
        where.append("d.id > %(after)s")
        # PostgreSQL carries no inequality across d.id = st.device_id: without this bound a
        # merge join reads device_state from its first row on every deep page.
        state_join += " AND st.device_id > %(after)s"
        params["after"] = after
    scope = key.customer_scope or customer
    for name, value, clause in (
        ("status", status, "st.status = %(status)s"),
        ("model", model, "d.model_id = %(model)s"),
        ("firmware", firmware, "coalesce(st.firmware, d.firmware) = %(firmware)s"),
        ("label", label, "d.labels @> ARRAY[%(label)s]::text[]"),
        ("region", region, "d.region = %(region)s"),
        ("kind", kind, "m.kind = %(kind)s"),
        ("customer", scope, "d.customer_id = %(customer)s"),
    ):
        if value is not None:
            where.append(clause)
            params[name] = value
    if key.customer_scope and customer and customer != key.customer_scope:
        return DevicePage(items=[], next_cursor=None)
    if q is not None:
        where.append(
            "(d.id ILIKE %(q)s OR d.name ILIKE %(q)s OR d.serial ILIKE %(q)s OR d.vin ILIKE %(q)s)"
        )
        params["q"] = "%" + q.replace("\\", "\\\\").replace("%", r"\%").replace("_", r"\_") + "%"
    rows = conn.execute(
        f"SELECT {DEVICE_COLUMNS} FROM devices d "
        "JOIN device_models m ON m.id = d.model_id "
        f"LEFT JOIN device_state st ON {state_join} "
        f"WHERE {' AND '.join(where)} ORDER BY d.id LIMIT %(limit)s",
        params,
    ).fetchall()
    items = [device_from_row(r) for r in rows[:limit]]
    more = len(rows) > limit
    return DevicePage(items=items, next_cursor=encode_cursor(items[-1].id) if more else None)


def load_device(conn: psycopg.Connection, device_id: str, customer_scope: str | None):
    """The device's row, or 404 (also for a device of another customer)."""
    row = conn.execute(
        f"SELECT {DEVICE_COLUMNS}, m.name, m.heartbeat_interval_s, st.last_seq, "
        "st.last_uptime_s, st.overdue_at, st.connectivity, st.clock_skewed_at "
        "FROM devices d JOIN device_models m ON m.id = d.model_id "
        "LEFT JOIN device_state st ON st.device_id = d.id WHERE d.id = %s",
        (device_id,),
    ).fetchone()
    if row is None or (customer_scope is not None and row[8] != customer_scope):
        raise HTTPException(404, f"no device {device_id!r}")
    return row


INCIDENT_COLUMNS = """i.id, i.scope, i.device_id, i.kind, i.severity, i.status, i.opened_at,
i.acknowledged_at, i.acknowledged_by, i.resolved_at, i.summary, i.group_key"""
_INCIDENT_FIELDS = tuple(IncidentPublic.model_fields)


def incident_from_row(row) -> IncidentPublic:
    return IncidentPublic(**dict(zip(_INCIDENT_FIELDS, row, strict=True)))


_DEVICE_SILENCES = """
SELECT s.id, s.scope, s.target, s.starts_at, s.ends_at, s.reason, s.maintenance, s.created_by
FROM silences s JOIN devices d ON d.id = %(device)s
WHERE s.ends_at > now()
  AND ((s.scope = 'device' AND s.target = d.id) OR (s.scope = 'model' AND s.target = d.model_id)
       OR (s.scope = 'label' AND s.target = ANY (d.labels)))
ORDER BY s.starts_at
"""


@router.get("/devices/{device_id}", response_model=DeviceDetail)
def device_detail(device_id: DeviceIdPath, key: CurrentKey, conn: DbConn) -> DeviceDetail:
    """One device: registry row, state, last metrics, open incidents, recent connectivity,
    silences."""
    row = load_device(conn, device_id, key.customer_scope)
    base = device_from_row(row[: len(_DEVICE_FIELDS)]).model_dump()
    extra = row[len(_DEVICE_FIELDS) :]
    incidents = conn.execute(
        f"SELECT {INCIDENT_COLUMNS} FROM incidents i "
        "WHERE i.device_id = %s AND i.scope = 'device' AND i.status <> 'resolved' "
        "ORDER BY i.opened_at DESC",
        (device_id,),
    ).fetchall()
    events = conn.execute(
        "SELECT received_at, status, retained FROM connectivity_events WHERE device_id = %s "
        "ORDER BY received_at DESC LIMIT 20",
        (device_id,),
    ).fetchall()
    silences = conn.execute(_DEVICE_SILENCES, {"device": device_id}).fetchall()
    viewer = viewer_for(conn, key)
    return DeviceDetail(
        **base,
        model_name=extra[0],
        heartbeat_interval_s=extra[1],
        last_seq=extra[2],
        last_uptime_s=extra[3],
        overdue_at=extra[4],
        connectivity=extra[5],
        clock_skewed_at=extra[6],
        open_incidents=[incident_for(key, incident_from_row(r)) for r in incidents],
        connectivity_events=[
            ConnectivityEvent(received_at=a, status=s, retained=r) for a, s, r in events
        ],
        # A customer or firmware key reads when alerts are held, not why or by whom.
        silences=[
            viewer.silence(SilencePublic(**dict(zip(SilencePublic.model_fields, s, strict=True))))
            for s in silences
        ],
    )


@router.get("/devices/{device_id}/history", response_model=History, response_model_by_alias=True)
def device_history(
    request: Request,
    device_id: DeviceIdPath,
    key: CurrentKey,
    conn: DbConn,
    start: Annotated[datetime | None, Query(alias="from")] = None,
    end: Annotated[datetime | None, Query(alias="to")] = None,
    resolution: Literal["raw", "5m", "1h", "1d"] = "5m",
) -> History:
    """Heartbeats over [from, to) (default the last 24 h), raw or summarised per bucket."""
    load_device(conn, device_id, key.customer_scope)
    now = datetime.now(UTC)
    end = end or now
    try:
        start = start or end - timedelta(days=1)
    except OverflowError:
        raise HTTPException(400, "to is too early for the default one-day range") from None
    if start.tzinfo is None or end.tzinfo is None:
        raise HTTPException(400, "from and to need a UTC offset, e.g. 2026-12-01T00:00:00Z")
    if not start < end:
        raise HTTPException(400, "from must be before to")
    if end - start > MAX_HISTORY:
        raise HTTPException(400, f"at most {MAX_HISTORY.days} days at a time")
    state = request.app.state
    if getattr(state, "flavour", None) is None:
        state.flavour = flavour(conn)
    points = read_history(conn, device_id, start, end, resolution, db_flavour=state.flavour)
    return History(device_id=device_id, resolution=resolution, start=start, end=end, points=points)
