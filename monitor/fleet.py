"""Fleet incidents: a group outage is one incident for staff, not ten thousand customer SMS.

tick (same transaction as the offline incidents)
    count recent unresolved offline incidents per group -> open a fleet incident
    attach the group's offline incidents to it; their customer alerts are 'held'
review (periodic)
    enough devices back            -> resolve; release what is still held
    held longer than the hold time -> tell each affected owner once that we know
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import psycopg

from alerts.context import duration_text
from alerts.outbox import enqueue_staff_notice
from monitor.correlation import (
    FleetPolicy,
    describe_group,
    group_filter,
    group_keys,
    outage_groups,
    outage_over,
    smallest_first,
)

log = logging.getLogger(__name__)

# Devices the monitor watches, per group attribute; the denominators of the percentages.
_GROUP_SIZES = """
SELECT d.model_id, coalesce(s.firmware, d.firmware), d.region, count(*)
FROM device_state s JOIN devices d ON d.id = s.device_id
WHERE s.status IN ('online', 'degraded', 'offline')
GROUP BY 1, 2, 3
"""

# Unresolved offline incidents opened within the window and not yet explained by an
# outage, counted per combination of the group attributes: a few hundred rows at most,
# whatever the size of the outage. (A region's outage must not also open a second one for
# "all devices" that it alone pushed over the threshold.)
_RECENT = """
SELECT d.model_id, coalesce(s.firmware, d.firmware), d.region, count(*)
FROM incidents i
JOIN devices d ON d.id = i.device_id
JOIN device_state s ON s.device_id = i.device_id
WHERE i.scope = 'device' AND i.kind = 'offline' AND i.opened_at > %(since)s
  AND i.status <> 'resolved' AND i.fleet_incident_id IS NULL
GROUP BY 1, 2, 3
"""

_OPEN_FLEET = """
INSERT INTO incidents (scope, kind, severity, opened_at, summary, group_key, details)
SELECT 'fleet', 'fleet_outage', 'critical', %(now)s,
       t.down || ' devices offline within ' || %(window)s || ': ' || t.label,
       t.key, jsonb_build_object('down', t.down, 'size', t.size, 'group', t.label)
FROM unnest(%(keys)s::text[], %(labels)s::text[], %(down)s::int[], %(sizes)s::int[])
     AS t(key, label, down, size)
ON CONFLICT DO NOTHING
RETURNING id, group_key, summary, details
"""

_OPEN_OUTAGES = """
SELECT group_key, id FROM incidents
WHERE scope = 'fleet' AND kind = 'fleet_outage' AND status <> 'resolved'
"""

# The window's unattached offline incidents of devices in one group join its outage.
# Run for the most specific group first: a device joins one outage, its smallest.
_ATTACH = """
WITH joined AS (
    UPDATE incidents i SET fleet_incident_id = %(fleet)s
    FROM devices d, device_state s
    WHERE i.scope = 'device' AND i.kind = 'offline' AND i.opened_at > %(since)s
      AND i.status <> 'resolved' AND i.fleet_incident_id IS NULL
      AND d.id = i.device_id AND s.device_id = i.device_id
      AND (%(model)s::text IS NULL OR d.model_id = %(model)s)
      AND (%(firmware)s::text IS NULL OR coalesce(s.firmware, d.firmware) = %(firmware)s)
      AND (%(region)s::text IS NULL OR d.region = %(region)s)
    RETURNING i.id
)
UPDATE notifications SET status = 'held'
WHERE incident_id IN (SELECT id FROM joined) AND status = 'pending'
  AND template IN ('device_offline', 'device_never_seen')
"""

_EVENT = "INSERT INTO incident_events (incident_id, at, kind, detail) VALUES (%s, %s, %s, %s)"

_REVIEW = """
SELECT f.id, f.opened_at, f.summary, f.details,
       count(i.id), count(i.id) FILTER (WHERE i.status <> 'resolved')
FROM incidents f
LEFT JOIN incidents i ON i.fleet_incident_id = f.id
WHERE f.scope = 'fleet' AND f.kind = 'fleet_outage' AND f.status <> 'resolved'
GROUP BY f.id
"""

_RESOLVE = """
UPDATE incidents SET status = 'resolved', resolved_at = %(now)s
WHERE id = %(id)s AND status <> 'resolved'
"""

# Still offline when the outage ends: their own alerts go out now, as if never held.
_RELEASE = """
UPDATE notifications n SET status = 'pending', due_at = greatest(n.due_at, %(now)s)
FROM incidents i
WHERE i.fleet_incident_id = %(id)s AND n.incident_id = i.id AND n.status = 'held'
"""

# The outage lasts: each held alert becomes "we know about it"; one channel's several
# go out as one digest, because they share a due time.
_TELL = """
UPDATE notifications n
SET status = 'pending', template = 'device_offline_known_outage', due_at = %(now)s,
    context = n.context || jsonb_build_object('outage', %(outage)s::text)
FROM incidents i
WHERE i.fleet_incident_id = %(id)s AND i.status <> 'resolved'
  AND n.incident_id = i.id AND n.status = 'held'
"""

_MARK_TOLD = """
UPDATE incidents SET details = details || jsonb_build_object('customers_told_at', %(now)s::text)
WHERE id = %(id)s
"""


def load_group_sizes(conn: psycopg.Connection, policy: FleetPolicy) -> dict[str, int]:
    """How many watched devices each group has (one pass over the fleet: a periodic job)."""
    sizes: Counter = Counter()
    for model_id, firmware, region, n in conn.execute(_GROUP_SIZES):
        for key in group_keys(model_id, firmware, region, policy.groups):
            sizes[key] += n
    return dict(sizes)


@dataclass
class Correlated:
    opened: list[int] = field(default_factory=list)
    # Queued customer alerts now held by an outage.
    held: int = 0


def correlate(
    conn: psycopg.Connection, now: datetime, policy: FleetPolicy, sizes: dict[str, int]
) -> Correlated:
    """Open fleet incidents for groups in an outage and attach their devices' incidents.

    Runs inside the transaction that opened the offline incidents, so their alerts are
    held before any dispatcher can see them.
    """
    result = Correlated()
    since = now - timedelta(seconds=policy.window_s)
    counts: Counter = Counter()
    combos: dict[str, set] = {}
    for model_id, firmware, region, n in conn.execute(_RECENT, {"since": since}):
        for key in group_keys(model_id, firmware, region, policy.groups):
            counts[key] += n
            combos.setdefault(key, set()).add((model_id, firmware, region))
    down = {key: frozenset(c) for key, c in combos.items()}
    over = outage_groups(down, counts, sizes, policy)
    if over:
        window = duration_text(timedelta(seconds=policy.window_s))
        opened = conn.execute(
            _OPEN_FLEET,
            {
                "now": now,
                "window": window,
                "keys": over,
                "labels": [describe_group(k) for k in over],
                "down": [counts[k] for k in over],
                "sizes": [sizes.get(k, counts[k]) for k in over],
            },
        ).fetchall()
        for incident_id, _key, summary, details in opened:
            result.opened.append(incident_id)
            conn.execute(_EVENT, (incident_id, now, "opened", json.dumps(details)))
            context = {"summary": summary, "group": details["group"], "opened": now.isoformat()}
            context.update(down=details["down"], size=details["size"], window=window)
            enqueue_staff_notice(conn, incident_id, "fleet_outage", "critical", context, now)
            log.warning("fleet incident %d opened: %s", incident_id, summary)
    open_groups = dict(conn.execute(_OPEN_OUTAGES).fetchall())
    for key in sorted(open_groups, key=lambda k: smallest_first(k, sizes)):
        params = {"fleet": open_groups[key], "since": since, **group_filter(key)}
        result.held += conn.execute(_ATTACH, params).rowcount
    return result


@dataclass
class Reviewed:
    resolved: int = 0
    released: int = 0
    told: int = 0


def review_outages(conn: psycopg.Connection, now: datetime, policy: FleetPolicy) -> Reviewed:
    """Resolve outages that are over, and tell owners of one that lasts; return what it did."""
    result = Reviewed()
    with conn.transaction():
        for fleet_id, opened_at, summary, details, affected, still in conn.execute(
            _REVIEW
        ).fetchall():
            if affected and outage_over(still, affected, policy):
                if not conn.execute(_RESOLVE, {"now": now, "id": fleet_id}).rowcount:
                    continue
                released = conn.execute(_RELEASE, {"now": now, "id": fleet_id}).rowcount
                result.resolved += 1
                result.released += released
                detail = {"affected": affected, "still_offline": still, "released": released}
                conn.execute(_EVENT, (fleet_id, now, "resolved", json.dumps(detail)))
                context = {"summary": summary, "group": details["group"]}
                duration = duration_text(now - opened_at)
                context.update(affected=affected, still=still, duration=duration)
                enqueue_staff_notice(
                    conn, fleet_id, "fleet_outage_resolved", "critical", context, now
                )
                back = affected - still
                log.info("fleet incident %d resolved: %d of %d back", fleet_id, back, affected)
            elif "customers_told_at" not in details and now - opened_at >= timedelta(
                seconds=policy.hold_s
            ):
                outage = f"{details['down']} devices in {details['group']} went offline at once"
                told = conn.execute(_TELL, {"now": now, "id": fleet_id, "outage": outage}).rowcount
                conn.execute(_MARK_TOLD, {"now": now, "id": fleet_id})
                detail = json.dumps({"notices": told})
                conn.execute(_EVENT, (fleet_id, now, "customers_told", detail))
                result.told += told
                log.warning("fleet incident %d lasts: %d owners' notices released", fleet_id, told)
    return result
