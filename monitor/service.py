"""The monitor process: each tick finds devices due a status change, by index, and applies it."""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import psycopg

from core import db
from core.settings import Settings
from core.worker import Job, RunsForever, Worker
from monitor.blind_spot import horizon, is_blind, offline_held, wills_held
from monitor.correlation import GROUP_KINDS, FleetPolicy
from monitor.flapping import FlapPolicy
from monitor.fleet import (
    FleetReading,
    Reviewed,
    correlate,
    load_group_sizes,
    read_fleet,
    review_outages,
)
from monitor.health import HealthResult, evaluate_health
from monitor.sight import close_blind_spot, open_blind_spot, read_sight
from monitor.silent import read_silent
from monitor.site_watch import SiteReading, SiteResult, correlate_sites, read_sites, resolve_sites
from monitor.sites import SitePolicy
from monitor.status import DeviceWatch, Transition, next_status
from monitor.transitions import Applied, apply_transitions, resolve_stable
from releases.digest import send_weekly_digest
from releases.rollup import RollupResult, roll_up

log = logging.getLogger(__name__)

# Health batches one run may take before it yields to the next run (a fleet catching up
# after a restart is worked off over several runs, not in one long job).
_HEALTH_BATCHES_PER_RUN = 20
# While offline decisions are held, at most this many held rows are read per tick (to
# count and log them).
HELD_SAMPLE = 1000

# The monitor's connections' server settings (see Monitor.__init__).
MONITOR_SERVER_SETTINGS = {"jit": "off"}

# The last run of each job and how long it took, for /metrics.
_RUN = """
INSERT INTO monitor_runs (job, last_run, duration_ms) VALUES (%s, %s, %s)
ON CONFLICT (job) DO UPDATE SET last_run = excluded.last_run, duration_ms = excluded.duration_ms
"""

_COLUMNS = """device_id, status, status_changed_at, overdue_at, last_seen_at, last_received_at,
              connectivity, connectivity_at, expected_at"""

# Three range reads on partial indexes; none of them scans the fleet:
#  - watched devices whose deadline has passed (device_state_watch);
#  - down or paused devices heard from since (device_state_back: only those);
#  - watched devices whose Last Will has stood past its grace (device_state_will).
_DUE = f"""
(SELECT {_COLUMNS} FROM device_state
 WHERE status IN ('provisioned', 'online', 'degraded') AND overdue_at <= %(now)s
 ORDER BY overdue_at LIMIT %(silent_limit)s)
UNION ALL
(SELECT {_COLUMNS} FROM device_state
 WHERE status IN ('offline', 'never_seen', 'paused') AND last_received_at > status_changed_at
 LIMIT %(limit)s)
UNION ALL
(SELECT {_COLUMNS} FROM device_state
 WHERE connectivity = 'offline' AND connectivity_at <= %(will_cutoff)s
   AND status IN ('online', 'degraded')
 LIMIT %(will_limit)s)
"""


@dataclass
class TickResult:
    due: int
    applied: Applied
    seconds: float
    # No data from anyone: nothing was decided this tick.
    blind: bool = False
    # Offline decisions held back after an outage (a sample: at most HELD_SAMPLE a kind).
    held: int = 0


def find_transitions(
    conn: psycopg.Connection,
    now: datetime,
    will_grace: timedelta,
    limit: int,
    *,
    silent_limit: int | None = None,
    will_limit: int | None = None,
) -> list[Transition]:
    """The transitions due at `now`, decided by `next_status` (the silent and will parts
    read at most `silent_limit` and `will_limit` rows when given)."""
    rows = conn.execute(
        _DUE,
        {
            "now": now,
            "will_cutoff": now - will_grace,
            "limit": limit,
            "silent_limit": limit if silent_limit is None else silent_limit,
            "will_limit": limit if will_limit is None else will_limit,
        },
    ).fetchall()
    seen: set[str] = set()
    transitions = []
    for row in rows:
        if row[0] in seen:
            continue
        seen.add(row[0])
        transition = next_status(DeviceWatch(*row), now, will_grace)
        if transition:
            transitions.append(transition)
    return transitions


class Monitor(RunsForever):
    """Ticks on a schedule; any number of monitors may run against one database."""

    def __init__(self, settings: Settings, dsn: str) -> None:
        self.settings = settings
        self.dsn = dsn
        self.will_grace = timedelta(seconds=settings.monitor_will_grace_s)
        self.blind_after = timedelta(seconds=settings.monitor_blind_after_s)
        self.resume_grace = timedelta(seconds=settings.monitor_resume_grace_s)
        self.ingest_gone = timedelta(seconds=settings.monitor_ingest_gone_s)
        self.flap = FlapPolicy(
            settings.monitor_flap_count,
            settings.monitor_flap_window_s,
            settings.monitor_stable_after_s,
        )
        groups = tuple(g.strip() for g in settings.fleet_groups.split(",") if g.strip())
        unknown = set(groups) - set(GROUP_KINDS)
        if unknown:
            raise ValueError(f"FLEETWATCH_FLEET_GROUPS: unknown group kinds {sorted(unknown)}")
        self.fleet = FleetPolicy(
            groups=groups,
            min_devices=settings.fleet_min_devices,
            min_pct=settings.fleet_min_pct,
            window_s=settings.fleet_window_s,
            hold_s=settings.fleet_hold_s,
            resolve_pct=settings.fleet_resolve_pct,
        )
        self.sites = SitePolicy(
            min_pct=settings.site_min_pct,
            min_devices=settings.site_min_devices,
            slack_s=settings.site_slack_s,
            settle_s=settings.site_settle_s,
        )
        self._group_sizes: dict[str, int] | None = None
        self.ticks = 0
        self.last_tick: TickResult | None = None
        # Every monitor query is a handful of index lookups per device, and a big burst's are
        # costed above jit_above_cost (100,000): the site reading of ten thousand sites,
        # costed 161,000 while the registry's visibility map was not set, was compiled first,
        # 47 ms of a 450 ms reading spent before its first row (43,000 with it set: the cost
        # grows with the burst).
        self._conns = db.Connections(dsn, server=MONITOR_SERVER_SETTINGS)
        # What the correlations read of a tick's newly silent devices, on a connection of
        # its own beside the tick's transaction (_read_beside).
        self._beside = ThreadPoolExecutor(1, thread_name_prefix="monitor-sites")
        s = settings
        self.worker = Worker(
            "monitor",
            [
                Job(name, job, every, lambda name=name: self._conns.drop(name))
                for name, job, every in (
                    ("tick", self.tick, s.monitor_tick_s),
                    ("review", self.review, s.monitor_review_s),
                    ("sizes", self.refresh_group_sizes, s.fleet_sizes_refresh_s),
                    ("health", self.check_health, s.monitor_health_s),
                    ("releases", self.roll_up_releases, s.release_rollup_s),
                )
            ],
            dsn=dsn,
        )

    def tick(self, now: datetime | None = None) -> TickResult:
        """Find and apply every transition due at `now` (default: the database's clock)."""
        started = time.perf_counter()
        conn = self._conns.get("tick")
        if now is None:
            now = db.db_now(conn)
        sight = read_sight(conn, now, self.blind_after, self.ingest_gone)
        if is_blind(sight, now, self.blind_after):
            if sight.blind_since is None:
                open_blind_spot(conn, sight, now)
            result = TickResult(0, Applied(), time.perf_counter() - started, blind=True)
            self._finish_tick(conn, now, result)
            return result
        if sight.blind_since is not None and close_blind_spot(conn, now, self.resume_grace):
            sight = replace(sight, blind_since=None, last_blind_end=now)
        # Devices are still reconnecting after an outage: silence is not yet news, nor, if
        # the broker went away, their wills (it sends them all on its way down). What is
        # held is only sampled, not read in full four times a second, while the database is
        # busy with the backlog.
        silence_held = offline_held(sight, now, self.resume_grace)
        will_held = wills_held(sight, now, self.resume_grace)
        limit = self.settings.monitor_batch_limit
        # Deadlines count up to what the ingests have provably read, not to the wall clock.
        transitions = find_transitions(
            conn,
            horizon(sight, now),
            self.will_grace,
            limit,
            silent_limit=min(limit, HELD_SAMPLE) if silence_held else limit,
            will_limit=min(limit, HELD_SAMPLE) if will_held else limit,
        )
        held = 0
        if silence_held:
            waiting = {"silent", "never_reported"} | ({"last_will"} if will_held else set())
            kept = [t for t in transitions if t.reason not in waiting]
            held, transitions = len(transitions) - len(kept), kept
        # Site silence is judged on what the ingests have provably read, as deadlines are.
        heard_until = horizon(sight, now)
        silent = [t.device_id for t in transitions if t.new == "offline"]
        beside = self._beside.submit(self._read_beside, silent, now) if silent else None
        applied = apply_transitions(
            conn,
            transitions,
            now,
            self.flap,
            then=lambda c, a: self._correlate(c, a, now, heard_until, beside),
        )
        resolve_stable(conn, now, self.flap)
        result = TickResult(len(transitions), applied, time.perf_counter() - started, held=held)
        self._finish_tick(conn, now, result)
        if transitions:
            log.info(
                "monitor tick: %d due, changed %s, %d incidents opened, %d resolved, "
                "%d notices recorded, %d fleet and %d site incidents opened in %.3f s",
                result.due,
                dict(applied.changed),
                applied.opened,
                applied.resolved,
                applied.notices,
                applied.fleet_opened,
                applied.sites_opened,
                result.seconds,
            )
        return result

    def _finish_tick(self, conn: psycopg.Connection, now: datetime, result: TickResult) -> None:
        self.ticks += 1
        self.last_tick = result
        conn.execute(_RUN, ("tick", now, result.seconds * 1000))

    def _read_beside(self, silent: list[str], now: datetime) -> tuple[SiteReading, FleetReading]:
        """What the tick's correlations read, on a connection of its own while the tick's
        transaction writes (both read-only; monitor/site_watch.py, monitor/fleet.py)."""
        try:
            conn = self._conns.get("tick-beside")
            # One lookup of each device's registry row serves both.
            rows = read_silent(conn, silent)
            # The tick's own clock: the decision is made at its horizon, which is no later.
            return (
                read_sites(conn, silent, self.sites, now, rows.placed),
                read_fleet(conn, rows.attributes, now, self.fleet),
            )
        except Exception:
            self._conns.drop("tick-beside")
            raise

    def _correlate(
        self,
        conn: psycopg.Connection,
        applied: Applied,
        now: datetime,
        heard_until: datetime,
        beside: Future | None = None,
    ) -> None:
        sites_read = fleet_read = None
        if beside is not None:
            try:
                sites_read, fleet_read = beside.result()
            except psycopg.Error as error:
                # The tick's own connection reads them instead.
                log.warning("monitor tick: reading beside the tick failed: %s", error)
        # Sites first: a home's members it takes are not counted again in a fleet outage.
        sites = correlate_sites(conn, applied.down_ids, heard_until, self.sites, sites_read)
        applied.sites_opened = len(sites.opened)
        resolve_sites(conn, applied.back_ids, now, self.sites)
        if applied.offline:
            if self._group_sizes is None:
                self._group_sizes = load_group_sizes(conn, self.fleet)
            recent = None
            if fleet_read is not None:
                free = [
                    device
                    for incident, device in applied.offline_devices.items()
                    if incident not in sites.attached_ids
                ]
                recent = fleet_read.with_tick(free)
            correlated = correlate(conn, now, self.fleet, self._group_sizes, recent)
            applied.fleet_opened = len(correlated.opened)

    def refresh_group_sizes(self) -> dict[str, int]:
        """Recount the watched devices per group (the outage percentages' denominators)."""
        self._group_sizes = load_group_sizes(self._conns.get("sizes"), self.fleet)
        return self._group_sizes

    def review(self, now: datetime | None = None) -> Reviewed:
        """The periodic check on open outages: over, or lasting (owners told once); and on
        open site and hub incidents: back, or settled."""
        conn = self._conns.get("review")
        now = now or db.db_now(conn)
        self.review_sites(now)
        return review_outages(conn, now, self.fleet)

    def review_sites(self, now: datetime) -> SiteResult:
        conn = self._conns.get("review")
        with conn.transaction():
            return resolve_sites(conn, None, now, self.sites)

    def check_health(self, now: datetime | None = None) -> HealthResult:
        """Evaluate the degraded-health rules of devices heard from since their last check.

        Batch after batch while batches come back full, up to _HEALTH_BATCHES_PER_RUN.
        """
        conn = self._conns.get("health")
        if now is None:
            now = db.db_now(conn)
        s = self.settings
        total = HealthResult()
        for _ in range(_HEALTH_BATCHES_PER_RUN):
            result = evaluate_health(
                conn,
                now,
                limit=s.monitor_health_batch_limit,
                min_interval_s=s.monitor_health_min_interval_s,
            )
            total.add(result)
            if result.due < s.monitor_health_batch_limit:
                break
        if total.due:
            log.info(
                "monitor health: %d devices evaluated, %d incidents opened, %d resolved, "
                "%d degraded, %d back online, %d notifications queued, %d with invalid "
                "rules in %.3f s",
                total.due,
                total.opened,
                total.resolved,
                total.degraded,
                total.recovered,
                total.notifications,
                total.invalid,
                total.seconds,
            )
        return total

    def roll_up_releases(self, now: datetime | None = None) -> bool:
        """One step of the release-health rollups, then the weekly digest when due; True
        (run again at once) while the rollup is behind."""
        conn = self._conns.get("releases")
        if now is None:
            now = db.db_now(conn)
        result: RollupResult = roll_up(conn, now)
        if result.heartbeats:
            log.info(
                "release rollup to %s: %d heartbeats, %d device-days, %d daily rows in %.3f s",
                result.rolled_to,
                result.heartbeats,
                result.device_days,
                result.daily_rows,
                result.seconds,
            )
        if not result.more:
            s = self.settings
            send_weekly_digest(conn, now, s.release_digest_weekday, s.release_digest_hour)
        return result.more

    def start(self) -> Monitor:
        """Run the tick, review, sizes, health and releases jobs on their schedules
        (core/worker.py)."""
        self.worker.start()
        return self

    def stop(self) -> None:
        """Stop the jobs and close their connections."""
        self.worker.stop()
        self._beside.shutdown(wait=True)
        # Threads start on first use: a stopped monitor can still be ticked by hand.
        self._beside = ThreadPoolExecutor(1, thread_name_prefix="monitor-sites")
        self._conns.drop()
