"""Recording notices: what happened and whom it concerns, the one way into the outbox.

Every producer (connectivity, health rules, escalation and reminders, fleet outages, blind
spots, campaign and recall notices) calls `record_notices` in the transaction of the change
that causes it, and goes on; the router (alerts/router.py) routes each notice once.

    producer's transaction                    router's transaction
    change + Notice rows  ─────────────────►  claim (SKIP LOCKED) -> fate, channels, quiet
                                              hours, silences -> outbox rows -> routed
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import psycopg

from alerts.templates import TEMPLATES

ROUTED = "routed"


@dataclass(frozen=True, slots=True)
class Notice:
    """One message owed: to a device's owner, or to staff."""

    template: str
    severity: str
    audience: Literal["owner", "staff"] = "owner"
    device_id: str | None = None
    incident_id: int | None = None
    campaign_id: int | None = None
    # The producer's facts for the template (ISO times; `*_at` ones are also shown in the
    # owner's local time as `*_local`). The router adds the device's own fields.
    context: dict = field(default_factory=dict)
    # 'routed': the owner's channels that take its severity; 'position:N': only the Nth.
    channels: str = ROUTED

    def __post_init__(self) -> None:
        if self.template not in TEMPLATES:
            raise ValueError(f"no template {self.template!r}")
        if self.audience == "owner" and self.device_id is None:
            raise ValueError("a notice to an owner names the device it is about")


def to_owner(template: str, severity: str, device_id: str, **fields) -> Notice:
    return Notice(template, severity, "owner", device_id, **fields)


def to_staff(template: str, severity: str, **fields) -> Notice:
    return Notice(template, severity, "staff", **fields)


# Binary arrays: a fleet-wide burst records thousands at once.
_RECORD = """
INSERT INTO notices (created_at, audience, template, severity, device_id, incident_id,
                     campaign_id, channels, context)
SELECT %(now)s, t.audience, t.template, t.severity, t.device_id, t.incident_id, t.campaign_id,
       t.channels, t.context::jsonb
FROM unnest(%(audiences)b::text[], %(templates)b::text[], %(severities)b::text[],
            %(devices)b::text[], %(incidents)b::bigint[], %(campaigns)b::bigint[],
            %(channels)b::text[], %(contexts)b::text[])
     AS t(audience, template, severity, device_id, incident_id, campaign_id, channels, context)
"""


def record_notices(conn: psycopg.Connection, notices: list[Notice], now: datetime) -> int:
    """Record notices for the router, inside the caller's transaction; return how many."""
    if notices:
        conn.execute(
            _RECORD,
            {
                "now": now,
                "audiences": [n.audience for n in notices],
                "templates": [n.template for n in notices],
                "severities": [n.severity for n in notices],
                "devices": [n.device_id for n in notices],
                "incidents": [n.incident_id for n in notices],
                "campaigns": [n.campaign_id for n in notices],
                "channels": [n.channels for n in notices],
                "contexts": [json.dumps(n.context, default=str) for n in notices],
            },
        )
    return len(notices)
