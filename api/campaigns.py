"""Campaign routes: the firmware team creates and steers campaigns, owners acknowledge recalls.

A recall notice carries a link (`/recall/{token}`) that works without a key: the token is
unguessable, kept only as its SHA-256, acknowledges that one device's notice only, and
stops working once the recall is over (campaigns/links.py).
"""

from __future__ import annotations

import html
import logging
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, PlainTextResponse
from pydantic import BaseModel

from api.auth import ApiKey
from api.deps import CustomerKey, DbConn, ReaderKey, require
from api.fleet import DeviceIdQuery
from campaigns.completion import completion_csv, completion_json, recall_completion
from campaigns.links import ACK_RECALL, link_open, token_hash
from campaigns.notices import SAFE, UNSAFE
from campaigns.store import CampaignCreate, campaign_progress, create_campaign, move_campaign

log = logging.getLogger(__name__)
router = APIRouter(tags=["campaigns"])
links = APIRouter(tags=["campaigns"])

FirmwareKey = Annotated[ApiKey, Depends(require("admin", "firmware"))]
CampaignId = Annotated[int, Path(ge=1, le=2**63 - 1)]

_COLUMNS = """id, name, kind, status, target, target_version, artifact_url, artifact_sha256,
waves, soak_s, window_start, window_end, starts_at, current_wave, wave_opened_at, policy,
safe_to_use, instructions, halted_reason, created_by, created_at, finished_at, remedy, fixed_in,
safety_critical, avoid"""


class CampaignPublic(BaseModel):
    id: int
    name: str
    kind: str
    status: str
    target: dict[str, Any]
    target_version: str | None
    artifact_url: str | None
    artifact_sha256: str | None
    waves: list[float]
    soak_s: int
    window_start: Any
    window_end: Any
    starts_at: datetime
    current_wave: int
    wave_opened_at: datetime | None
    policy: dict[str, Any]
    safe_to_use: bool | None
    instructions: str | None
    halted_reason: str | None
    created_by: str
    created_at: datetime
    finished_at: datetime | None
    remedy: str | None = None
    fixed_in: str | None = None
    safety_critical: bool | None = None
    avoid: str | None = None
    progress: dict[str, Any]


class CampaignEvent(BaseModel):
    at: datetime
    kind: str
    detail: dict[str, Any]


class CampaignDetail(CampaignPublic):
    timeline: list[CampaignEvent]


class CampaignDevice(BaseModel):
    device_id: str
    wave: int
    state: str
    state_at: datetime | None
    attempt: int
    from_version: str | None
    failure_reason: str | None
    acknowledged_at: datetime | None


def find_campaign(conn, campaign_id: int) -> CampaignPublic | None:
    """A campaign with its progress, or None; the API and the CLI read through this."""
    row = conn.execute(f"SELECT {_COLUMNS} FROM campaigns WHERE id = %s", (campaign_id,)).fetchone()
    if row is None:
        return None
    fields = [f for f in CampaignPublic.model_fields if f != "progress"]
    return CampaignPublic(
        **dict(zip(fields, row, strict=True)), progress=campaign_progress(conn, campaign_id)
    )


def find_campaigns(conn, *, status: str | None = None, limit: int = 50) -> list[CampaignPublic]:
    """Campaigns newest first, each with its progress."""
    ids = conn.execute(
        "SELECT id FROM campaigns WHERE %(status)s::text IS NULL OR status = %(status)s "
        "ORDER BY id DESC LIMIT %(limit)s",
        {"status": status, "limit": limit},
    ).fetchall()
    return [find_campaign(conn, i) for (i,) in ids]


def campaign_with_timeline(conn, campaign_id: int) -> CampaignDetail | None:
    """A campaign with its progress and timeline, or None."""
    campaign = find_campaign(conn, campaign_id)
    if campaign is None:
        return None
    events = conn.execute(
        "SELECT at, kind, detail FROM campaign_events WHERE campaign_id = %s ORDER BY id",
        (campaign_id,),
    ).fetchall()
    return CampaignDetail(
        **campaign.model_dump(),
        timeline=[CampaignEvent(at=a, kind=k, detail=d) for a, k, d in events],
    )


def _load(conn, campaign_id: int) -> CampaignPublic:
    campaign = find_campaign(conn, campaign_id)
    if campaign is None:
        raise HTTPException(404, f"no campaign {campaign_id}")
    return campaign


def _detail(conn, campaign_id: int) -> CampaignDetail:
    campaign = campaign_with_timeline(conn, campaign_id)
    if campaign is None:
        raise HTTPException(404, f"no campaign {campaign_id}")
    return campaign


@router.post("/campaigns", response_model=CampaignDetail, status_code=201)
def new_campaign(body: CampaignCreate, key: FirmwareKey, conn: DbConn) -> CampaignDetail:
    """Schedule a recall notice or an update for the devices its target matches."""
    campaign_id, _ = create_campaign(conn, body, created_by=key.name, now=datetime.now(UTC))
    return _detail(conn, campaign_id)


@router.get("/campaigns", response_model=list[CampaignPublic])
def list_campaigns(
    key: ReaderKey,
    conn: DbConn,
    status: Literal["scheduled", "running", "paused", "halted", "completed", "cancelled"]
    | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[CampaignPublic]:
    """Campaigns, newest first, each with its progress."""
    return find_campaigns(conn, status=status, limit=limit)


@router.get("/campaigns/{campaign_id}", response_model=CampaignDetail)
def campaign_detail(campaign_id: CampaignId, key: ReaderKey, conn: DbConn) -> CampaignDetail:
    """A campaign: counts per state and per wave, failures by reason, and its timeline."""
    return _detail(conn, campaign_id)


@router.get("/campaigns/{campaign_id}/devices", response_model=list[CampaignDevice])
def campaign_devices(
    campaign_id: CampaignId,
    key: ReaderKey,
    conn: DbConn,
    state: Annotated[str | None, Query(pattern=r"^[a-z_]{1,20}$")] = None,
    wave: Annotated[int | None, Query(ge=1, le=100)] = None,
    after: DeviceIdQuery = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[CampaignDevice]:
    """The campaign's devices in id order (pass the last id as `after` for the next page)."""
    _load(conn, campaign_id)
    rows = conn.execute(
        "SELECT device_id, wave, state, state_at, attempt, from_version, failure_reason, "
        "acknowledged_at FROM campaign_devices WHERE campaign_id = %(id)s "
        "AND (%(state)s::text IS NULL OR state = %(state)s) "
        "AND (%(wave)s::int IS NULL OR wave = %(wave)s) "
        "AND (%(after)s::text IS NULL OR device_id > %(after)s) "
        "ORDER BY device_id LIMIT %(limit)s",
        {"id": campaign_id, "state": state, "wave": wave, "after": after, "limit": limit},
    ).fetchall()
    return [CampaignDevice(**dict(zip(CampaignDevice.model_fields, r, strict=True))) for r in rows]


def _completion(conn, campaign_id: int, fmt: str) -> Any:
    campaign = _load(conn, campaign_id)
    if campaign.kind == "ota_update":
        raise HTTPException(409, f"campaign {campaign_id} is an update, not a recall")
    now = datetime.now(UTC)
    result = recall_completion(conn, campaign_id, campaign.starts_at, now)
    if fmt == "csv":
        return PlainTextResponse(
            completion_csv(result, campaign_id=campaign_id, as_of=now),
            media_type="text/csv; charset=utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="recall-{campaign_id}-'
                f'completion-{now:%Y%m%d}.csv"'
            },
        )
    return {"campaign_id": campaign_id, "as_of": now, **completion_json(result)}


@router.get("/campaigns/{campaign_id}/completion", response_model=None)
def recall_completion_view(
    campaign_id: CampaignId,
    key: ReaderKey,
    conn: DbConn,
    format: Literal["json", "csv"] = "json",
) -> Any:
    """A recall's completion: remedied, acknowledged, notified and unreachable devices in
    total, by model and region, and day by day since it started (`format=csv` for a report)."""
    return _completion(conn, campaign_id, format)


@router.get("/campaigns/{campaign_id}/completion.csv", response_class=PlainTextResponse)
def recall_completion_csv(campaign_id: CampaignId, key: ReaderKey, conn: DbConn):
    """The completion report as CSV: one row per model and region, and the total."""
    return _completion(conn, campaign_id, "csv")


def _move(conn, campaign_id: int, move: str, key) -> CampaignDetail:
    current = _load(conn, campaign_id)
    if move_campaign(conn, campaign_id, move, by=key.name, now=datetime.now(UTC)) is None:
        raise HTTPException(409, f"a {current.status} campaign cannot {move}")
    return _detail(conn, campaign_id)


@router.post("/campaigns/{campaign_id}/pause", response_model=CampaignDetail)
def pause(campaign_id: CampaignId, key: FirmwareKey, conn: DbConn) -> CampaignDetail:
    """No new commands; updates already under way finish."""
    return _move(conn, campaign_id, "pause", key)


@router.post("/campaigns/{campaign_id}/resume", response_model=CampaignDetail)
def resume(campaign_id: CampaignId, key: FirmwareKey, conn: DbConn) -> CampaignDetail:
    """Go on after a pause, or after a halt once someone has looked."""
    return _move(conn, campaign_id, "resume", key)


@router.post("/campaigns/{campaign_id}/cancel", response_model=CampaignDetail)
def cancel(campaign_id: CampaignId, key: FirmwareKey, conn: DbConn) -> CampaignDetail:
    """Stop for good; devices not yet commanded are never commanded."""
    return _move(conn, campaign_id, "cancel", key)


# -- the owner's side ----------------------------------------------------------------------


class MyCampaign(BaseModel):
    campaign_id: int
    name: str
    kind: str
    status: str
    safe_to_use: bool | None
    instructions: str | None
    target_version: str | None
    devices: list[CampaignDevice]


@router.get("/me/campaigns", response_model=list[MyCampaign], tags=["customer"])
def my_campaigns(key: CustomerKey, conn: DbConn) -> list[MyCampaign]:
    """Recalls and updates that concern my devices."""
    rows = conn.execute(
        "SELECT c.id, c.name, c.kind, c.status, c.safe_to_use, c.instructions, c.target_version, "
        "cd.device_id, cd.wave, cd.state, cd.state_at, cd.attempt, cd.from_version, "
        "cd.failure_reason, cd.acknowledged_at "
        "FROM campaign_devices cd JOIN campaigns c ON c.id = cd.campaign_id "
        "JOIN devices d ON d.id = cd.device_id "
        "WHERE d.customer_id = %s AND (c.kind IN ('recall_notice', 'safety_recall') "
        "OR cd.attempt > 0) "
        "ORDER BY c.id DESC, cd.device_id",
        (key.customer_id,),
    ).fetchall()
    mine: dict[int, MyCampaign] = {}
    for row in rows:
        entry = mine.setdefault(
            row[0],
            MyCampaign(
                campaign_id=row[0],
                name=row[1],
                kind=row[2],
                status=row[3],
                safe_to_use=row[4],
                instructions=row[5],
                target_version=row[6],
                devices=[],
            ),
        )
        entry.devices.append(
            CampaignDevice(**dict(zip(CampaignDevice.model_fields, row[7:], strict=True)))
        )
    return list(mine.values())


@router.post("/me/campaigns/{campaign_id}/ack", response_model=list[MyCampaign], tags=["customer"])
def acknowledge_recall(campaign_id: CampaignId, key: CustomerKey, conn: DbConn):
    """I have read this recall notice (for all my devices it concerns)."""
    done = conn.execute(
        ACK_RECALL.format(
            which="cd.campaign_id = %(id)s AND cd.device_id IN "
            "(SELECT id FROM devices WHERE customer_id = %(customer)s)"
        ),
        {"now": datetime.now(UTC), "id": campaign_id, "customer": key.customer_id},
    ).fetchall()
    if not done and not any(c.campaign_id == campaign_id for c in my_campaigns(key, conn)):
        raise HTTPException(404, f"no recall {campaign_id} for your devices")
    for cid, device in done:
        log.info("campaign %d device %s: recall acknowledged by its owner", cid, device)
    return [c for c in my_campaigns(key, conn) if c.campaign_id == campaign_id]


_TOKEN = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{16,64}$")]
_NOTICE_OF_LINK = """
SELECT c.name, c.safe_to_use, c.instructions, d.name, d.id, cd.acknowledged_at, c.status,
       c.finished_at, c.id
FROM recall_links l
JOIN campaign_devices cd ON cd.campaign_id = l.campaign_id AND cd.device_id = l.device_id
JOIN campaigns c ON c.id = cd.campaign_id
JOIN devices d ON d.id = cd.device_id WHERE l.token_hash = %s
"""


def _notice_of_link(request: Request, conn, token: str) -> tuple:
    """The notice a link was sent with, while the link works; 404 otherwise (unknown, or
    its recall over)."""
    row = conn.execute(_NOTICE_OF_LINK, (token_hash(token),)).fetchone()
    grace = timedelta(seconds=request.app.state.settings.api_recall_link_grace_s)
    if row is None or not link_open(row[6], row[7], datetime.now(UTC), grace):
        raise HTTPException(404, "this link is not valid")
    return row


def _page(title: str, body: str) -> HTMLResponse:
    return HTMLResponse(
        f"<!doctype html><meta charset='utf-8'><meta name='viewport' "
        f"content='width=device-width'><title>{html.escape(title)}</title>"
        f"<body style='font-family:sans-serif;max-width:40em;margin:2em auto'>{body}</body>"
    )


@links.get("/recall/{token}", response_class=HTMLResponse, include_in_schema=False)
def recall_page(request: Request, token: _TOKEN, conn: DbConn) -> HTMLResponse:
    """The page a recall notice links to: what it is about, and a button to confirm."""
    notice = _notice_of_link(request, conn, token)
    name, safe, instructions, device_name, device_id, acknowledged_at = notice[:6]
    done = acknowledged_at is not None
    body = (
        f"<h1>{html.escape(name)}</h1><p>Your device: {html.escape(device_name or device_id)}</p>"
        f"<p>{SAFE if safe else UNSAFE}</p>"
        f"<p>What to do: {html.escape(instructions or '')}</p>"
        + (
            "<p><strong>Thank you: you have confirmed this notice.</strong></p>"
            if done
            else f"<form method='post' action='/recall/{html.escape(token)}'>"
            "<button type='submit'>I have read this notice</button></form>"
        )
    )
    return _page(name, body)


@links.post("/recall/{token}", response_class=HTMLResponse, include_in_schema=False)
def recall_confirm(request: Request, token: _TOKEN, conn: DbConn) -> HTMLResponse:
    """Acknowledge the notice the link was sent for."""
    notice = _notice_of_link(request, conn, token)
    for cid, device in conn.execute(
        ACK_RECALL.format(which="cd.campaign_id = %(campaign)s AND cd.device_id = %(device)s"),
        {"now": datetime.now(UTC), "campaign": notice[8], "device": notice[4]},
    ).fetchall():
        log.info("campaign %d device %s: recall acknowledged through its link", cid, device)
    return recall_page(request, token, conn)
