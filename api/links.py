"""Message links: what the customer page (`/my/#link=TOKEN`) opens, and the answers it sends.

    POST /links/open  {"token"}                          the link's customer and subjects
    POST /links/act   {"token", "action", "device_id"}   an owner's answer about one device
    POST /links/signin {"token"}                         a sign-in link, to the channel the
                                                         message came on

No key: the token is the credential. It travels in the JSON body, never in a URL (no access
log or Referer holds it), and only POST acts: mail scanners that prefetch links issue GETs.
A malformed, unknown or expired token gets the same 404. A link opens its own customer's
devices only (portal/links.py), and of those, only the ones the customer still owns.

Signed-in customers and customer keys do the same under /me (api/me.py), through the same
functions (portal/actions.py).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Literal

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from api.deps import DbConn
from api.registry import AppSettings
from portal import page
from portal.actions import ACTIONS, FROM_LINK, NotAvailable, perform, who
from portal.links import Link, find_link
from portal.requests import request_signin_from_link

log = logging.getLogger(__name__)
router = APIRouter(prefix="/links", tags=["links"])

NOT_VALID = "this link is not valid: it may have expired; your latest message has a new one"


class LinkOpen(BaseModel):
    # Longer than any token: a malformed one is answered like an unknown one (404).
    token: str = Field(max_length=256)


class LinkAct(LinkOpen):
    action: Literal[ACTIONS]  # type: ignore[valid-type]
    device_id: str = Field(min_length=1, max_length=64)


class ActionOffer(BaseModel):
    action: str
    label: str


class DeviceView(BaseModel):
    id: str
    name: str
    kind: str
    model: str
    status: str | None
    status_text: str
    since: datetime | None
    firmware: str | None
    what_to_do: str


class TimelineLine(BaseModel):
    at: datetime
    kind: str
    text: str


class IncidentView(BaseModel):
    id: int
    kind: str
    severity: str
    status: str
    summary: str
    opened_at: datetime
    resolved_at: datetime | None
    timeline: list[TimelineLine]


class RecallView(BaseModel):
    campaign_id: int
    name: str
    status: str
    safety: str
    instructions: str | None
    confirmed: bool


class SubjectView(BaseModel):
    device: DeviceView
    incident: IncidentView | None
    recall: RecallView | None
    snoozed_until: datetime | None
    actions: list[ActionOffer]


class CustomerView(BaseModel):
    name: str
    first_name: str
    timezone: str


class LinkPage(BaseModel):
    customer: CustomerView
    expires_at: datetime
    subjects: list[SubjectView]
    # After an action: what was done, in words.
    done: str | None = None


def subject_views(items: list[dict]) -> list[SubjectView]:
    return [SubjectView(**{k: v for k, v in item.items() if k != "state"}) for item in items]


def _link(conn, token: str, now: datetime) -> Link:
    link = find_link(conn, token, now)
    if link is None:
        raise HTTPException(404, NOT_VALID)
    return link


def _page(conn, link: Link, now: datetime, done: str | None = None) -> LinkPage:
    name = link.customer_name
    return LinkPage(
        customer=CustomerView(
            name=name, first_name=(name.split() or [name])[0], timezone=link.timezone
        ),
        expires_at=link.expires_at,
        subjects=subject_views(page.load(conn, link.customer_id, link.subjects, now)),
        done=done,
    )


@router.post("/open", response_model=LinkPage)
def open_link(body: LinkOpen, conn: DbConn) -> LinkPage:
    """What a message's link shows: whose it is, each device it is about with its incident
    (the timeline in the words staff read), its recall, and the answers available now.
    404 for a malformed, unknown or expired token alike."""
    now = datetime.now(UTC)
    return _page(conn, _link(conn, body.token, now), now)


@router.post("/act", response_model=LinkPage)
def act_on_link(body: LinkAct, conn: DbConn) -> LinkPage:
    """Answer about one of the link's devices: `ack` ("I know": no more reminders),
    `snooze_24h`, `snooze_7d`, `stop_watching` (until it reports again) or `confirm_recall`.
    404 as for /open, or for a device the link is not about; 409 saying why when the action
    is not available now. Returns the page as it now stands, with what was done."""
    now = datetime.now(UTC)
    link = _link(conn, body.token, now)
    subject = link.subject(body.device_id)
    items = page.load(conn, link.customer_id, [subject], now) if subject else []
    if not items:
        raise HTTPException(404, f"this link is not about a device {body.device_id!r} of yours")
    by = who(link.customer_name, FROM_LINK)
    try:
        done = perform(
            conn, body.action, items[0]["state"], customer_id=link.customer_id, by=by, now=now
        )
    except NotAvailable as refused:
        raise HTTPException(409, str(refused)) from None
    log.info("device %s: %s by %s", body.device_id, body.action, by)
    return _page(conn, link, now, done)


class SigninAsked(BaseModel):
    detail: str


@router.post("/signin", response_model=SigninAsked, status_code=202)
def signin_from_link(body: LinkOpen, conn: DbConn, settings: AppSettings) -> SigninAsked:
    """Sign in to see everything: a sign-in link goes to the channel this message came on
    (if it is verified and reaches a person), within the customer's hourly limit. 404 as for
    /open; otherwise the same 202 whatever happened."""
    now = datetime.now(UTC)
    link = _link(conn, body.token, now)
    outcome = request_signin_from_link(conn, link.token_hash, link.customer_id, settings, now)
    log.info("customer %s: sign-in asked from a message link: %s", link.customer_id, outcome)
    return SigninAsked(
        detail="A sign-in link is on its way to where this message came, if we can send it there."
    )
