"""The weekly release-health digest: one staff notice a week, through notices -> router.

    digest_due(now, last_week, weekday, hour)  pure: the week owed a digest, if any
    compose_digest(by_model, ...)             pure: severity and the template's fields
    send_weekly_digest(conn, now, ...)        the edge: claim the week, read, record

The week is claimed by its row in release_digests (a primary key), so of several monitors
exactly one sends it, and a restart does not send it again.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta

import psycopg

from alerts.notices import record_notices, to_staff
from releases.health import VersionHealth, read_daily, release_health

log = logging.getLogger(__name__)

DIGEST_DAYS = 7
# Versions per model in the digest (newest first): older ones are in the route.
VERSIONS_PER_MODEL = 3


def digest_due(now: datetime, last_week: date | None, weekday: int, hour: int) -> date | None:
    """The Monday of the week owed a digest at `now` (UTC), or None: due from `weekday`
    (ISO, 1 = Monday) at `hour` UTC, once a week."""
    today = now.date()
    week = today - timedelta(days=today.weekday())
    due = datetime(week.year, week.month, week.day, hour, tzinfo=now.tzinfo) + timedelta(
        days=weekday - 1
    )
    if now < due or last_week == week:
        return None
    return week


def digest_days(now: datetime) -> tuple[date, date]:
    """The digest's window: the DIGEST_DAYS full UTC days before today."""
    last = now.date() - timedelta(days=1)
    return last - timedelta(days=DIGEST_DAYS - 1), last


def _ratio_text(vital) -> str:
    r = vital.ratio
    high = f"{r.high:.2f}" if r.high is not None else "inf"
    estimate = f"x{r.estimate:.2f}" if r.estimate is not None else "new"
    return f"{vital.label} {estimate} ({r.low:.2f}-{high}) {vital.verdict}"


def compose_digest(
    by_model: dict[str, list[VersionHealth]], first: date, last: date
) -> tuple[str, dict]:
    """The notice's severity (warning when a version is worse than its baseline) and fields."""
    lines, worse, better, unclear = [], 0, 0, 0
    for model in sorted(by_model):
        for version in by_model[model][:VERSIONS_PER_MODEL]:
            head = f"{model} {version.firmware}"
            if version.baseline is None:
                lines.append(f"{head}: {version.device_days} device-days, no baseline")
                continue
            head += f" vs {version.baseline} ({version.device_days} device-days)"
            clear = [v for v in version.vitals if v.verdict in ("worse", "better")]
            worse += sum(v.verdict == "worse" for v in clear)
            better += sum(v.verdict == "better" for v in clear)
            unclear += sum(v.verdict == "unclear" for v in version.vitals)
            said = "; ".join(_ratio_text(v) for v in clear) or "no clear difference"
            lines.append(f"{head}: {said}")
    summary = f"{worse} vitals worse, {better} better, {unclear} unclear"
    context = {
        "week_of": f"{first:%d %b} - {last:%d %b %Y}",
        "release_summary": summary if lines else "no firmware data in the week",
        "release_report": "\n".join(lines) or "No device reported in the week.",
    }
    return ("warning" if worse else "info"), context


_LAST = "SELECT max(week_start) FROM release_digests"
_CLAIM = """
INSERT INTO release_digests (week_start, sent_at) VALUES (%s, %s)
ON CONFLICT (week_start) DO NOTHING
"""
_MODELS = "SELECT DISTINCT model_id FROM release_daily WHERE day BETWEEN %s AND %s"


def send_weekly_digest(
    conn: psycopg.Connection, now: datetime, weekday: int, hour: int
) -> date | None:
    """Record the week's digest notice if it is due and not yet sent; the week sent."""
    last_week = conn.execute(_LAST).fetchone()[0]
    week = digest_due(now, last_week, weekday, hour)
    if week is None:
        return None
    with conn.transaction():
        if conn.execute(_CLAIM, (week, now)).rowcount != 1:
            return None  # another monitor sent it
        first, last = digest_days(now)
        models = [m for (m,) in conn.execute(_MODELS, (first, last))]
        by_model = {m: release_health(read_daily(conn, m, first, last)) for m in models}
        severity, context = compose_digest(by_model, first, last)
        record_notices(conn, [to_staff("release_health_digest", severity, context=context)], now)
    log.info("release health digest for the week of %s: %s", week, context["release_summary"])
    return week
