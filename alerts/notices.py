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


# COPY: a fleet-wide burst records ten thousand in the monitor's tick, at half the cost of
# an INSERT from arrays.
_COPY = """
COPY notices (created_at, audience, template, severity, device_id, incident_id, campaign_id,
              channels, context) FROM STDIN
"""


def record_notices(conn: psycopg.Connection, notices: list[Notice], now: datetime) -> int:
    """Record notices for the router, inside the caller's transaction; return how many."""
    if notices:
        with conn.cursor().copy(_COPY) as copy:
            for n in notices:
                copy.write_row(
                    (
                        now,
                        n.audience,
                        n.template,
                        n.severity,
                        n.device_id,
                        n.incident_id,
                        n.campaign_id,
                        n.channels,
                        json.dumps(n.context, default=str),
                    )
                )
    return len(notices)


# The owner's notice of each of these device incidents, its facts the incident's own
# details, read back by key (OFFSET 0: never a join over every incident). A fleet-wide
# burst records ten thousand in the monitor's tick: building, encoding and copying each one
# in Python was about a sixth of the tick's own CPU (py-spy, bench/monitor.py).
_FOR_INCIDENTS = """
INSERT INTO notices (created_at, audience, template, severity, device_id, incident_id, context)
SELECT %(now)s, 'owner', t.template, i.severity, i.device_id, i.id, i.details
FROM unnest(%(ids)b::bigint[], %(templates)b::text[]) AS t(id, template)
CROSS JOIN LATERAL (
    SELECT id, severity, device_id, details FROM incidents
    WHERE id = t.id AND device_id IS NOT NULL OFFSET 0
) AS i
"""


def record_incident_notices(
    conn: psycopg.Connection, owed: list[tuple[int, str]], now: datetime
) -> int:
    """Record, inside the caller's transaction, the owner's notice of each (device incident
    id, template): about the incident's device, at its severity, with its details as the
    template's facts (what `to_owner(template, severity, device, incident_id=..., context=
    details)` records). Return how many."""
    unknown = {template for _, template in owed} - TEMPLATES.keys()
    if unknown:
        raise ValueError(f"no template {sorted(unknown)[0]!r}")
    if not owed:
        return 0
    params = {
        "now": now,
        "ids": [incident_id for incident_id, _ in owed],
        "templates": [template for _, template in owed],
    }
    return conn.execute(_FOR_INCIDENTS, params).rowcount
