"""Site and hub incidents: a home without internet, or a dead hub, is one message.

tick (same transaction as the offline incidents, so their alerts are held before any
router sees them)
    offline devices of a site or behind a parent -> read that site's and parent's devices
    (by index: a handful of rows each) -> monitor/sites.py decides -> open one 'site' scope
    incident (site:<id> or hub:<device id>), attach the members' offline incidents (their
    own alerts are held: routing notice_fate `covered`), record the one owner's message
    naming the place and every device; later offline members join the open incident
tick (devices back) / review (periodic)
    every named device heard from since -> resolve, one "back online" with the downtime;
    some back and the rest still down after settle_s -> resolve (the rest's own alerts go)
The incidents and the held alerts change through the incident lifecycle (incidents/).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import datetime

import psycopg

import incidents
from alerts.notices import record_notices, to_owner
from incidents import GroupProblem
from monitor.sites import (
    DOWN,
    Member,
    SitePolicy,
    group_back,
    lead_device,
    parent_silent,
    settled,
    site_silent,
)

log = logging.getLogger(__name__)

# Of these newly offline or newly back devices, those with a site, a parent or children.
# Of these devices, those placed at a site or behind a parent (the covering index
# devices_placed: no heap fetch), and those that are parents (devices_parent).
_PLACED = """
SELECT id, site_id, parent_id FROM devices
WHERE id = ANY(%(ids)b::text[]) AND (site_id IS NOT NULL OR parent_id IS NOT NULL)
"""
_PARENTS = "SELECT DISTINCT parent_id FROM devices WHERE parent_id = ANY(%(ids)b::text[])"

_MEMBER_COLUMNS = """d.id, coalesce(d.name, d.id) AS name, s.status, s.last_received_at,
       m.heartbeat_interval_s, d.site_id, d.parent_id, m.critical, s.expected_at,
       CASE WHEN s.connectivity = 'offline' THEN s.connectivity_at END AS will_at"""

# Each device's state by its primary key: a nested loop whatever the number of devices,
# never a scan of device_state (LIMIT 1 keeps the planner from flattening the LATERAL into
# a hash join over the whole table, which it prefers from a few thousand rows). Binary
# arrays: ten thousand ids as text cost psycopg tens of milliseconds.
_STATE = """
JOIN device_models m ON m.id = d.model_id
CROSS JOIN LATERAL (
    SELECT status, last_received_at, expected_at, connectivity, connectivity_at
    FROM device_state WHERE device_id = d.id AND status <> 'retired' LIMIT 1) AS s
"""

# The devices of the sites that could be silent: the covering index devices_site
# (migration 027) site by site, then device_state by key. Most newly silent devices are
# alone in a home whose other devices beat, so only the sites where at least `min` devices
# have been quiet since before the end of a newly silent device's window, and (but for the
# newly silent themselves) have missed a beat by `now`, come back: necessary conditions of
# monitor/sites.py's silent_together, whose decision is then made on the rows in Python.
# Ten thousand such devices read thirty thousand rows here and send back a handful.
# Site by site (OFFSET 0 keeps the planner from flattening it): as `site_id = ANY(...)` over
# ten thousand sites it chose a parallel scan of the whole registry, whose workers took
# both cores from the tick's own transaction beside it.
_SITE_MEMBERS = f"""
WITH member AS (
    SELECT {_MEMBER_COLUMNS},
           d.id = ANY(%(triggers)b::text[]) AS trigger
    FROM unnest(%(sites)b::text[]) AS q(site_id)
    CROSS JOIN LATERAL (SELECT * FROM devices WHERE site_id = q.site_id OFFSET 0) AS d
    {_STATE}
), quiet AS (
    SELECT site_id, min(last_received_at) AS since,
           max(last_received_at + make_interval(secs => heartbeat_interval_s + %(slack)s))
               AS until
    FROM member WHERE trigger GROUP BY site_id
), possible AS (
    SELECT m.site_id FROM member m JOIN quiet q ON q.site_id = m.site_id
    WHERE m.last_received_at <= q.until
      AND m.last_received_at + make_interval(secs => m.heartbeat_interval_s + %(slack)s)
          >= q.since
      AND (m.trigger
           OR m.last_received_at + make_interval(secs => m.heartbeat_interval_s + %(slack)s)
              <= %(now)s
           OR m.will_at BETWEEN m.last_received_at AND %(now)s)
    GROUP BY m.site_id HAVING count(*) >= %(min)s
)
SELECT id, name, status, last_received_at, heartbeat_interval_s, site_id, parent_id,
       critical, expected_at, will_at
FROM member WHERE site_id IN (SELECT site_id FROM possible)
"""

# The parents themselves and the devices behind them (devices_parent).
_PARENT_MEMBERS = f"""
SELECT {_MEMBER_COLUMNS} FROM devices d {_STATE}
WHERE d.parent_id = ANY(%(parents)b::text[])
UNION ALL
SELECT {_MEMBER_COLUMNS} FROM devices d {_STATE}
WHERE d.id = ANY(%(parents)b::text[])
"""

_NAMED = f"""
SELECT {_MEMBER_COLUMNS} FROM devices d {_STATE}
WHERE d.id = ANY(%(ids)b::text[])
"""

_SITES = "SELECT id, name, address FROM sites WHERE id = ANY(%(ids)s)"

_OPEN_GROUPS = """
SELECT group_key, id FROM incidents
WHERE scope = 'site' AND status <> 'resolved' AND group_key = ANY(%(keys)b::text[])
"""

# Every open one (the review), or those of these keys (a tick's devices back).
_OPEN_FULL = """
SELECT id, group_key, opened_at, details FROM incidents
WHERE scope = 'site' AND status <> 'resolved'
  AND (%(keys)s::text[] IS NULL OR group_key = ANY(%(keys)s))
ORDER BY opened_at
"""


@dataclass
class SiteResult:
    opened: list[int] = field(default_factory=list)
    attached: int = 0
    # The device incidents offered to a site or hub incident (the fleet count leaves them
    # out).
    attached_ids: set[int] = field(default_factory=set)
    resolved: int = 0


def _involved(
    conn, ids: list[str], placed: list[tuple[str, str | None, str | None]] | None = None
) -> list[tuple[str, str | None, str | None, bool]]:
    """(device, its site, its parent, whether it is a parent) for those of `ids` that have
    any of the three. `placed`: their (device, site, parent) already read, else read here."""
    hubs = {r[0] for r in conn.execute(_PARENTS, {"ids": ids})}
    if placed is None:
        placed = conn.execute(_PLACED, {"ids": ids}).fetchall()
    rows = {r[0]: r for r in placed}
    for hub in hubs - set(rows):
        rows[hub] = (hub, None, None)
    return [(d, site, parent, d in hubs) for d, site, parent in rows.values()]


def _members(
    conn,
    sites: set[str],
    parents: set[str],
    triggers: list[str],
    policy: SitePolicy,
    now: datetime,
) -> dict[str, Member]:
    """The devices of these sites that could be silent, behind these parents, and the
    parents themselves (a device of neither is not read: nothing to decide about it)."""
    members = {}
    if sites:
        params = {
            "sites": sorted(sites),
            "triggers": triggers,
            "slack": policy.slack_s,
            "min": policy.min_devices,
            "now": now,
        }
        members.update((r[0], Member(*r)) for r in conn.execute(_SITE_MEMBERS, params))
    if parents:
        rows = conn.execute(_PARENT_MEMBERS, {"parents": sorted(parents)})
        members.update((r[0], Member(*r)) for r in rows)
    return members


def _named(conn, ids) -> dict[str, Member]:
    return {r[0]: Member(*r) for r in conn.execute(_NAMED, {"ids": sorted(ids)})}


@dataclass
class SiteReading:
    """What the site decision reads for a tick's newly silent devices: which of them have a
    site, a parent or children, and the members of those sites and parents."""

    involved: list[tuple[str, str | None, str | None, bool]]
    members: dict[str, Member]


def read_sites(
    conn: psycopg.Connection,
    silent_ids: list[str],
    policy: SitePolicy,
    now: datetime,
    placed: list[tuple[str, str | None, str | None]] | None = None,
) -> SiteReading:
    """Read the places and parents of these devices (about to be, or just, declared offline).

    `placed`: the (device, site, parent) of those of them at a site or behind a parent,
    when already read (monitor/silent.py); read here when None.

    `now`: the moment the decision will be made at, or later (a later one reads more rows,
    never fewer: what is silent by then includes what is silent sooner).

    Read-only, so the monitor reads it on a connection of its own while the tick's
    transaction writes their incidents; at a million devices this reading is a third of a
    fleet-wide burst's tick, and the two then run side by side on two cores.
    """
    involved = _involved(conn, silent_ids, placed) if silent_ids else []
    if not involved:
        return SiteReading([], {})
    sites = {site for _, site, _, _ in involved if site}
    parents = {p for _, _, p, _ in involved if p} | {d for d, _, _, hub in involved if hub}
    members = _members(conn, sites, parents, sorted(d for d, *_ in involved), policy, now)
    return SiteReading(involved, members)


def _as_offline(reading: SiteReading, offline_ids: list[str]) -> SiteReading:
    """The reading for the devices the tick did declare offline (its candidates may have
    been taken by another monitor), with their status as the tick left it (a reading made
    beside the tick's transaction saw them as they were before)."""
    down = set(offline_ids)
    involved = [row for row in reading.involved if row[0] in down]
    members = {
        d: replace(m, status="offline") if d in down and m.status not in DOWN else m
        for d, m in reading.members.items()
    }
    return SiteReading(involved, members)


def correlate_sites(
    conn: psycopg.Connection,
    offline_ids: list[str],
    now: datetime,
    policy: SitePolicy,
    reading: SiteReading | None = None,
) -> SiteResult:
    """Open site and hub incidents for these newly offline devices, or add them to one
    that is open. Runs inside the transaction that opened their offline incidents.

    `reading`: read_sites() of (at least) these devices, made beside the transaction; read
    here when None.
    """
    result = SiteResult()
    if not offline_ids:
        return result
    if reading is None:
        reading = read_sites(conn, offline_ids, policy, now)
    else:
        reading = _as_offline(reading, offline_ids)
    involved, members = reading.involved, reading.members
    if not involved:
        return result
    sites = {site for _, site, _, _ in involved if site}
    parents = {p for _, _, p, _ in involved if p} | {d for d, _, _, hub in involved if hub}
    # By site and by parent, once: a tick's triggers each look up their own handful.
    by_site: dict[str, list[Member]] = {}
    by_parent: dict[str, list[str]] = {}
    for m in members.values():
        if m.site_id:
            by_site.setdefault(m.site_id, []).append(m)
        if m.parent_id:
            by_parent.setdefault(m.parent_id, []).append(m.device_id)
    keys = [f"site:{s}" for s in sites] + [f"hub:{p}" for p in parents]
    groups: dict[str, int] = dict(conn.execute(_OPEN_GROUPS, {"keys": keys}).fetchall())
    joins: dict[str, set[str]] = {}
    new: dict[str, tuple[str, list[str], str]] = {}  # key -> (kind, named, trigger)
    for device_id, site, parent, is_hub in sorted(involved):
        trigger = members.get(device_id)
        if trigger is None:
            continue
        key = _joins(groups, new, device_id, site, parent, is_hub)
        if key is None and site:
            named = site_silent(by_site.get(site, []), trigger, now, policy)
            if named:
                key = f"site:{site}"
                new[key] = ("site_offline", named, device_id)
        if key is None:
            hub = device_id if is_hub else parent
            if hub and hub in members and parent_silent(members[hub], trigger, now, policy):
                behind = by_parent.get(hub, [])
                key = f"hub:{hub}"
                new[key] = ("hub_offline", [hub, *behind], device_id)
        if key is not None:
            joins.setdefault(key, set()).add(device_id)
    if new:
        groups.update(_open(conn, new, members, now, result))
    # Every joining device's open incident in one read, then one attach per group.
    wanted = {
        key: devices | set(new[key][1]) if key in new else devices
        for key, devices in joins.items()
        if key in groups
    }
    everyone = sorted({d for devices in wanted.values() for d in devices})
    open_ids = incidents.find_open(conn, everyone, ("offline", "never_seen"))
    by_device: dict[str, list[int]] = {}
    for incident_id, device_id in open_ids.items():
        by_device.setdefault(device_id, []).append(incident_id)
    for key, devices in wanted.items():
        ids = [i for d in sorted(devices) for i in by_device.get(d, ())]
        attached, _ = incidents.attach(conn, groups[key], ids, now)
        result.attached += attached
        result.attached_ids.update(ids)
    return result


def _joins(groups, new, device_id, site, parent, is_hub) -> str | None:
    """The open group this device's silence belongs to, if any: its site's first."""
    for key in (
        f"site:{site}" if site else None,
        f"hub:{device_id}" if is_hub else None,
        f"hub:{parent}" if parent else None,
    ):
        if key and (key in groups or key in new):
            return key
    return None


def _open(conn, new, members, now, result) -> dict[str, int]:
    site_rows = {
        r[0]: r[1:]
        for r in conn.execute(
            _SITES, {"ids": [k[5:] for k in new if k.startswith("site:")]}
        ).fetchall()
    }
    problems, notices = [], {}
    for key, (kind, named, trigger) in new.items():
        critical = any(members[d].critical for d in named)
        lead = lead_device(named, members, named[0] if kind == "hub_offline" else trigger)
        since = members[trigger].last_heard
        facts = {"since": since.isoformat(), "device_ids": named, "lead": lead}
        if kind == "site_offline":
            name, address = site_rows.get(key[5:], (key[5:], None))
            facts.update(site_name=name, site_address=address or name)
            group = f"your place {name}"
            summary = f"{name}: {len(named)} devices went offline together"
        else:
            hub = members[named[0]]
            facts.update(hub_id=hub.device_id, hub_name=hub.name)
            # The hub's own name is the news; the devices behind it are the list.
            facts["device_ids"] = named[1:] or named
            group = f"behind {hub.name}"
            summary = f"hub {hub.name} ({hub.device_id}) offline with {len(named) - 1} devices"
        details = {**facts, "down": len(named), "group": group}
        severity = "critical" if critical else "warning"
        problems.append(GroupProblem("site", kind, key, severity, summary, details))
        notices[key] = (kind, severity, lead, facts)
    opened = incidents.open_group_incidents(conn, problems, now)
    owed = []
    for o in opened:
        kind, severity, lead, facts = notices[o.group_key]
        owed.append(to_owner(kind, severity, lead, incident_id=o.id, context=facts))
        result.opened.append(o.id)
        log.warning("device %s: %s incident %d opened (%s)", lead, kind, o.id, o.group_key)
    record_notices(conn, owed, now)
    return {o.group_key: o.id for o in opened}


def resolve_sites(
    conn: psycopg.Connection,
    back_ids: list[str] | None,
    now: datetime,
    policy: SitePolicy,
) -> SiteResult:
    """Resolve the site and hub incidents whose devices are back (those of `back_ids`, or
    every open one when None: the periodic review, which also settles stragglers)."""
    result = SiteResult()
    keys = None
    if back_ids is not None:
        if not back_ids:
            return result
        involved = _involved(conn, back_ids)
        if not involved:
            return result
        found = {f"site:{s}" for _, s, _, _ in involved if s}
        found |= {f"hub:{p}" for _, _, p, _ in involved if p}
        found |= {f"hub:{d}" for d, _, _, hub in involved if hub}
        keys = sorted(found)
    rows = conn.execute(_OPEN_FULL, {"keys": keys}).fetchall()
    named_ids = {
        group_id: {details["lead"], *details["device_ids"], *filter(None, [details.get("hub_id")])}
        for group_id, _, _, details in rows
    }
    # Every open group's devices in one read: the review runs every few seconds, whatever
    # the number of homes down.
    named = _named(conn, set().union(*named_ids.values())) if rows else {}
    for group_id, key, opened_at, details in rows:
        everyone = [named[d] for d in sorted(named_ids[group_id]) if d in named]
        if group_back(everyone, opened_at):
            _resolve(conn, group_id, key, details, everyone, now, result, "devices back")
        elif back_ids is None and settled(everyone, opened_at, now, policy):
            _resolve(conn, group_id, key, details, everyone, now, result, "settled")
    return result


def _resolve(conn, group_id, key, details, named, now, result, reason) -> None:
    resolved = incidents.resolve(conn, [group_id], now, reason=reason)
    if not resolved:
        return
    result.resolved += 1
    heard = [m.last_heard for m in named if m.last_heard is not None]
    back = max(heard) if heard else now
    kind = "site_back_online" if key.startswith("site:") else "hub_back_online"
    keep = ("device_ids", "site_name", "site_address", "hub_id", "hub_name", "since")
    context = {k: details[k] for k in keep if k in details}
    context["back"] = back.isoformat()
    # Settled with some still down: the message names only those back (the rest get their
    # own alert, released by the resolve).
    opened_at = resolved[0].opened_at
    up = {
        m.device_id
        for m in named
        if m.status not in DOWN and m.last_heard is not None and m.last_heard >= opened_at
    }
    context["device_ids"] = [d for d in details["device_ids"] if d in up] or details["device_ids"]
    notice = to_owner(
        kind, resolved[0].severity, details["lead"], incident_id=group_id, context=context
    )
    record_notices(conn, [notice], now)
    log.info("device %s: %s incident %d resolved (%s)", details["lead"], key, group_id, reason)
