"""Writing notifications into the outbox, inside the caller's transaction.

The outbox is the `notifications` table: a row per (notification, channel), claimed and
sent later by a dispatcher, so a state change and the messages it causes commit together.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime

import psycopg

from alerts.context import DeviceInfo
from alerts.routing import Channel, CustomerPrefs, route


@dataclass(frozen=True, slots=True)
class CustomerNotice:
    """One message to a device's owner about one incident."""

    incident_id: int | None
    device: DeviceInfo
    template: str
    severity: str
    context: dict
    # Kept back by a fleet incident until it resolves or customers are told of it.
    held: bool = False
    # A campaign's notice (recall, update) rather than an incident's.
    campaign_id: int | None = None
    # Only this channel, whatever its minimum severity (a recall goes to one channel at a
    # time, the next one when it is not acknowledged).
    only_channel: int | None = None


_DEVICES = """
SELECT d.id, d.name, d.serial, d.vin, m.device_type, m.name, m.critical, d.customer_id,
       c.name, coalesce(c.timezone, d.timezone), c.quiet_hours_start, c.quiet_hours_end
FROM devices d
JOIN device_models m ON m.id = d.model_id
LEFT JOIN customers c ON c.id = d.customer_id
WHERE d.id = ANY(%b)
"""

_CHANNELS = """
SELECT id, customer_id, kind, min_severity, enabled FROM contact_channels
WHERE customer_id = ANY(%b) AND enabled ORDER BY id
"""

_COPY = """
COPY notifications (incident_id, device_id, customer_id, channel_id, template, severity,
                    context, created_at, due_at, status, campaign_id) FROM STDIN
"""


# Active silences and maintenance windows matching these devices: their alerts wait.
_ANY_SILENCE = (
    "SELECT EXISTS (SELECT 1 FROM silences WHERE ends_at > %(now)s AND starts_at <= %(now)s)"
)
_SILENCED = """
SELECT d.id, max(s.ends_at), min(s.id)
FROM devices d
JOIN silences s
  ON s.starts_at <= %(now)s AND s.ends_at > %(now)s
 AND ((s.scope = 'device' AND s.target = d.id)
   OR (s.scope = 'model' AND s.target = d.model_id)
   OR (s.scope = 'label' AND s.target = ANY (d.labels)))
WHERE d.id = ANY(%(ids)s)
GROUP BY d.id
"""

_SILENCED_EVENT = """
INSERT INTO incident_events (incident_id, at, kind, detail)
SELECT DISTINCT ON (incident_id) incident_id, %(now)s, 'silenced', detail::jsonb
FROM unnest(%(incidents)s::bigint[], %(details)s::text[]) AS t (incident_id, detail)
"""


def silenced_until(
    conn: psycopg.Connection, device_ids: list[str], now: datetime
) -> dict[str, tuple[datetime, int]]:
    """For each silenced device: when its last matching silence ends, and one silence's id."""
    if not device_ids or not conn.execute(_ANY_SILENCE, {"now": now}).fetchone()[0]:
        return {}
    rows = conn.execute(_SILENCED, {"now": now, "ids": device_ids})
    return {device: (ends, silence) for device, ends, silence in rows}


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


def enqueue_customer_notices(
    conn: psycopg.Connection, notices: list[CustomerNotice], recipients: Recipients, now: datetime
) -> int:
    """Route each notice to its owner's channels and write the outbox rows; return how many.

    A notice for a silenced device waits until its silence ends (noted on the timeline).
    """
    rows = []
    silenced = silenced_until(conn, sorted({n.device.device_id for n in notices}), now)
    held_by_silence: list[tuple[int, str]] = []
    for notice in notices:
        customer = notice.device.customer_id
        if customer is None:
            continue
        channels = recipients.channels.get(customer, [])
        if notice.only_channel is not None:
            channels = [
                replace(c, min_severity="info") for c in channels if c.id == notice.only_channel
            ]
        deliveries = route(
            severity=notice.severity,
            critical_device=notice.device.critical,
            prefs=recipients.prefs[customer],
            channels=channels,
            now=now,
        )
        context = json.dumps(notice.context)
        # Silences hold incident alerts; a campaign's notices (a recall) are not alerts.
        silence = silenced.get(notice.device.device_id) if notice.campaign_id is None else None
        if silence and deliveries and notice.incident_id is not None:
            held_by_silence.append(
                (
                    notice.incident_id,
                    json.dumps({"until": silence[0].isoformat(), "silence_id": silence[1]}),
                )
            )
        rows += [
            (
                notice.incident_id,
                notice.device.device_id,
                customer,
                d.channel_id,
                notice.template,
                notice.severity,
                context,
                now,
                max(d.due_at, silence[0]) if silence else d.due_at,
                "held" if notice.held else "pending",
                notice.campaign_id,
            )
            for d in deliveries
        ]
    if held_by_silence:
        conn.execute(
            _SILENCED_EVENT,
            {
                "now": now,
                "incidents": [i for i, _ in held_by_silence],
                "details": [d for _, d in held_by_silence],
            },
        )
    if rows:
        with conn.cursor().copy(_COPY) as copy:
            for row in rows:
                copy.write_row(row)
    return len(rows)


_STAFF = """
INSERT INTO notifications (incident_id, staff_channel_id, template, severity, context,
                           created_at, due_at)
SELECT %(incident)s, id, %(template)s, %(severity)s, %(context)s, %(now)s, %(now)s
FROM staff_channels
WHERE enabled
  AND array_position(ARRAY['info', 'warning', 'critical'], %(severity)s)
      >= array_position(ARRAY['info', 'warning', 'critical'], min_severity)
"""


def enqueue_staff_notice(
    conn: psycopg.Connection,
    incident_id: int,
    template: str,
    severity: str,
    context: dict,
    now: datetime,
) -> int:
    """Queue a notice to every enabled staff channel that takes this severity."""
    return conn.execute(
        _STAFF,
        {
            "incident": incident_id,
            "template": template,
            "severity": severity,
            "context": json.dumps(context),
            "now": now,
        },
    ).rowcount
