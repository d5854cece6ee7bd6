"""What an owner's page shows about their devices: read once per request, as plain data.

    load_states   for each subject, what decides its actions (portal/actions.py DeviceState),
                  for the owner's own devices only
    subject_view  the device in words, its incident with the owner's timeline (the same
                  sentences staff read: incidents/visibility.py), its recall, the actions

A device no longer the customer's (sold since the message) is left out, whatever the link
says: a link opens what its customer owns now.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

import psycopg

from alerts.templates import DEFAULT_WHAT_TO_DO, DEVICE_KIND_NAMES, WHAT_TO_DO
from campaigns.notices import SAFE, UNSAFE
from incidents.visibility import customer_view, describe
from portal.actions import DeviceState, available
from portal.cards import DeviceRow, OpenIncident, device_card
from portal.links import Subject

_DEVICES = """
SELECT d.id, d.name, m.device_type, m.name, s.status, s.status_changed_at, s.firmware
FROM devices d
JOIN device_models m ON m.id = d.model_id
LEFT JOIN device_state s ON s.device_id = d.id
WHERE d.id = ANY(%(ids)s) AND d.customer_id = %(customer)s
"""
_INCIDENTS = """
SELECT id, device_id, kind, severity, status, summary, opened_at, resolved_at,
       owner_acknowledged_at IS NOT NULL
FROM incidents WHERE id = ANY(%(ids)s) AND device_id = ANY(%(devices)s)
"""
_RECALLS = """
SELECT c.id, cd.device_id, c.name, c.status, c.safe_to_use, c.instructions,
       -- A safety recall's device state is its remedy's (the update); whether its owner
       -- confirmed reading it is its acknowledgement.
       CASE WHEN c.kind = 'safety_recall' THEN
            CASE WHEN cd.acknowledged_at IS NOT NULL THEN 'acknowledged'
                 WHEN cd.notified_at IS NOT NULL THEN 'notified' ELSE cd.state END
            ELSE cd.state END,
       cd.acknowledged_at
FROM campaign_devices cd JOIN campaigns c ON c.id = cd.campaign_id
WHERE c.kind IN ('recall_notice', 'safety_recall') AND (cd.campaign_id, cd.device_id) IN
      (SELECT * FROM unnest(%(campaigns)s::bigint[], %(devices)s::text[]))
"""
_TIMELINE = """
SELECT incident_id, at, kind, detail FROM incident_events
WHERE incident_id = ANY(%(ids)s) ORDER BY at, id
"""
_OWN_CHANNELS = "SELECT id FROM contact_channels WHERE customer_id = %s"
_SNOOZES = """
SELECT target, max(ends_at) FROM silences
WHERE scope = 'device' AND target = ANY(%(devices)s) AND owner_id = %(customer)s
  AND starts_at <= %(now)s AND ends_at > %(now)s
GROUP BY target
"""
# A recall takes confirmations until it is over (completed or cancelled).
_RECALL_OPEN = ("scheduled", "running", "paused", "halted")


def load(
    conn: psycopg.Connection, customer_id: str, subjects: Collection[Subject], now: datetime
) -> list[dict[str, Any]]:
    """The page's subjects, each a dict: device, incident, recall, snoozed_until, actions."""
    devices = {
        r[0]: r
        for r in conn.execute(
            _DEVICES, {"ids": [s.device_id for s in subjects], "customer": customer_id}
        )
    }
    subjects = [s for s in subjects if s.device_id in devices]
    incident_ids = [s.incident_id for s in subjects if s.incident_id is not None]
    found = {
        r[0]: r for r in conn.execute(_INCIDENTS, {"ids": incident_ids, "devices": list(devices)})
    }
    recall_keys = [(s.campaign_id, s.device_id) for s in subjects if s.campaign_id is not None]
    recalls = {
        (r[0], r[1]): r
        for r in conn.execute(
            _RECALLS,
            {"campaigns": [k[0] for k in recall_keys], "devices": [k[1] for k in recall_keys]},
        )
    }
    timelines = _timelines(conn, customer_id, list(found))
    timezone = conn.execute(
        "SELECT timezone FROM customers WHERE id = %s", (customer_id,)
    ).fetchone()[0]
    snoozed = dict(
        conn.execute(_SNOOZES, {"devices": list(devices), "customer": customer_id, "now": now})
    )
    views = []
    for s in subjects:
        incident = found.get(s.incident_id)
        recall = recalls.get((s.campaign_id, s.device_id))
        state = DeviceState(
            s.device_id,
            devices[s.device_id][4],
            incident[0] if incident else None,
            incident[4] if incident else None,
            bool(incident and incident[8]),
            recall[0] if recall else None,
            recall[6] if recall else None,
            bool(recall and recall[3] in _RECALL_OPEN),
        )
        views.append(
            {
                "device": _device(devices[s.device_id], incident, timezone, now),
                "incident": _incident(incident, timelines) if incident else None,
                "recall": _recall(recall) if recall else None,
                "snoozed_until": snoozed.get(s.device_id),
                "actions": [{"action": a, "label": label} for a, label in available(state)],
                "state": state,
            }
        )
    return views


def _timelines(conn, customer_id: str, incident_ids: list[int]) -> dict[int, list[dict]]:
    """Each incident's lines as its owner reads them: the allowed kinds and fields, in the
    sentences staff read too."""
    if not incident_ids:
        return {}
    own = frozenset(r[0] for r in conn.execute(_OWN_CHANNELS, (customer_id,)))
    lines: dict[int, list[dict]] = {i: [] for i in incident_ids}
    for incident_id, at, kind, detail in conn.execute(_TIMELINE, {"ids": incident_ids}):
        view = customer_view(kind, detail if isinstance(detail, dict) else {}, own)
        if view is not None:
            lines[incident_id].append({"at": at, "kind": kind, "text": describe(kind, view)})
    return lines


def _device(row: tuple, incident: tuple | None, timezone: str, now: datetime) -> dict[str, Any]:
    """The device in the words of its card on the customer's page (portal/cards.py): the
    same status sentence and advice wherever the owner reads about it."""
    device_id, name, device_type, model, status, since, firmware = row
    open_incidents = ()
    if incident is not None and incident[4] != "resolved":
        open_incidents = (OpenIncident(incident[0], incident[2], incident[3], incident[6]),)
    card = device_card(
        DeviceRow(
            device_id, name, device_type, model, status or "provisioned", since, None,
            firmware, None, open_incidents=open_incidents, watching=status != "paused",
        ),
        timezone,
        now,
    )  # fmt: skip
    return {
        "id": device_id,
        "name": name or device_id,
        "kind": DEVICE_KIND_NAMES.get(device_type, device_type),
        "model": model,
        "status": status,
        "status_text": card["status_text"],
        "since": since,
        "firmware": firmware,
        "what_to_do": card["what_to_do"] or WHAT_TO_DO.get(device_type, DEFAULT_WHAT_TO_DO),
    }


def _incident(row: tuple, timelines: dict[int, list[dict]]) -> dict[str, Any]:
    return {
        "id": row[0],
        "kind": row[2],
        "severity": row[3],
        "status": row[4],
        "summary": row[5],
        "opened_at": row[6],
        "resolved_at": row[7],
        "timeline": timelines.get(row[0], []),
    }


def _recall(row: tuple) -> dict[str, Any]:
    return {
        "campaign_id": row[0],
        "name": row[2],
        "status": row[3],
        "safety": SAFE if row[4] else UNSAFE,
        "instructions": row[5],
        "confirmed": row[6] == "acknowledged",
    }
