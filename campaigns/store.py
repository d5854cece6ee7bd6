"""Creating campaigns and reading their progress: the SQL around the pure decisions."""

from __future__ import annotations

import json
import logging
from datetime import datetime, time

import psycopg
from pydantic import BaseModel, ConfigDict, Field, model_validator

import incidents
from campaigns.policy import Policy
from campaigns.targeting import Target, to_specifier
from campaigns.waves import assign_waves

log = logging.getLogger(__name__)

DEFAULT_WAVES = {"ota_update": [1, 10, 50, 100], "recall_notice": [100], "service_visit": [100]}
_NO_NUL = r"^[^\x00]*$"


class CampaignCreate(BaseModel):
    """A new campaign as the firmware team describes it (API body and CLI file alike)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=200, pattern=_NO_NUL)
    kind: str = Field(pattern=r"^(recall_notice|ota_update|safety_recall)$")
    target: Target
    target_version: str | None = Field(default=None, max_length=64, pattern=r"^[0-9A-Za-z.+-]+$")
    artifact_url: str | None = Field(default=None, max_length=2000, pattern=r"^https?://\S+$")
    artifact_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    waves: list[float] | None = Field(default=None, min_length=1, max_length=20)
    soak_s: int = Field(default=3600, ge=0, le=30 * 86400)
    window_start: time | None = None
    window_end: time | None = None
    starts_at: datetime | None = None
    policy: Policy = Field(default_factory=Policy)
    safe_to_use: bool | None = None
    instructions: str | None = Field(default=None, max_length=2000, pattern=_NO_NUL)
    # A safety recall (campaigns/remedy.py): its remedy, the firmware range that has the fix,
    # whether it is safety-critical (every channel at once) and what to avoid meanwhile.
    remedy: str | None = Field(default=None, pattern=r"^(ota_update|service_visit)$")
    fixed_in: str | None = Field(default=None, max_length=200)
    safety_critical: bool | None = None
    avoid: str | None = Field(default=None, max_length=500, pattern=_NO_NUL)

    @model_validator(mode="after")
    def _consistent(self) -> CampaignCreate:
        over_the_air = self.kind == "ota_update" or self.remedy == "ota_update"
        if over_the_air and not (
            self.target_version and self.artifact_url and self.artifact_sha256
        ):
            raise ValueError("an update needs target_version, artifact_url and artifact_sha256")
        if self.kind in ("recall_notice", "safety_recall") and (
            self.safe_to_use is None or not self.instructions
        ):
            raise ValueError("a recall notice needs safe_to_use and instructions")
        if self.kind == "safety_recall":
            if self.remedy is None or self.safety_critical is None:
                raise ValueError("a safety recall needs its remedy and safety_critical")
            if self.fixed_in is None and self.target_version:
                self.fixed_in = f">={self.target_version}"
            if self.fixed_in is None:
                raise ValueError("a safety recall needs fixed_in: the versions with the fix")
            to_specifier(self.fixed_in)
        elif self.remedy or self.fixed_in or self.safety_critical is not None or self.avoid:
            raise ValueError("remedy, fixed_in, safety_critical and avoid are a safety recall's")
        if (self.window_start is None) != (self.window_end is None):
            raise ValueError("give both window_start and window_end, or neither")
        if self.window_start is not None and self.window_start == self.window_end:
            raise ValueError("the maintenance window must not be empty")
        if self.starts_at is not None and self.starts_at.tzinfo is None:
            raise ValueError("starts_at needs a UTC offset, e.g. 2026-12-01T02:00:00Z")
        waves = self.waves or default_waves(self.kind, self.remedy)
        try:
            assign_waves(0, [], waves)
        except ValueError as exc:
            raise ValueError(str(exc)) from None
        return self


def default_waves(kind: str, remedy: str | None) -> list[float]:
    """A safety recall rolls out its update in waves as an update does; a visit has one."""
    return DEFAULT_WAVES[remedy if kind == "safety_recall" else kind]


_CANDIDATES = """
SELECT d.id, coalesce(st.firmware, d.firmware)
FROM devices d LEFT JOIN device_state st ON st.device_id = d.id
WHERE {where}
ORDER BY d.id
"""

_EVENT = "INSERT INTO campaign_events (campaign_id, at, kind, detail) VALUES (%s, %s, %s, %s)"


def record_event(conn: psycopg.Connection, campaign_id: int, at: datetime, kind: str, **detail):
    """Add a line to the campaign's timeline."""
    conn.execute(_EVENT, (campaign_id, at, kind, json.dumps(detail, default=str)))


def create_campaign(
    conn: psycopg.Connection, spec: CampaignCreate, *, created_by: str, now: datetime
) -> tuple[int, int]:
    """Store a campaign and its devices with their waves; return (id, devices targeted)."""
    where, params = spec.target.where()
    candidates = conn.execute(_CANDIDATES.format(where=where), params).fetchall()
    chosen = [(d, fw) for d, fw in candidates if spec.target.firmware_matches(fw)]
    if spec.kind == "ota_update":
        # A device already on the target version has nothing to install.
        chosen = [(d, fw) for d, fw in chosen if fw != spec.target_version]
    waves = spec.waves or default_waves(spec.kind, spec.remedy)
    with conn.transaction():
        values = {
            "name": spec.name,
            "kind": spec.kind,
            "target": spec.target.model_dump_json(exclude_defaults=True),
            "target_version": spec.target_version,
            "artifact_url": spec.artifact_url,
            "artifact_sha256": spec.artifact_sha256,
            "waves": json.dumps(waves),
            "soak_s": spec.soak_s,
            "window_start": spec.window_start,
            "window_end": spec.window_end,
            "starts_at": spec.starts_at or now,
            "policy": spec.policy.model_dump_json(),
            "safe_to_use": spec.safe_to_use,
            "instructions": spec.instructions,
            "created_by": created_by,
        }
        if spec.kind == "safety_recall":
            # Only a safety recall's own columns (migration 031) are named for one.
            values |= {
                "remedy": spec.remedy,
                "fixed_in": spec.fixed_in,
                "safety_critical": spec.safety_critical,
                "avoid": spec.avoid,
            }
        campaign_id = conn.execute(
            f"INSERT INTO campaigns ({', '.join(values)}) "
            f"VALUES ({', '.join(['%s'] * len(values))}) RETURNING id",
            tuple(values.values()),
        ).fetchone()[0]
        wave_of = assign_waves(campaign_id, [d for d, _ in chosen], waves)
        # A recall's link tokens are made with each notice (campaigns/links.py), not here.
        with conn.cursor().copy(
            "COPY campaign_devices (campaign_id, device_id, wave, from_version) FROM STDIN"
        ) as copy:
            for device, fw in chosen:
                copy.write_row((campaign_id, device, wave_of[device], fw))
        record_event(
            conn, campaign_id, now, "created", by=created_by, devices=len(chosen), waves=waves
        )
    log.info(
        "campaign %d (%s) created by %s: %d devices in %d waves",
        campaign_id,
        spec.kind,
        created_by,
        len(chosen),
        len(waves),
    )
    return campaign_id, len(chosen)


_STATE_COUNTS = """
SELECT wave, state, count(*) FROM campaign_devices WHERE campaign_id = %s GROUP BY 1, 2
"""
_FAILURES = """
SELECT coalesce(failure_reason, 'unknown'), count(*) FROM campaign_devices
WHERE campaign_id = %s AND state = 'failed' GROUP BY 1 ORDER BY 2 DESC
"""


def campaign_progress(conn: psycopg.Connection, campaign_id: int) -> dict:
    """Counts per state and per wave, and failures by reason."""
    by_state: dict[str, int] = {}
    by_wave: dict[int, dict[str, int]] = {}
    for wave, state, n in conn.execute(_STATE_COUNTS, (campaign_id,)):
        by_state[state] = by_state.get(state, 0) + n
        by_wave.setdefault(wave, {})[state] = n
    failures = dict(conn.execute(_FAILURES, (campaign_id,)).fetchall())
    return {
        "devices": sum(by_state.values()),
        "by_state": by_state,
        "by_wave": {str(k): by_wave[k] for k in sorted(by_wave)},
        "failures": failures,
    }


# Moves a person may make, and from which statuses.
MOVES = {
    "pause": ({"scheduled", "running"}, "paused"),
    "resume": ({"paused", "halted"}, "running"),
    "cancel": ({"scheduled", "running", "paused", "halted"}, "cancelled"),
}


def move_campaign(
    conn: psycopg.Connection, campaign_id: int, move: str, *, by: str, now: datetime
) -> str | None:
    """Pause, resume or cancel; the new status, or None if the campaign cannot make that move."""
    allowed, status = MOVES[move]
    with conn.transaction():
        row = conn.execute(
            "SELECT status, current_wave FROM campaigns WHERE id = %s FOR UPDATE", (campaign_id,)
        ).fetchone()
        if row is None or row[0] not in allowed:
            return None
        if move == "resume" and row[1] == 0:
            status = "scheduled"  # paused before it started: it starts at its time
        conn.execute(
            "UPDATE campaigns SET status = %s, halted_reason = CASE WHEN %s = 'running' "
            "THEN NULL ELSE halted_reason END, finished_at = CASE WHEN %s = 'cancelled' "
            "THEN %s END WHERE id = %s",
            (status, status, status, now, campaign_id),
        )
        if status == "cancelled":
            conn.execute(
                "UPDATE campaign_devices SET state = 'cancelled', state_at = %s "
                "WHERE campaign_id = %s AND state IN ('pending', 'notified')",
                (now, campaign_id),
            )
        if move in ("resume", "cancel"):
            # A halt opened an incident for the team; a person deciding closes it.
            halted = incidents.find_open_group(conn, f"campaign:{campaign_id}", "campaign_halted")
            incidents.resolve(
                conn, halted, now, by=by, details={i: {"campaign": move} for i in halted}
            )
        record_event(conn, campaign_id, now, move, by=by)
    log.info("campaign %d: %s by %s", campaign_id, move, by)
    return status
