"""Degraded health: which devices are due, their rules and heartbeats, and the writes.

The decisions are monitor/rules.py's (pure); this is the I/O around them:

    device_state_health (partial index): devices heard from since their last evaluation
      -> their rules (the device's override, else the model's), their open health
         incidents, their recent heartbeats: three queries per batch
      -> evaluate_rules per device (pure)
      -> one transaction: incidents opened and resolved, their timelines, the status
         flipped online <-> degraded, customer notices queued, the devices marked evaluated

Safe with several monitors: an incident opens once (the unique open-incident index and
ON CONFLICT DO NOTHING), resolves once (`WHERE status <> 'resolved'`), and the status
flips once (`WHERE status = old`); only the monitor whose write lands logs and notifies.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from itertools import groupby
from operator import itemgetter

import psycopg

import incidents
from alerts.context import duration_text
from alerts.notices import record_notices, to_owner
from alerts.templates import HEALTH_WHAT_TO_DO
from incidents import DeviceProblem
from monitor.rules import Rule, RuleError, Sample, Verdict, evaluate_rules, parse_rules_text

log = logging.getLogger(__name__)

# Exactly the predicate of the device_state_health index, oldest evaluation first.
_DUE = """
SELECT s.device_id, s.status, s.last_received_at, m.heartbeat_interval_s,
       coalesce(d.health_rules, m.health_rules)::text
FROM device_state s
JOIN devices d ON d.id = s.device_id
JOIN device_models m ON m.id = d.model_id
WHERE s.status IN ('online', 'degraded') AND s.last_received_at > s.health_due_after
ORDER BY s.health_due_after
LIMIT %(limit)s
"""

# A health incident is one whose details name its rule; read on incidents_open_device_kind.
_OPEN_HEALTH = """
SELECT id, device_id, kind FROM incidents
WHERE scope = 'device' AND device_id = ANY(%(ids)s) AND status <> 'resolved'
  AND details ? 'health_rule'
"""

# What had been received by `now`, on the (device_id, ts, seq) index of each day.
_HEARTBEATS = """
SELECT device_id, ts, uptime_s, metrics FROM heartbeats
WHERE device_id = ANY(%(ids)s) AND ts > %(since)s AND received_at <= %(now)s
ORDER BY device_id, ts
"""

# After this transaction's own writes, and any other monitor's already committed.
_STILL_DEGRADED = """
SELECT DISTINCT device_id FROM incidents
WHERE scope = 'device' AND device_id = ANY(%(ids)s) AND status <> 'resolved'
  AND details ? 'health_rule'
"""

_FLIP = """
UPDATE device_state s SET status = t.new, status_changed_at = %(now)s
FROM unnest(%(ids)s::text[], %(old)s::text[], %(new)s::text[]) AS t(device_id, old, new)
WHERE s.device_id = t.device_id AND s.status = t.old
RETURNING s.device_id, t.old, t.new
"""

# Never backwards: a slower monitor does not make a device due again.
_EVALUATED = """
UPDATE device_state s
SET health_due_after = greatest(s.health_due_after, t.seen + make_interval(secs => %(gap)s))
FROM unnest(%(ids)s::text[], %(seen)s::timestamptz[]) AS t(device_id, seen)
WHERE s.device_id = t.device_id
"""


@dataclass(frozen=True, slots=True)
class DueDevice:
    device_id: str
    status: str
    last_received_at: datetime
    interval_s: int
    # None: the list did not validate, so nothing is decided for this device.
    rules: tuple[Rule, ...] | None


@dataclass(frozen=True, slots=True)
class Decision:
    device_id: str
    kind: str
    verdict: Verdict
    rule: Rule | None = None
    incident_id: int | None = None


@dataclass
class HealthPlan:
    """What one batch decided, before anything is written."""

    now: datetime
    due: list[DueDevice] = field(default_factory=list)
    fire: list[Decision] = field(default_factory=list)
    clear: list[Decision] = field(default_factory=list)
    invalid: int = 0


@dataclass
class HealthResult:
    due: int = 0
    opened: int = 0
    resolved: int = 0
    degraded: int = 0
    recovered: int = 0
    notifications: int = 0
    # Devices whose rule list did not validate (logged once per distinct list).
    invalid: int = 0
    seconds: float = 0.0

    def add(self, other: HealthResult) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


def evaluate_health(
    conn: psycopg.Connection, now: datetime, *, limit: int, min_interval_s: int = 0
) -> HealthResult:
    """Evaluate one batch of due devices at `now` and apply what their rules decide."""
    started = time.perf_counter()
    plan = plan_health(conn, now, limit=limit)
    result = apply_health(conn, plan, min_interval_s=min_interval_s)
    result.seconds = time.perf_counter() - started
    return result


def plan_health(conn: psycopg.Connection, now: datetime, *, limit: int) -> HealthPlan:
    """Read the due devices, their open health incidents and heartbeats; decide (no writes)."""
    plan = HealthPlan(now)
    for device_id, status, received, interval_s, rules_text in conn.execute(_DUE, {"limit": limit}):
        rules = _rules(rules_text, device_id)
        plan.invalid += rules is None
        plan.due.append(DueDevice(device_id, status, received, interval_s, rules))
    if not plan.due:
        return plan
    ids = [d.device_id for d in plan.due]
    open_incidents: dict[str, dict[str, int]] = {}
    for incident_id, device_id, kind in conn.execute(_OPEN_HEALTH, {"ids": ids}):
        open_incidents.setdefault(device_id, {})[kind] = incident_id
    lookback = max((r.lookback_s(d.interval_s) for d in plan.due for r in d.rules or ()), default=0)
    by_id = {d.device_id: d for d in plan.due}
    unheard = set(by_id)
    if lookback:
        # Streamed in device order and judged device by device: the job holds one device's
        # window at a time, not the whole batch's (hours of heartbeats for thousands).
        since = now - timedelta(seconds=lookback)
        rows = conn.cursor().stream(_HEARTBEATS, {"ids": ids, "since": since, "now": now})
        for device_id, group in groupby(rows, key=itemgetter(0)):
            samples = [Sample(ts, uptime_s, metrics) for _, ts, uptime_s, metrics in group]
            _judge(plan, by_id[device_id], samples, open_incidents)
            unheard.discard(device_id)
    for device_id in sorted(unheard):
        _judge(plan, by_id[device_id], [], open_incidents)
    return plan


def _judge(
    plan: HealthPlan,
    device: DueDevice,
    samples: list[Sample],
    open_incidents: dict[str, dict[str, int]],
) -> None:
    """Evaluate one device's rules on its samples and note what fires or clears."""
    if device.rules is None:
        return
    opened = open_incidents.get(device.device_id, {})
    verdicts = evaluate_rules(
        device.rules, samples, open_kinds=set(opened), now=plan.now, interval_s=device.interval_s
    )
    by_name = {r.name: r for r in device.rules}
    for kind, verdict in verdicts.items():
        decision = Decision(device.device_id, kind, verdict, by_name.get(kind), opened.get(kind))
        if verdict.action == "fire":
            plan.fire.append(decision)
        elif verdict.action == "clear":
            plan.clear.append(decision)


def apply_health(
    conn: psycopg.Connection, plan: HealthPlan, *, min_interval_s: int = 0
) -> HealthResult:
    """Write a plan in one transaction; log and count only what this monitor changed."""
    result = HealthResult(due=len(plan.due), invalid=plan.invalid)
    if not plan.due:
        return result
    now = plan.now
    ids = sorted(d.device_id for d in plan.due)
    with conn.transaction():
        opened = _open(conn, plan) if plan.fire else []
        resolved = _resolve(conn, plan) if plan.clear else []
        still = {r[0] for r in conn.execute(_STILL_DEGRADED, {"ids": ids})}
        wanted = {
            d.device_id: "degraded" if d.device_id in still else "online"
            for d in plan.due
            if (d.device_id in still) != (d.status == "degraded")
        }
        flipped = []
        if wanted:
            flip_ids = sorted(wanted)
            flipped = conn.execute(
                _FLIP,
                {
                    "now": now,
                    "ids": flip_ids,
                    "old": ["degraded" if wanted[i] == "online" else "online" for i in flip_ids],
                    "new": [wanted[i] for i in flip_ids],
                },
            ).fetchall()
        seen = {d.device_id: d.last_received_at for d in plan.due}
        conn.execute(
            _EVALUATED,
            {"ids": ids, "seen": [seen[i] for i in ids], "gap": min_interval_s},
        )
        if opened:
            result.notifications = _notify(conn, plan, opened)
    result.opened, result.resolved = len(opened), len(resolved)
    reasons = {(d.device_id, d.kind): d.verdict.reason for d in plan.fire + plan.clear}
    for o in opened:
        log.info("device %s: %s opened (%s)", o.device_id, o.kind, reasons[(o.device_id, o.kind)])
    for r in resolved:
        log.info("device %s: %s resolved (%s)", r.device_id, r.kind, reasons[(r.device_id, r.kind)])
    for device_id, old, new in flipped:
        log.info("device %s: %s -> %s", device_id, old, new)
        if new == "degraded":
            result.degraded += 1
        else:
            result.recovered += 1
    return result


def _open(conn, plan: HealthPlan) -> list[incidents.Opened]:
    problems = [
        DeviceProblem(
            d.device_id, d.kind, d.rule.severity, f"{{device}}: {d.verdict.reason}", _detail(d)
        )
        for d in plan.fire
    ]
    return incidents.open_device_incidents(conn, problems, plan.now)


def _resolve(conn, plan: HealthPlan) -> list[incidents.Resolved]:
    by_id = {d.incident_id: d for d in plan.clear}
    return incidents.resolve(
        conn,
        list(by_id),
        plan.now,
        details={i: _detail(d) for i, d in by_id.items()},
    )


def _detail(decision: Decision) -> dict:
    verdict = decision.verdict
    detail = {"reason": verdict.reason, "value": verdict.value, **verdict.facts}
    if decision.rule is not None:
        detail["health_rule"] = decision.rule.kind
    return detail


def _notify(conn, plan: HealthPlan, opened: list[incidents.Opened]) -> int:
    """Record the owner's message for each incident this monitor opened."""
    fired = {(d.device_id, d.kind): d for d in plan.fire}
    notices = []
    for o in opened:
        decision = fired[(o.device_id, o.kind)]
        template = decision.rule.notice_template
        context = {"since": plan.now.isoformat()}
        context.update(message_fields(decision.rule, decision.verdict))
        if template in HEALTH_WHAT_TO_DO:
            context["what_to_do"] = HEALTH_WHAT_TO_DO[template]
        notices.append(
            to_owner(template, o.severity, o.device_id, incident_id=o.id, context=context)
        )
    return record_notices(conn, notices, plan.now)


def message_fields(rule: Rule, verdict: Verdict) -> dict[str, str]:
    """The template fields a verdict gives: numbers rounded, `*_s` spans as rough text."""
    fields = {"reason": verdict.reason}
    if verdict.value is not None:
        fields["value"] = _number(verdict.value)
    for name, fact in verdict.facts.items():
        if isinstance(fact, str):
            fields[name] = fact
        elif name.endswith("_s"):
            fields[name.removesuffix("_s")] = _about(fact)
        else:
            fields[name] = _number(fact)
    window_s = getattr(rule, "window_s", None)
    if window_s:
        fields["window"] = duration_text(timedelta(seconds=window_s))
    return fields


def _number(value: float) -> str:
    """12.0 -> '12', 52.46 -> '52.5', 0.041 -> '0.04'."""
    if abs(value) >= 1 or value == 0:
        return f"{round(value, 1):g}"
    return f"{value:.1g}"


def _about(seconds: float) -> str:
    """A span rounded to what a person needs: '9 h', '1 d 3 h', '25 min'."""
    step = 3600 if seconds >= 2 * 3600 else 60
    return duration_text(timedelta(seconds=round(seconds / step) * step))


# Invalid rule lists already logged: once per distinct list, not once per heartbeat.
_LOGGED_INVALID: set[str] = set()


def _rules(text: str, device_id: str) -> tuple[Rule, ...] | None:
    """The parsed rule list, or None (logged once per distinct list) if it is invalid."""
    try:
        return parse_rules_text(text)
    except RuleError as exc:
        if text not in _LOGGED_INVALID:
            _LOGGED_INVALID.add(text)
            log.warning("device %s (and any sharing its rules): %s", device_id, exc)
        return None
