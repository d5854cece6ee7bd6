"""Input and output shapes of the API: inputs refuse unknown fields and bad values (422)."""

from __future__ import annotations

from datetime import datetime, time
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from contract.ids import DEVICE_ID_PATTERN

Severity = Literal["info", "warning", "critical"]
ChannelKind = Literal["email", "sms", "push", "webhook"]
# Free text stored in PostgreSQL: no NUL characters, which text columns cannot hold.
_NO_NUL = r"^[^\x00]*$"
Text = Annotated[str, Field(min_length=1, max_length=500, pattern=_NO_NUL)]
Name = Annotated[str, Field(min_length=1, max_length=200, pattern=_NO_NUL)]
Ident = Annotated[str, Field(pattern=DEVICE_ID_PATTERN)]
CustomerId = Annotated[str, Field(pattern=r"^[A-Za-z0-9._@-]{1,64}$")]


def _known_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown timezone {value!r}") from None
    return value


Timezone = Annotated[
    str, Field(max_length=64, pattern=r"^[A-Za-z0-9_+/-]+$"), AfterValidator(_known_timezone)
]
AppriseUrl = Annotated[
    str, Field(min_length=4, max_length=2000, pattern=r"^[a-z0-9+]+://[^\x00]+$")
]


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


# -- fleet --------------------------------------------------------------------------------


class DevicePublic(BaseModel):
    id: str
    name: str | None
    model_id: str
    kind: str
    device_type: str
    serial: str | None
    vin: str | None
    firmware: str | None
    customer_id: str | None
    region: str | None
    labels: list[str]
    timezone: str
    status: str
    status_changed_at: datetime | None
    last_seen_at: datetime | None
    last_metrics: dict[str, float] | None
    retired_at: datetime | None = None
    # Its place and the device it connects through (a hub), when the registry has them.
    site_id: str | None = None
    parent_id: str | None = None


class DevicePage(BaseModel):
    items: list[DevicePublic]
    # Pass as `cursor` for the next page; null on the last page.
    next_cursor: str | None


class ConnectivityEvent(BaseModel):
    received_at: datetime
    status: str
    retained: bool


class IncidentPublic(BaseModel):
    id: int
    scope: str
    device_id: str | None
    kind: str
    severity: str
    status: str
    opened_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_at: datetime | None
    summary: str
    group_key: str | None


class SilencePublic(BaseModel):
    # Null for a customer or firmware key: which silence, on what, why and by whom are
    # staff's own; they read when alerts are held.
    id: int | None
    scope: str | None
    target: str | None
    starts_at: datetime
    ends_at: datetime
    reason: str | None
    maintenance: bool
    created_by: str | None


class DeviceDetail(DevicePublic):
    model_name: str
    heartbeat_interval_s: int
    last_seq: int | None
    last_uptime_s: int | None
    overdue_at: datetime | None
    connectivity: str | None
    clock_skewed_at: datetime | None
    open_incidents: list[IncidentPublic]
    connectivity_events: list[ConnectivityEvent]
    silences: list[SilencePublic]


class History(BaseModel):
    device_id: str
    resolution: Literal["raw", "5m", "1h", "1d"]
    start: datetime = Field(serialization_alias="from")
    end: datetime = Field(serialization_alias="to")
    points: list[dict[str, Any]]


class FleetSummary(BaseModel):
    as_of: datetime
    total: int
    by_status: dict[str, int]
    by_model: dict[str, dict[str, int]]
    by_firmware: dict[str, dict[str, int]]
    by_kind: dict[str, dict[str, int]]
    by_region: dict[str, dict[str, int]]
    open_incidents: dict[str, int]


class OnlineShare(BaseModel):
    at: datetime
    total: int
    online: int
    share: float


# -- incidents ----------------------------------------------------------------------------


class TimelineEvent(BaseModel):
    at: datetime
    kind: str
    # A customer or firmware key reads the fields incidents/visibility.py allows, and only
    # the kinds it allows.
    detail: dict[str, Any]
    # The line in words: staff read the customer's sentence, then what only staff see.
    text: str


class NotificationPublic(BaseModel):
    id: int
    incident_id: int | None
    device_id: str | None
    channel_id: int | None
    channel: str | None
    template: str
    severity: str
    status: str
    created_at: datetime
    due_at: datetime
    sent_at: datetime | None
    attempts: int
    last_error: str | None


class IncidentDetail(IncidentPublic):
    details: dict[str, Any]
    timeline: list[TimelineEvent]
    notifications: list[NotificationPublic]


class IncidentPage(BaseModel):
    items: list[IncidentPublic]
    next_cursor: str | None


class Comment(Input):
    text: Text
    # A note for the device's owner too; otherwise staff's own.
    for_customer: bool = False


class Resolve(Input):
    note: Text | None = None


def plain_text(value: str) -> str:
    """Staff's words to customers as plain lines: line breaks kept (at most one blank line),
    other spaces as spaces, every other control and format character dropped (terminal
    escapes, bidi overrides that make a text read otherwise than it is, zero-width ones).
    Never markup: whoever shows it escapes it."""
    lines = value.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    kept = [
        "".join(c if c.isprintable() else " " if c.isspace() else "" for c in line).rstrip()
        for line in lines
    ]
    text = "\n".join(kept).strip()
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    if not text:
        raise ValueError("the update has no visible text")
    return text


class UpdateCreate(Input):
    """Staff's update to the customers an incident or a fleet outage concerns."""

    text: Annotated[str, Field(min_length=1, max_length=1000), AfterValidator(plain_text)]
    # The next update promised by then (with a UTC offset); staff are nudged if it passes.
    next_update_at: datetime | None = None


class SilenceCreate(Input):
    scope: Literal["device", "model", "label"]
    target: Annotated[str, Field(min_length=1, max_length=64, pattern=_NO_NUL)]
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    # Instead of ends_at: how long from starts_at (at most 90 days).
    duration_s: Annotated[int, Field(gt=0, le=90 * 86400)] | None = None
    reason: Text
    maintenance: bool = False

    @model_validator(mode="after")
    def _bounded(self) -> SilenceCreate:
        if (self.ends_at is None) == (self.duration_s is None):
            raise ValueError("give exactly one of ends_at and duration_s")
        for value in (self.starts_at, self.ends_at):
            if value is not None and value.tzinfo is None:
                raise ValueError("times need a UTC offset, e.g. 2026-12-01T02:00:00Z")
        return self


# -- registry -----------------------------------------------------------------------------


class DeviceUpdate(Input):
    name: Name | None = None
    firmware: Annotated[str, Field(max_length=64, pattern=_NO_NUL)] | None = None
    customer_id: CustomerId | None = None
    timezone: Timezone | None = None
    region: Annotated[str, Field(max_length=64, pattern=_NO_NUL)] | None = None
    labels: list[Annotated[str, Field(min_length=1, max_length=64, pattern=_NO_NUL)]] | None = (
        Field(default=None, max_length=32)
    )
    offline_after_s: Annotated[int, Field(gt=0, le=365 * 86400)] | None = None
    # null: no site, no parent. A site must exist; a parent must be another device.
    site_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")] | None = None
    parent_id: Annotated[str, Field(pattern=DEVICE_ID_PATTERN)] | None = None


class ModelPublic(BaseModel):
    id: str
    name: str
    device_type: str
    kind: str
    heartbeat_interval_s: int
    allowed_misses: int
    grace_s: int
    critical: bool
    health_rules: list[dict[str, Any]]


class ModelCreate(Input):
    id: Ident
    name: Name
    device_type: Annotated[str, Field(min_length=1, max_length=64, pattern=_NO_NUL)]
    kind: Literal["home", "vehicle"]
    heartbeat_interval_s: Annotated[int, Field(gt=0, le=86400)]
    allowed_misses: Annotated[int, Field(ge=1, le=100)] = 3
    grace_s: Annotated[int, Field(ge=0, le=86400)] = 60
    critical: bool = False
    health_rules: list[dict[str, Any]] = Field(default_factory=list, max_length=50)


class ModelUpdate(Input):
    name: Name | None = None
    heartbeat_interval_s: Annotated[int, Field(gt=0, le=86400)] | None = None
    allowed_misses: Annotated[int, Field(ge=1, le=100)] | None = None
    grace_s: Annotated[int, Field(ge=0, le=86400)] | None = None
    critical: bool | None = None
    health_rules: list[dict[str, Any]] | None = Field(default=None, max_length=50)


class CustomerPublic(BaseModel):
    id: str
    name: str
    timezone: str
    quiet_hours_start: time | None
    quiet_hours_end: time | None
    max_messages_per_hour: int | None


class CustomerCreate(Input):
    id: CustomerId
    name: Name
    timezone: Timezone = "UTC"
    quiet_hours_start: time | None = None
    quiet_hours_end: time | None = None
    max_messages_per_hour: Annotated[int, Field(gt=0, le=10_000)] | None = None


class Preferences(Input):
    """What a customer may change of their own record."""

    name: Name | None = None
    timezone: Timezone | None = None
    quiet_hours_start: time | None = None
    quiet_hours_end: time | None = None
    max_messages_per_hour: Annotated[int, Field(gt=0, le=10_000)] | None = None


class ChannelPublic(BaseModel):
    id: int
    customer_id: str | None
    kind: str
    # Credentials and tokens replaced by ***: a channel's URL is never shown whole.
    url: str
    label: str | None
    min_severity: str
    enabled: bool
    # A channel a customer added counts (alerts, sign-in links) once its code came back.
    verified: bool


class ChannelCreate(Input):
    kind: ChannelKind
    url: AppriseUrl
    label: Name | None = None
    min_severity: Severity = "info"
    enabled: bool = True


class ChannelUpdate(Input):
    url: AppriseUrl | None = None
    label: Name | None = None
    min_severity: Severity | None = None
    enabled: bool | None = None


class ChannelCode(Input):
    code: str = Field(min_length=1, max_length=12, pattern=r"^[0-9 ]+$")


class CodeSent(BaseModel):
    channel_id: int
    expires_in_minutes: int


class SigninRequest(Input):
    # An e-mail address, a phone number or a push topic, as one of the customer's verified
    # channels delivers to.
    address: str = Field(min_length=3, max_length=254, pattern=r"^[^\x00]*$")


class SigninLinkRequest(Input):
    channel_id: int | None = Field(default=None, ge=1, le=2**63 - 1)


class ChannelBrief(BaseModel):
    """Which channel a link went to: never its URL, never the link."""

    id: int
    kind: str
    label: str | None


class SigninLinkSent(BaseModel):
    channel: ChannelBrief
    expires_in_minutes: int


class TestResult(BaseModel):
    ok: bool
    duration_ms: int
    error: str | None


class KeyCreate(Input):
    role: Literal["admin", "staff", "firmware", "customer"]
    customer_id: CustomerId | None = None
    label: Name | None = None


class KeyPublic(BaseModel):
    id: int
    prefix: str
    role: str
    customer_id: str | None
    label: str | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class KeyCreated(KeyPublic):
    # Shown once: only its hash is kept.
    key: str
