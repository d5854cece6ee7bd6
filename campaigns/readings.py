"""What the runner reads of a campaign: its row, its opened waves, and the health gate's
figures (updated devices against the rest), each a single query."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime

from campaigns.gates import Health
from campaigns.policy import Policy
from campaigns.steps import IN_FLIGHT
from campaigns.waves import CampaignView, WaveCounts

_FINAL = (
    "succeeded", "failed", "skipped", "cancelled", "notified", "acknowledged", "remedied",
)  # fmt: skip
# Incidents that are not degraded health: the gate counts offline on its own.
_HEALTH_KINDS_EXCLUDED = ("offline", "never_seen", "unstable_connection")


@dataclass
class Campaign:
    id: int
    name: str
    kind: str
    status: str
    target_version: str | None
    artifact_url: str | None
    artifact_sha256: str | None
    waves: list[float]
    soak_s: int
    window_start: object
    window_end: object
    starts_at: datetime
    current_wave: int
    wave_opened_at: datetime | None
    policy: Policy
    safe_to_use: bool | None
    instructions: str | None
    remedy: str | None = None
    fixed_in: str | None = None
    safety_critical: bool | None = None
    avoid: str | None = None

    @property
    def over_the_air(self) -> bool:
        """Commands devices to update: an update, or a safety recall remedied by one."""
        return self.kind == "ota_update" or self.remedy == "ota_update"


CAMPAIGN_COLUMNS = """
SELECT id, name, kind, status, target_version, artifact_url, artifact_sha256, waves, soak_s,
       window_start, window_end, starts_at, current_wave, wave_opened_at, policy, safe_to_use,
       instructions, remedy, fixed_in, safety_critical, avoid
FROM campaigns
"""
ACTIVE_CAMPAIGNS = (
    CAMPAIGN_COLUMNS
    + """
WHERE status IN ('scheduled', 'running', 'paused', 'halted') ORDER BY id
"""
)
CAMPAIGN_BY_ID = CAMPAIGN_COLUMNS + "WHERE id = %s"


def campaign_from_row(row) -> Campaign:
    values = list(row)
    values[14] = Policy(**values[14])
    return Campaign(*values)


def view_of(c: Campaign) -> CampaignView:
    return CampaignView(
        c.status, c.starts_at, c.current_wave, len(c.waves), c.wave_opened_at, c.soak_s
    )


def wave_counts(conn, campaign: Campaign) -> WaveCounts:
    online = "st.status IN ('online', 'degraded')"
    if not campaign.over_the_air:
        online = "true"  # a notice goes to the owner, whatever the device is doing
    row = conn.execute(
        f"SELECT count(*), count(*) FILTER (WHERE cd.state = 'pending' AND {online}), "
        f"count(*) FILTER (WHERE cd.state = 'pending' AND NOT coalesce({online}, false)), "
        "count(*) FILTER (WHERE cd.state = ANY(%(flight)s)), "
        "count(*) FILTER (WHERE cd.state = ANY(%(final)s)), max(cd.finished_at) "
        "FROM campaign_devices cd LEFT JOIN device_state st ON st.device_id = cd.device_id "
        "WHERE cd.campaign_id = %(id)s AND cd.wave <= %(wave)s",
        {
            "id": campaign.id,
            "wave": campaign.current_wave,
            "flight": list(IN_FLIGHT),
            "final": list(_FINAL),
        },
    ).fetchone()
    return WaveCounts(*row)


def awaiting_ack(conn, campaign: Campaign) -> bool:
    return conn.execute(
        "SELECT EXISTS (SELECT 1 FROM campaign_devices WHERE campaign_id = %s "
        "AND state = 'notified')",
        (campaign.id,),
    ).fetchone()[0]


_HEALTH = """
SELECT count(*) FILTER (WHERE cd.attempt > 0),
       count(*) FILTER (WHERE cd.state = 'failed'),
       count(*) FILTER (WHERE cd.state = 'succeeded' AND st.status = 'offline'),
       count(*) FILTER (WHERE cd.state = 'succeeded' AND EXISTS (
           SELECT 1 FROM incidents i WHERE i.device_id = cd.device_id AND i.scope = 'device'
             AND i.opened_at >= cd.finished_at AND i.kind <> ALL(%(excluded)s))),
       count(*) FILTER (WHERE cd.attempt = 0),
       count(*) FILTER (WHERE cd.attempt = 0 AND st.status = 'offline'),
       count(*) FILTER (WHERE cd.attempt = 0 AND EXISTS (
           SELECT 1 FROM incidents i WHERE i.device_id = cd.device_id AND i.scope = 'device'
             AND i.opened_at >= %(started)s AND i.kind <> ALL(%(excluded)s)))
FROM campaign_devices cd LEFT JOIN device_state st ON st.device_id = cd.device_id
WHERE cd.campaign_id = %(id)s
"""


# Release health's device-days (releases/rollup.py) of the campaign's devices: the updated
# ones on the target version from the day they finished, the not-yet-updated ones from the
# campaign's first day (their own firmware, before any command).
_REBOOTS = """
SELECT count(*) FILTER (WHERE updated), coalesce(sum(reboots) FILTER (WHERE updated), 0),
       count(*) FILTER (WHERE NOT updated), coalesce(sum(reboots) FILTER (WHERE NOT updated), 0)
FROM (
    SELECT r.reboots, cd.state = 'succeeded' AS updated
    FROM campaign_devices cd
    JOIN release_device_days r ON r.device_id = cd.device_id
    WHERE cd.campaign_id = %(id)s
      AND ((cd.state = 'succeeded' AND r.firmware = %(target)s
            AND r.day >= (cd.finished_at AT TIME ZONE 'UTC')::date)
        OR (cd.attempt = 0 AND r.day >= %(first_day)s))
) AS r
"""


def health_of(conn, campaign: Campaign) -> tuple[Health, Health]:
    """(updated devices, the rest) for the health gate."""
    row = conn.execute(
        _HEALTH,
        {
            "id": campaign.id,
            "started": campaign.starts_at,
            "excluded": list(_HEALTH_KINDS_EXCLUDED),
        },
    ).fetchone()
    updated, rest = Health(row[0], row[1], row[2], row[3]), Health(row[4], 0, row[5], row[6])
    if campaign.policy.max_reboot_ratio is None:
        return updated, rest
    vitals = conn.execute(
        _REBOOTS,
        {
            "id": campaign.id,
            "first_day": campaign.starts_at.astimezone(UTC).date(),
            "target": campaign.target_version,
        },
    ).fetchone()
    return (
        replace(updated, device_days=vitals[0], reboots=vitals[1]),
        replace(rest, device_days=vitals[2], reboots=vitals[3]),
    )
