"""One device's update, step by step: what its reports and its heartbeats mean, and timeouts.

    pending ─send─► sent ─► accepted ─► downloading ─► installing ─► rebooting ─► succeeded
                      │         │             │              │            │
                      └─────────┴── timeout or failed report ┴────────────┴──► retry or failed

Success counts only when the device is back and its heartbeat reports the new firmware.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from campaigns.policy import Policy

IN_FLIGHT = ("sent", "accepted", "downloading", "installing", "rebooting")
# The order of the reported steps: a late or repeated report never moves a device back.
STEP_ORDER = {state: i for i, state in enumerate(IN_FLIGHT)}
# Failures another attempt may mend; the rest say the firmware or the device is at fault.
RETRYABLE = frozenset({"download_failed", "busy", "low_battery", "checksum_mismatch"})


@dataclass(frozen=True)
class Progress:
    state: str
    state_at: datetime | None
    attempt: int
    sent_at: datetime | None


@dataclass(frozen=True)
class Observed:
    """What the device's own heartbeats say (device_state)."""

    firmware: str | None
    last_seen_at: datetime | None
    last_uptime_s: int | None


@dataclass(frozen=True)
class Decision:
    # `pending` (retry), a step, `succeeded` or `failed`.
    state: str
    reason: str | None = None


def apply_report(progress: Progress, report_state: str, reason: str | None, policy: Policy):
    """What a report (`accepted`, ..., `failed`) from the device does, or None to ignore it."""
    if progress.state not in IN_FLIGHT:
        return None
    if report_state == "failed":
        reason = reason or "unknown"
        if reason in RETRYABLE and progress.attempt < policy.max_attempts:
            return Decision("pending", reason)
        return Decision("failed", reason)
    if report_state in STEP_ORDER and STEP_ORDER[report_state] > STEP_ORDER[progress.state]:
        return Decision(report_state)
    return None


def came_back(progress: Progress, observed: Observed) -> bool:
    """Heard from since `rebooting`, with an uptime that started after it: it has restarted."""
    if progress.state_at is None or observed.last_seen_at is None:
        return False
    if observed.last_seen_at <= progress.state_at:
        return False
    since = (observed.last_seen_at - progress.state_at).total_seconds()
    return observed.last_uptime_s is None or observed.last_uptime_s <= since + 1


def check(
    progress: Progress, observed: Observed, target_version: str, now: datetime, policy: Policy
) -> Decision | None:
    """A device in flight: succeeded, failed, to retry, or nothing yet."""
    if progress.state not in IN_FLIGHT:
        return None
    new_firmware = observed.firmware == target_version
    heard_since_sent = (
        observed.last_seen_at is not None
        and progress.sent_at is not None
        and observed.last_seen_at > progress.sent_at
    )
    if new_firmware and heard_since_sent:
        return Decision("succeeded")
    waited = now - (progress.state_at or now)
    if progress.state == "rebooting":
        if came_back(progress, observed):
            return Decision("failed", "rolled_back")
        if waited > timedelta(seconds=policy.reboot_timeout_s):
            return Decision("failed", "never_came_back")
        return None
    if waited > timedelta(seconds=policy.step_timeout_s):
        reason = f"timeout_{progress.state}"
        if progress.attempt < policy.max_attempts:
            return Decision("pending", reason)
        return Decision("failed", reason)
    return None
