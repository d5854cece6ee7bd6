"""The outbox: the `notifications` table, a row per (message, channel), and every change to
its waiting rows. The router writes rows (alerts/router.py), dispatchers claim and record
them (alerts/dispatcher.py); the incident lifecycle cancels, holds and releases them through
the functions here, inside its own transaction.

    pending ──claim──► sending ──► sent | failed | pending (retry, rate limit)
       │  ▲
  hold │  │ release
       ▼  │
      held ──────────► cancelled (moot: the incident is over)
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from datetime import datetime

import psycopg

from alerts.context import DeviceInfo
from alerts.routing import Channel, CustomerPrefs
from alerts.templates import HELD_IN_OUTAGE, PERSONAL_TEMPLATES, PROBLEM_TEMPLATES

_DEVICES = """
SELECT d.id, d.name, d.serial, d.vin, m.device_type, m.name, m.critical, d.customer_id,
       c.name, coalesce(c.timezone, d.timezone), c.quiet_hours_start, c.quiet_hours_end
FROM devices d
JOIN device_models m ON m.id = d.model_id
LEFT JOIN customers c ON c.id = d.customer_id
WHERE d.id = ANY(%b)
"""

# A channel counts only once verified: one a customer added waits for its code to come back.
_CHANNELS = """
SELECT id, customer_id, kind, min_severity, enabled FROM contact_channels
WHERE customer_id = ANY(%b) AND enabled AND verified_at IS NOT NULL ORDER BY id
"""

_COPY = """
COPY notifications (incident_id, device_id, customer_id, channel_id, template, severity,
                    context, created_at, due_at, status, campaign_id) FROM STDIN
"""

# Active silences and maintenance windows matching these devices: their alerts wait.
_ANY_SILENCE = (
    "SELECT EXISTS (SELECT 1 FROM silences WHERE ends_at > %(now)s AND starts_at <= %(now)s)"
)
# Staff silences apart from the owner's snoozes (owner_id): an urgent alert ignores the
# latter. A snooze is its owner's only while the device is theirs.
_SILENCED = """
SELECT d.id,
       max(s.ends_at) FILTER (WHERE s.owner_id IS NULL),
       min(s.id) FILTER (WHERE s.owner_id IS NULL),
       max(s.ends_at) FILTER (WHERE s.owner_id IS NOT NULL),
       min(s.id) FILTER (WHERE s.owner_id IS NOT NULL)
FROM devices d
JOIN silences s
  ON s.starts_at <= %(now)s AND s.ends_at > %(now)s
 AND ((s.scope = 'device' AND s.target = d.id)
   OR (s.scope = 'model' AND s.target = d.model_id)
   OR (s.scope = 'label' AND s.target = ANY (d.labels)))
 AND (s.owner_id IS NULL OR s.owner_id = d.customer_id)
WHERE d.id = ANY(%(ids)s)
GROUP BY d.id
"""

_STAFF = """
INSERT INTO notifications (incident_id, campaign_id, staff_channel_id, template, severity,
                           context, created_at, due_at)
SELECT %(incident)s, %(campaign)s, id, %(template)s, %(severity)s, %(context)s, %(now)s, %(now)s
FROM staff_channels
WHERE enabled
  AND array_position(ARRAY['info', 'warning', 'critical'], %(severity)s)
      >= array_position(ARRAY['info', 'warning', 'critical'], min_severity)
"""

# A message the customer asked for, to the one channel it is for, due now: not routed (no
# quiet hours, no severity), since it answers what they just did.
_PERSONAL = """
INSERT INTO notifications (customer_id, channel_id, template, severity, context, created_at,
                           due_at)
VALUES (%s, %s, %s, 'info', %s, %s, %s) RETURNING id
"""

# An owner's message about a problem that is over is never sent (staff keep their record).
_CANCEL_MOOT = """
UPDATE notifications SET status = 'cancelled'
WHERE incident_id = ANY(%(ids)b::bigint[]) AND status IN ('pending', 'held')
  AND customer_id IS NOT NULL AND template = ANY(%(problems)s)
RETURNING incident_id
"""

# A critical alert (an alarm panel offline) is never held: its owner must hear first.
_HOLD = """
UPDATE notifications SET status = 'held'
WHERE incident_id = ANY(%(ids)b::bigint[]) AND status = 'pending' AND template = ANY(%(held)s)
  AND severity <> 'critical'
"""

_RELEASE = """
UPDATE notifications SET status = 'pending', due_at = greatest(due_at, %(now)s)
WHERE incident_id = ANY(%(ids)b::bigint[]) AND status = 'held'
"""

# What a resolved group held for its members still open goes out now, as if never held.
_RELEASE_MEMBERS = """
UPDATE notifications n SET status = 'pending', due_at = greatest(n.due_at, %(now)s)
FROM incidents i
WHERE i.fleet_incident_id = ANY(%(groups)s) AND i.status <> 'resolved'
  AND n.incident_id = i.id AND n.status = 'held'
RETURNING i.fleet_incident_id
"""

# The group lasts: each held alert becomes "we know about it"; one channel's several go out
# as one digest, because they share a due time.
_TELL = """
UPDATE notifications n
SET status = 'pending', template = 'device_offline_known_outage', due_at = %(now)s,
    context = n.context || jsonb_build_object('outage', %(outage)s::text)
FROM incidents i
WHERE i.fleet_incident_id = %(id)s AND i.status <> 'resolved'
  AND n.incident_id = i.id AND n.status = 'held'
"""

# Notices a silence held wait exactly until its end (see enqueue, due_at).
_RELEASE_SILENCE = """
UPDATE notifications n SET due_at = %(now)s
WHERE n.status = 'pending' AND n.due_at = %(old_end)s AND n.device_id IN (
    SELECT d.id FROM devices d
    WHERE (%(scope)s = 'device' AND d.id = %(target)s)
       OR (%(scope)s = 'model' AND d.model_id = %(target)s)
       OR (%(scope)s = 'label' AND %(target)s = ANY (d.labels)))
"""


@dataclass(frozen=True, slots=True)
class Recipients:
    """Devices with their owners' preferences and channels, loaded once per batch."""

    devices: dict[str, DeviceInfo]
    prefs: dict[str, CustomerPrefs]
    channels: dict[str, list[Channel]]


def load_recipients(conn: psycopg.Connection, device_ids: list[str]) -> Recipients:
    """Registry rows, customer preferences and channels for these devices."""
    devices, prefs = {}, {}
    for row in conn.execute(_DEVICES, (device_ids,)):
        info = DeviceInfo(*row[:10])
        devices[info.device_id] = info
        if info.customer_id:
            prefs[info.customer_id] = CustomerPrefs(row[9], row[10], row[11])
    channels: dict[str, list[Channel]] = {}
    for cid, customer, kind, min_severity, enabled in conn.execute(_CHANNELS, (list(prefs),)):
        channels.setdefault(customer, []).append(Channel(cid, kind, min_severity, enabled))
    return Recipients(devices, prefs, channels)


@dataclass(frozen=True, slots=True)
class Silenced:
    """What holds a device's alerts now: (until, a silence's id) of staff's silences, and of
    its owner's snooze; None where there is none."""

    staff: tuple[datetime, int] | None = None
    owner: tuple[datetime, int] | None = None


def silenced_until(
    conn: psycopg.Connection, device_ids: list[str], now: datetime
) -> dict[str, Silenced]:
    """For each silenced device: when its matching silences end, and one silence's id."""
    if not device_ids or not conn.execute(_ANY_SILENCE, {"now": now}).fetchone()[0]:
        return {}
    rows = conn.execute(_SILENCED, {"now": now, "ids": device_ids})
    return {
        device: Silenced(
            (ends, sid) if ends is not None else None,
            (owner_ends, owner_sid) if owner_ends is not None else None,
        )
        for device, ends, sid, owner_ends, owner_sid in rows
    }


@dataclass(frozen=True, slots=True)
class CustomerRow:
    """One outbox row for an owner's channel."""

    incident_id: int | None
    device_id: str
    customer_id: str
    channel_id: int
    template: str
    severity: str
    context: dict
    created_at: datetime
    due_at: datetime
    held: bool = False
    campaign_id: int | None = None


def write_customer_rows(conn: psycopg.Connection, rows: list[CustomerRow]) -> int:
    """Write owners' outbox rows (COPY: a fleet-wide burst is thousands)."""
    if rows:
        with conn.cursor().copy(_COPY) as copy:
            for r in rows:
                copy.write_row(
                    (
                        r.incident_id,
                        r.device_id,
                        r.customer_id,
                        r.channel_id,
                        r.template,
                        r.severity,
                        json.dumps(r.context),
                        r.created_at,
                        r.due_at,
                        "held" if r.held else "pending",
                        r.campaign_id,
                    )
                )
    return len(rows)


def write_staff_rows(
    conn: psycopg.Connection,
    *,
    incident_id: int | None,
    campaign_id: int | None,
    template: str,
    severity: str,
    context: dict,
    now: datetime,
) -> int:
    """Queue a message to every enabled staff channel that takes this severity."""
    return conn.execute(
        _STAFF,
        {
            "incident": incident_id,
            "campaign": campaign_id,
            "template": template,
            "severity": severity,
            "context": json.dumps(context),
            "now": now,
        },
    ).rowcount


def cancel_moot(conn: psycopg.Connection, incident_ids: list[int]) -> Counter:
    """Cancel owners' waiting messages about these (resolved) incidents' problems; the
    count per incident."""
    rows = conn.execute(_CANCEL_MOOT, {"ids": incident_ids, "problems": list(PROBLEM_TEMPLATES)})
    return Counter(r[0] for r in rows)


def hold(conn: psycopg.Connection, incident_ids: list[int]) -> int:
    """Hold the waiting alerts of these incidents (members of a group incident)."""
    return conn.execute(_HOLD, {"ids": incident_ids, "held": list(HELD_IN_OUTAGE)}).rowcount


def release(conn: psycopg.Connection, incident_ids: list[int], now: datetime) -> int:
    """Let these incidents' held alerts go (due now, or later if they were due later)."""
    return conn.execute(_RELEASE, {"ids": incident_ids, "now": now}).rowcount


def release_members(conn: psycopg.Connection, group_ids: list[int], now: datetime) -> Counter:
    """Release what these (resolved) group incidents held for members still open."""
    rows = conn.execute(_RELEASE_MEMBERS, {"groups": group_ids, "now": now})
    return Counter(r[0] for r in rows)


def tell_held(conn: psycopg.Connection, group_id: int, outage: str, now: datetime) -> int:
    """Turn a group incident's held alerts into "we know about the outage", due now."""
    return conn.execute(_TELL, {"now": now, "id": group_id, "outage": outage}).rowcount


def release_silence(
    conn: psycopg.Connection, *, old_end: datetime, scope: str, target: str, now: datetime
) -> int:
    """A silence ended early: the notices it held (due at its old end) are due now."""
    return conn.execute(
        _RELEASE_SILENCE, {"now": now, "old_end": old_end, "scope": scope, "target": target}
    ).rowcount


def write_personal_row(
    conn: psycopg.Connection,
    *,
    customer_id: str,
    channel_id: int,
    template: str,
    context: dict,
    now: datetime,
) -> int:
    """Queue a message the customer asked for (alerts/templates.py PERSONAL_TEMPLATES: a
    sign-in link, a channel's code) to exactly `channel_id`, due now; its id."""
    if template not in PERSONAL_TEMPLATES:
        raise ValueError(f"{template} is not a personal message")
    return conn.execute(
        _PERSONAL, (customer_id, channel_id, template, json.dumps(context), now, now)
    ).fetchone()[0]
