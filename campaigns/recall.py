"""A safety recall's work in each runner tick, and what owners are told: the SQL around the
pure decisions of campaigns/remedy.py.

Each tick of a running safety recall, in this order:
  1. devices already on a fixed version are remedied: "no action needed" to an owner not
     yet told of the recall, "recall done" to one who was (a service visit installed it);
  2. every owner of an unremedied device gets the notice at once, whatever wave their device
     is in (waves and windows pace the update, not the news); on every channel when the
     recall is safety-critical;
  3. owners of devices still unremedied get their follow-ups when due.
The update itself goes as an update campaign's does (runner.py); its success and failure
come back through `remedy_succeeded` and `remedy_failed`.
"""

from __future__ import annotations

import logging
from datetime import datetime

from alerts.notices import ROUTED, record_notices, to_owner
from campaigns.links import mint_links
from campaigns.notices import FAILURE_TEXT, NEXT_STEPS, SAFE, UNSAFE
from campaigns.readings import Campaign
from campaigns.remedy import SWEPT, follow_up_due, is_fixed, remedy_text
from campaigns.steps import IN_FLIGHT
from campaigns.store import record_event

log = logging.getLogger(__name__)

# Messages that carry the recall's confirmation link.
WITH_LINK = frozenset({"safety_recall", "recall_follow_up", "recall_remedy_failed"})
# Told at once on every channel when safety-critical; else on the owner's first channel.
URGENT = frozenset({"safety_recall", "recall_follow_up", "recall_remedy_failed"})
REMEDY_FAILED_NEXT = (
    "we will try again in the next update window. If it keeps failing, we will contact you "
    "to book a free service visit."
)


# Steps 1 and 3 read every unremedied device (its version; when it was last told): at
# 100,000 devices that is half a second, which every tick of a runner ticking every few
# seconds would spend. A device fixed by other means (a service visit) is told within this
# long instead, and a follow-up (days apart) goes this much later at most; the first tick
# always sweeps, so "no action needed" goes before any notice.
SWEEP_EVERY_S = 60


def recall_tick(
    conn, campaign: Campaign, now: datetime, public_url: str, *, sweep: bool = True
) -> int:
    """Steps 1 to 3 for a running safety recall (1 and 3 only when `sweep`); return how
    many notices were recorded."""
    with conn.transaction():
        sent = _sweep_fixed(conn, campaign, now, public_url) if sweep else 0
        sent += _first_notices(conn, campaign, now, public_url)
        if sweep:
            sent += _follow_ups(conn, campaign, now, public_url)
    return sent


_FIRMWARES = """
SELECT st.firmware, array_agg(cd.device_id ORDER BY cd.device_id)
FROM campaign_devices cd JOIN device_state st ON st.device_id = cd.device_id
WHERE cd.campaign_id = %s AND cd.state = ANY(%s) AND st.firmware IS NOT NULL
GROUP BY st.firmware
"""


def _sweep_fixed(conn, campaign: Campaign, now: datetime, public_url: str) -> int:
    # A few distinct versions however many devices: the range is judged once per version.
    fixed = {
        device: firmware
        for firmware, devices in conn.execute(_FIRMWARES, (campaign.id, list(SWEPT)))
        if is_fixed(firmware, campaign.fixed_in)
        for device in devices
    }
    if not fixed:
        return 0
    rows = conn.execute(
        "UPDATE campaign_devices SET state = 'remedied', state_at = %(now)s, "
        "remedied_at = %(now)s, finished_at = %(now)s "
        "WHERE campaign_id = %(id)s AND device_id = ANY(%(ids)s) AND state = ANY(%(swept)s) "
        "RETURNING device_id, notified_at IS NULL",
        {"now": now, "id": campaign.id, "ids": sorted(fixed), "swept": list(SWEPT)},
    ).fetchall()
    untold = sorted(d for d, never in rows if never)
    told = sorted(d for d, never in rows if not never)
    versions = {d: {"installed_version": fixed[d]} for d, _ in rows}
    if untold:
        record_event(conn, campaign.id, now, "already_fixed", devices=len(untold))
        log.info("campaign %d: %d devices already have the fix", campaign.id, len(untold))
    if told:
        record_event(conn, campaign.id, now, "remedied_otherwise", devices=len(told))
    return notify_recall(
        conn, campaign, untold, "recall_no_action_needed", now, public_url, versions
    ) + notify_recall(conn, campaign, told, "recall_remedied", now, public_url, versions)


def _first_notices(conn, campaign: Campaign, now: datetime, public_url: str) -> int:
    devices = [
        d
        for (d,) in conn.execute(
            "UPDATE campaign_devices SET notified_at = %s WHERE campaign_id = %s "
            "AND notified_at IS NULL AND remedied_at IS NULL AND state <> 'cancelled' "
            "RETURNING device_id",
            (now, campaign.id),
        )
    ]
    if devices:
        record_event(conn, campaign.id, now, "recall_notified", devices=len(devices))
        log.info(
            "campaign %d: recall notice to the owners of %d devices", campaign.id, len(devices)
        )
    return notify_recall(conn, campaign, sorted(devices), "safety_recall", now, public_url)


def _follow_ups(conn, campaign: Campaign, now: datetime, public_url: str) -> int:
    schedule = campaign.policy.follow_up_after_s
    if not schedule:
        return 0
    # SQL keeps the rows read to those close to due; follow_up_due decides.
    rows = conn.execute(
        "SELECT device_id, notified_at, follow_ups FROM campaign_devices "
        "WHERE campaign_id = %(id)s AND remedied_at IS NULL AND notified_at IS NOT NULL "
        "AND state <> 'cancelled' AND follow_ups < %(n)s "
        "AND notified_at + (%(schedule)s::int[])[follow_ups + 1] * interval '1 second' "
        "<= %(now)s",
        {"id": campaign.id, "n": len(schedule), "schedule": schedule, "now": now},
    ).fetchall()
    due = [(d, sent, at) for d, at, sent in rows if follow_up_due(at, sent, schedule, now)]
    if not due:
        return 0
    conn.execute(
        "UPDATE campaign_devices SET follow_ups = follow_ups + 1, followed_up_at = %s "
        "WHERE campaign_id = %s AND device_id = ANY(%s)",
        (now, campaign.id, [d for d, _, _ in due]),
    )
    extra = {
        d: {"follow_up_number": sent + 1, "notified_at": at.isoformat()} for d, sent, at in due
    }
    for number in sorted({sent + 1 for _, sent, _ in due}):
        devices = [d for d, sent, _ in due if sent + 1 == number]
        # On the campaign's timeline, each follow-up with how many it went to.
        record_event(conn, campaign.id, now, "follow_up", number=number, devices=len(devices))
        log.info(
            "campaign %d: follow-up %d to the owners of %d devices",
            campaign.id,
            number,
            len(devices),
        )
    return notify_recall(conn, campaign, sorted(extra), "recall_follow_up", now, public_url, extra)


def remedy_succeeded(conn, campaign: Campaign, device: str, now: datetime, public_url: str):
    """The update installed the fix: the recall closes for this device; its owner is told."""
    conn.execute(
        "UPDATE campaign_devices SET remedied_at = %s WHERE campaign_id = %s AND device_id = %s",
        (now, campaign.id, device),
    )
    extra = {device: {"installed_version": campaign.target_version}}
    return notify_recall(conn, campaign, [device], "recall_remedied", now, public_url, extra)


def remedy_failed(conn, campaign: Campaign, device: str, reason: str, now, public_url: str):
    """The update failed for good: the owner hears what went wrong and what happens next."""
    extra = {
        device: {
            "failure_text": FAILURE_TEXT.get(reason, reason.replace("_", " ")),
            "next_steps": NEXT_STEPS.get(reason, REMEDY_FAILED_NEXT),
        }
    }
    return notify_recall(conn, campaign, [device], "recall_remedy_failed", now, public_url, extra)


def notify_recall(
    conn,
    campaign: Campaign,
    device_ids: list[str],
    template: str,
    now: datetime,
    public_url: str,
    per_device: dict[str, dict] | None = None,
) -> int:
    """Record one notice of a safety recall per device; return how many."""
    if not device_ids:
        return 0
    tokens = mint_links(conn, campaign.id, device_ids, now) if template in WITH_LINK else {}
    zones = dict(conn.execute("SELECT id, timezone FROM devices WHERE id = ANY(%s)", (device_ids,)))
    urgent = template in URGENT
    severity = ("critical" if campaign.safety_critical else "warning") if urgent else "info"
    channels = ROUTED if campaign.safety_critical or not urgent else "position:0"
    notices = [
        to_owner(
            template,
            severity,
            device,
            campaign_id=campaign.id,
            channels=channels,
            context={
                **recall_context(
                    campaign, zones.get(device, "UTC"), tokens.get(device), public_url
                ),
                **(per_device or {}).get(device, {}),
            },
        )
        for device in device_ids
    ]
    return record_notices(conn, notices, now)


def recall_context(campaign: Campaign, timezone: str, token: str | None, public_url: str) -> dict:
    """The template fields a safety recall adds to the device's own (the router adds those)."""
    safety = SAFE if campaign.safe_to_use else UNSAFE
    if campaign.avoid:
        safety += f" Avoid meanwhile: {campaign.avoid}."
    full, short = remedy_text(
        campaign.remedy or "service_visit",
        target_version=campaign.target_version,
        window_start=campaign.window_start,
        window_end=campaign.window_end,
        starts_at=campaign.starts_at,
        timezone=timezone,
        instructions=campaign.instructions or "",
    )
    context = {
        "campaign_id": campaign.id,
        "campaign_name": campaign.name,
        "target_version": campaign.target_version or "",
        "safety_short": SAFE if campaign.safe_to_use else UNSAFE,
        "safety_text": safety,
        "remedy_text": full,
        "remedy_short": short,
        "what_to_do": campaign.instructions or "",
    }
    if token is not None:
        context["ack_url"] = f"{public_url.rstrip('/')}/recall/{token}"
    return context


def owed_follow_ups(conn, campaign: Campaign) -> tuple[int, int]:
    """(devices in flight, unremedied devices still owed a follow-up)."""
    return conn.execute(
        "SELECT count(*) FILTER (WHERE state = ANY(%(flight)s)), "
        "count(*) FILTER (WHERE remedied_at IS NULL AND state <> 'cancelled' "
        "AND follow_ups < %(n)s) FROM campaign_devices WHERE campaign_id = %(id)s",
        {
            "flight": list(IN_FLIGHT),
            "n": len(campaign.policy.follow_up_after_s),
            "id": campaign.id,
        },
    ).fetchone()
