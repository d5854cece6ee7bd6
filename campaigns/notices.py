"""What a campaign tells owners: notices before, after success and on failure, and recalls.

Recorded as notices (alerts/notices.py) and routed to the owner's channels like incident
alerts; a recall goes to one channel at a time (the next one when it is not acknowledged).
"""

from __future__ import annotations

from datetime import datetime

from alerts.notices import ROUTED, record_notices, to_owner
from campaigns.links import mint_links

SAFE = "It is safe to keep using it meanwhile."
UNSAFE = "Stop using it until this is done."
SEVERITY = {"recall_notice": "critical", "recall_repeat": "critical", "ota_failed": "warning"}

FAILURE_TEXT = {
    "never_came_back": "it restarted to install the update and has not come back since",
    "rolled_back": "it restarted on its previous firmware",
    "download_failed": "it could not download the update",
    "checksum_mismatch": "the downloaded update was damaged",
    "install_failed": "the installation failed",
    "low_battery": "its battery was too low to update safely",
    "busy": "it was busy",
}
NEXT_STEPS = {
    "never_came_back": "unplug it for ten seconds and plug it back in. If it does not come "
    "back, contact support: we will replace it free of charge.",
}
DEFAULT_NEXT_STEPS = (
    "nothing for now: it keeps working on its current firmware, and we will try again later "
    "or contact you."
)


def notify_owners(
    conn,
    campaign,
    device_ids: list[str],
    template: str,
    now: datetime,
    *,
    public_url: str,
    reason: str | None = None,
    channel: int | None = None,
) -> int:
    """Record a campaign notice to each device's owner; return how many.

    `channel` picks one of the owner's channels by position (a recall's first, then next).
    """
    if not device_ids:
        return 0
    tokens = {}
    if campaign.kind == "recall_notice":
        # Each notice its own link; only the tokens' hashes are kept (campaigns/links.py).
        tokens = mint_links(conn, campaign.id, sorted(device_ids), now)
    notices = [
        to_owner(
            template,
            SEVERITY.get(template, "info"),
            device_id,
            campaign_id=campaign.id,
            context=campaign_context(campaign, tokens.get(device_id), reason, now, public_url),
            channels=ROUTED if channel is None else f"position:{channel}",
        )
        for device_id in sorted(device_ids)
    ]
    return record_notices(conn, notices, now)


def campaign_context(campaign, token, reason, now: datetime, public_url: str) -> dict:
    """The template fields a campaign adds to the device's own (the router adds those)."""
    context = {
        "campaign_id": campaign.id,
        "campaign_name": campaign.name,
        "target_version": campaign.target_version or "",
    }
    if campaign.window_start is not None:
        context["when_text"] = (
            f"between {campaign.window_start:%H:%M} and {campaign.window_end:%H:%M} your "
            "local time, in the next days"
        )
    else:
        context["when_text"] = "in the next hours"
    if reason is not None:
        context["failure_text"] = FAILURE_TEXT.get(reason, reason.replace("_", " "))
        context["next_steps"] = NEXT_STEPS.get(reason, DEFAULT_NEXT_STEPS)
        context["what_to_do"] = context["next_steps"]
    if campaign.kind == "recall_notice":
        context["safety_text"] = SAFE if campaign.safe_to_use else UNSAFE
        context["instructions"] = campaign.instructions or ""
        context["what_to_do"] = context["instructions"]
        context["ack_url"] = f"{public_url.rstrip('/')}/recall/{token}"
        # Shown to the owner in their own time as `notified_local` (alerts/router.py).
        context["notified_at"] = now.isoformat()
    return context
