"""What the lifecycle takes and gives back: small frozen records."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True)
class DeviceProblem:
    """An incident to open on a device (one open incident per device and kind)."""

    device_id: str
    kind: str
    severity: str
    # `{device}` stands for the device as people know it: "Alarm panel v3 Hall (ap-1)".
    summary: str
    details: dict = field(default_factory=dict)
    # The severity instead when the device's model is critical (an offline alarm panel).
    critical_severity: str | None = None


@dataclass(frozen=True, slots=True)
class GroupProblem:
    """An incident about a group: a fleet outage, the service's blind spot, a campaign."""

    scope: str  # fleet | system
    kind: str
    group_key: str  # what it is about: 'region:north', 'ingest', 'campaign:12'
    severity: str
    summary: str
    details: dict = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Opened:
    id: int
    device_id: str | None
    kind: str
    severity: str
    group_key: str | None = None


@dataclass(frozen=True, slots=True)
class Resolved:
    id: int
    scope: str
    device_id: str | None
    kind: str
    severity: str
    opened_at: datetime
    details: dict
    # The owner's messages still waiting that became moot, and (a group incident) the held
    # alerts of members still down that now go out.
    cancelled: int = 0
    released: int = 0
