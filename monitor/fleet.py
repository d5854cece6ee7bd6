"""Fleet incidents: a group outage is one incident for staff, not ten thousand customer SMS.

tick (same transaction as the offline incidents)
    count recent unresolved offline incidents per group -> open a fleet incident
    attach the group's offline incidents to it; their owners' alerts are held
review (periodic)
    enough devices back            -> resolve (the lifecycle releases what is still held)
    held longer than the hold time -> tell each affected owner once that we know
The incidents and the held alerts change through the incident lifecycle (incidents/).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import psycopg

import incidents
from alerts.context import duration_text
from alerts.notices import record_notices, to_staff
from incidents import GroupProblem
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

_OPEN_OUTAGES = """
SELECT group_key, id FROM incidents
WHERE scope = 'fleet' AND kind = 'fleet_outage' AND status <> 'resolved'
"""

# The window's unattached offline incidents of devices in one group, to join its outage.
# Run for the most specific group first: a device joins one outage, its smallest.
_MEMBERS = """
SELECT i.id
FROM incidents i
JOIN devices d ON d.id = i.device_id
JOIN device_state s ON s.device_id = i.device_id
WHERE i.scope = 'device' AND i.kind = 'offline' AND i.opened_at > %(since)s
  AND i.status <> 'resolved' AND i.fleet_incident_id IS NULL
  AND (%(model)s::text IS NULL OR d.model_id = %(model)s)
  AND (%(firmware)s::text IS NULL OR coalesce(s.firmware, d.firmware) = %(firmware)s)
  AND (%(region)s::text IS NULL OR d.region = %(region)s)
"""

_REVIEW = """
SELECT f.id, f.opened_at, f.summary, f.details,
       count(i.id), count(i.id) FILTER (WHERE i.status <> 'resolved')
FROM incidents f
LEFT JOIN incidents i ON i.fleet_incident_id = f.id
WHERE f.scope = 'fleet' AND f.kind = 'fleet_outage' AND f.status <> 'resolved'
GROUP BY f.id
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


@dataclass
class FleetReading:
    """The window's counts as they stood before a tick's transaction (its own incidents
    left out), and the group attributes of the devices that tick may declare offline."""

    recent: list[tuple[str, str | None, str | None, int]]
    attributes: dict[str, tuple[str, str | None, str | None]]

    def with_tick(self, devices: list[str]) -> list[tuple[str, str | None, str | None, int]]:
        """The window's counts once these devices' offline incidents (opened by the tick,
        not taken by a site) are added: what _RECENT reads inside the transaction."""
        added = Counter(self.attributes[d] for d in devices if d in self.attributes)
        return [*self.recent, *((*combo, n) for combo, n in added.items())]


def read_fleet(
    conn: psycopg.Connection,
    attributes: dict[str, tuple[str, str | None, str | None]],
    now: datetime,
    policy: FleetPolicy,
) -> FleetReading:
    """The window's counts, with the group attributes of the tick's newly silent devices
    (monitor/silent.py). Read-only, so the monitor reads it beside the tick's transaction
    (on two cores, the two run side by side); correlate() then adds the tick's own
    incidents in Python."""
    since = now - timedelta(seconds=policy.window_s)
    recent = conn.execute(_RECENT, {"since": since}).fetchall()
    return FleetReading(recent, attributes)


def correlate(
    conn: psycopg.Connection,
    now: datetime,
    policy: FleetPolicy,
    sizes: dict[str, int],
    recent: list[tuple[str, str | None, str | None, int]] | None = None,
) -> Correlated:
    """Open fleet incidents for groups in an outage and attach their devices' incidents.

    Runs inside the transaction that opened the offline incidents, so their alerts are
    held before any dispatcher can see them. `recent`: the window's unattached offline
    incidents counted by group attributes (FleetReading.with_tick); read here when None.
    """
    result = Correlated()
    since = now - timedelta(seconds=policy.window_s)
    counts: Counter = Counter()
    combos: dict[str, set] = {}
    if recent is None:
        recent = conn.execute(_RECENT, {"since": since}).fetchall()
    for model_id, firmware, region, n in recent:
        for key in group_keys(model_id, firmware, region, policy.groups):
            counts[key] += n
            combos.setdefault(key, set()).add((model_id, firmware, region))
    down = {key: frozenset(c) for key, c in combos.items()}
    over = outage_groups(down, counts, sizes, policy)
    if over:
        window = duration_text(timedelta(seconds=policy.window_s))
        problems = []
        for key in over:
            label, n, size = describe_group(key), counts[key], sizes.get(key, counts[key])
            problems.append(
                GroupProblem(
                    "fleet",
                    "fleet_outage",
                    key,
                    "critical",
                    f"{n} devices offline within {window}: {label}",
                    {"down": n, "size": size, "group": label},
                )
            )
        opened = incidents.open_group_incidents(conn, problems, now)
        by_key = {p.group_key: p for p in problems}
        notices = []
        for o in opened:
            problem = by_key[o.group_key]
            result.opened.append(o.id)
            context = {"summary": problem.summary, "opened": now.isoformat(), "window": window}
            context.update(problem.details)
            notices.append(to_staff("fleet_outage", "critical", incident_id=o.id, context=context))
            log.warning("fleet incident %d opened: %s", o.id, problem.summary)
        record_notices(conn, notices, now)
    open_groups = dict(conn.execute(_OPEN_OUTAGES).fetchall())
    for key in sorted(open_groups, key=lambda k: smallest_first(k, sizes)):
        params = {"since": since, **group_filter(key)}
        members = [r[0] for r in conn.execute(_MEMBERS, params)]
        _, held = incidents.attach(conn, open_groups[key], members, now)
        result.held += held
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
                detail = {"affected": affected, "still_offline": still}
                resolved = incidents.resolve(
                    conn, [fleet_id], now, reason="devices back", details={fleet_id: detail}
                )
                if not resolved:
                    continue
                result.resolved += 1
                result.released += resolved[0].released
                context = {"summary": summary, "group": details["group"]}
                duration = duration_text(now - opened_at)
                context.update(affected=affected, still=still, duration=duration)
                notice = to_staff(
                    "fleet_outage_resolved", "critical", incident_id=fleet_id, context=context
                )
                record_notices(conn, [notice], now)
                back = affected - still
                log.info("fleet incident %d resolved: %d of %d back", fleet_id, back, affected)
            elif "customers_told_at" not in details and now - opened_at >= timedelta(
                seconds=policy.hold_s
            ):
                outage = f"{details['down']} devices in {details['group']} went offline at once"
                told = incidents.tell_members(conn, fleet_id, outage, now)
                result.told += told
                log.warning("fleet incident %d lasts: %d owners' notices released", fleet_id, told)
    return result
