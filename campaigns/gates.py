"""The health gate: do updated devices fare worse than the rest of the campaign's devices?"""

from __future__ import annotations

from dataclasses import dataclass

from campaigns.policy import Policy
from releases.stats import rate_ratio


@dataclass(frozen=True)
class Health:
    """A group of devices and how many of them are in trouble."""

    devices: int = 0
    failed: int = 0
    offline: int = 0
    # With a degraded-health incident opened since the campaign started.
    degraded: int = 0
    # From the release rollups (read only when the policy has max_reboot_ratio): device-days
    # observed since the update (the rest: since the campaign started), and unexpected
    # reboots in them.
    device_days: int = 0
    reboots: int = 0


@dataclass(frozen=True)
class GateVerdict:
    halt: bool
    reason: str | None = None


def _pct(part: int, whole: int) -> float:
    return 100.0 * part / whole if whole else 0.0


def evaluate_gate(updated: Health, rest: Health, policy: Policy) -> GateVerdict:
    """Halt when the updated devices cross a threshold with at least `min_devices` of them.

    Failures are judged on their own; offline and degraded shares against the rest's, so a
    bad night for the whole fleet does not halt a campaign that is not to blame.
    """
    if _pct(updated.failed, updated.devices) > policy.max_failure_pct and (
        updated.failed >= policy.min_devices
    ):
        return GateVerdict(
            True,
            f"{updated.failed} of {updated.devices} updated devices failed "
            f"({_pct(updated.failed, updated.devices):.0f} %, limit {policy.max_failure_pct:g} %)",
        )
    for name, bad, rest_bad, limit in (
        ("offline", updated.offline, rest.offline, policy.max_offline_pct),
        ("degraded", updated.degraded, rest.degraded, policy.max_degraded_pct),
    ):
        share, baseline = _pct(bad, updated.devices), _pct(rest_bad, rest.devices)
        if bad >= policy.min_devices and share - baseline > limit:
            return GateVerdict(
                True,
                f"{bad} of {updated.devices} updated devices {name} ({share:.0f} %) against "
                f"{baseline:.0f} % of the others (limit {limit:g} points)",
            )
    return _reboot_gate(updated, rest, policy)


def _reboot_gate(updated: Health, rest: Health, policy: Policy) -> GateVerdict:
    """Halt when updated devices reboot more often than the others by more than
    `max_reboot_ratio`, surely: the rate ratio's 95% interval lies above it (release health's
    statistics), so a canary with two reboots against one does not halt."""
    if policy.max_reboot_ratio is None or updated.reboots < policy.min_devices:
        return GateVerdict(False)
    ratio = rate_ratio(updated.reboots, updated.device_days, rest.reboots, rest.device_days)
    if ratio is None or ratio.low <= policy.max_reboot_ratio:
        return GateVerdict(False)
    times = f"x{ratio.estimate:.1f}" if ratio.estimate is not None else "with none in the others"
    return GateVerdict(
        True,
        f"updated devices reboot {times} as often as the others ({updated.reboots} in "
        f"{updated.device_days} device-days against {rest.reboots} in {rest.device_days}; "
        f"95% interval from x{ratio.low:.1f}, limit x{policy.max_reboot_ratio:g})",
    )
