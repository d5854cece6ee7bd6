"""A campaign's limits: per-device step timeouts and retries, the health gate, recall repeats
and a safety recall's follow-ups."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Policy(BaseModel):
    """Stored with each campaign (`campaigns.policy`); every field has a sensible default."""

    model_config = ConfigDict(extra="forbid")

    # A device must move from one step to the next (sent, accepted, downloading,
    # installing) within this, or the attempt has timed out.
    step_timeout_s: int = Field(default=1800, gt=0, le=7 * 86400)
    # After `rebooting` it must come back on the new firmware within this.
    reboot_timeout_s: int = Field(default=1800, gt=0, le=7 * 86400)
    # Attempts per device, the first included, before it counts as failed.
    max_attempts: int = Field(default=2, ge=1, le=10)
    # The health gate: updated devices against the rest of the campaign's devices.
    max_failure_pct: float = Field(default=10.0, ge=0, le=100)
    max_offline_pct: float = Field(default=5.0, ge=0, le=100)
    max_degraded_pct: float = Field(default=5.0, ge=0, le=100)
    # Unexpected reboots of updated devices against the not-yet-updated ones (release
    # health's rollups): halt when the rate ratio's 95% interval lies above this. None: off.
    max_reboot_ratio: float | None = Field(default=None, gt=1, le=100)
    # A gate needs at least this many bad devices to halt, so one unlucky canary does not.
    min_devices: int = Field(default=3, ge=1, le=100_000)
    # Recall notices: repeated on the owner's next channel when not acknowledged by then.
    repeat_after_s: int = Field(default=2 * 86400, gt=0, le=90 * 86400)
    # Safety recalls: follow-ups to owners whose device is not remedied yet, at these times
    # after the first notice (some markets' law asks for them while completion is low).
    follow_up_after_s: list[int] = Field(
        default_factory=lambda: [14 * 86400, 30 * 86400, 90 * 86400], max_length=12
    )

    @field_validator("follow_up_after_s")
    @classmethod
    def _increasing(cls, values: list[int]) -> list[int]:
        if any(v <= 0 or v > 2 * 365 * 86400 for v in values) or values != sorted(set(values)):
            raise ValueError("follow-ups are increasing positive delays, within two years")
        return values
