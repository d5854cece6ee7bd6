"""Who is reading an answer, and what of it they may read.

    admin, staff   everything
    customer       their own devices' incidents, through the allow-list of
                   incidents/visibility.py: no staff note, key label, staff channel, staff
                   delivery, another customer's channel, or silence's reason and creator
    firmware       every device's incidents, read as an owner would, with no channel of its
                   own: no customer's channel and no staff note either

Routes build a `Viewer` once per request (`viewer_for`), then pass each thing through it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from api.auth import ApiKey
from api.models import IncidentPublic, NotificationPublic, SilencePublic
from incidents.visibility import customer_view, describe

STAFF_ROLES = ("admin", "staff")

_OWN_CHANNELS = "SELECT id FROM contact_channels WHERE customer_id = %s"


@dataclass(frozen=True, slots=True)
class Viewer:
    staff: bool
    # The customer's channels: the messages whose lines they may read.
    own_channels: frozenset[int] = frozenset()

    def line(self, kind: str, detail: Any) -> tuple[dict, str] | None:
        """A timeline line as this reader reads it, (detail, sentence), or None: not theirs."""
        detail = detail if isinstance(detail, dict) else {}
        if self.staff:
            return detail, describe(kind, detail)
        view = customer_view(kind, detail, self.own_channels)
        return None if view is None else (view, describe(kind, view))

    def notification(self, item: NotificationPublic) -> NotificationPublic:
        """An outbox row; a firmware key reads no channel and no delivery error."""
        if self.staff or (self.own_channels and item.channel_id in self.own_channels):
            return item
        return item.model_copy(update={"channel_id": None, "channel": None, "last_error": None})

    def silence(self, item: SilencePublic) -> SilencePublic:
        """A silence; its target, reason and creator are staff's own."""
        if self.staff:
            return item
        hidden = ("id", "scope", "target", "reason", "created_by")
        return item.model_copy(update=dict.fromkeys(hidden))


def viewer_for(conn: psycopg.Connection, key: ApiKey) -> Viewer:
    """The reader behind a key."""
    if key.role in STAFF_ROLES:
        return Viewer(staff=True)
    if key.customer_scope is not None:
        channels = frozenset(r[0] for r in conn.execute(_OWN_CHANNELS, (key.customer_scope,)))
        return Viewer(staff=False, own_channels=channels)
    return Viewer(staff=False)


def incident_for(key: ApiKey, incident: IncidentPublic) -> IncidentPublic:
    """An incident as listed; an owner does not read which key acknowledged it."""
    if key.customer_scope is None or incident.acknowledged_by is None:
        return incident
    return incident.model_copy(update={"acknowledged_by": None})


def incident_details_for(key: ApiKey, details: dict) -> dict:
    """An incident's stored facts; an owner reads those its `opened` line shows."""
    if key.customer_scope is None:
        return details
    return customer_view("opened", details) or {}
