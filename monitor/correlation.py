"""Fleet correlation decisions: when many devices of one group drop at once, it is an outage.

Pure functions of data; the I/O around them is in monitor/fleet.py.
"""

from __future__ import annotations

from dataclasses import dataclass

GROUP_KINDS = ("all", "model", "firmware", "region")
# Between groups of one size, the more specific name says more ('firmware' over 'all').
_SPECIFIC = {"all": 0, "model": 1, "region": 1, "firmware": 2}


@dataclass(frozen=True)
class FleetPolicy:
    """When a group's drop is an outage, and what it does to customer alerts."""

    groups: tuple[str, ...] = GROUP_KINDS
    # Both must hold: so ten devices of a model of twelve is an outage, and 2% of a
    # million devices too, but three of a household's devices are not.
    min_devices: int = 20
    min_pct: float = 5.0
    window_s: int = 300
    # Customer alerts of the group's devices wait this long; then owners are told once.
    hold_s: int = 600
    # Over when no more than this share of the devices it took down is still offline.
    resolve_pct: float = 10.0


def group_keys(
    model_id: str, firmware: str | None, region: str | None, groups: tuple[str, ...]
) -> list[str]:
    """The groups a device belongs to, most specific last: 'all', 'model:x', ..."""
    keys = []
    for kind in groups:
        if kind == "all":
            keys.append("all")
        elif kind == "model":
            keys.append(f"model:{model_id}")
        elif kind == "firmware" and firmware:
            keys.append(f"firmware:{model_id}@{firmware}")
        elif kind == "region" and region:
            keys.append(f"region:{region}")
    return keys


def outage_groups(
    down: dict[str, frozenset],
    counts: dict[str, int],
    sizes: dict[str, int],
    policy: FleetPolicy,
) -> list[str]:
    """Groups with enough devices newly offline within the window to call it an outage.

    `counts` is how many of each group's devices dropped; `down` which kinds of device
    (model, firmware, region) they were. Groups that hold exactly the same dropped devices
    (every thermostat in a fleet of thermostats) are one outage, named by the smallest.
    """
    over = [
        key
        for key, n in counts.items()
        if n >= policy.min_devices and n * 100 >= policy.min_pct * sizes.get(key, n)
    ]
    smallest: dict[frozenset, str] = {}
    for key in sorted(over, key=lambda k: smallest_first(k, sizes)):
        smallest.setdefault(down[key], key)
    return sorted(smallest.values())


def smallest_first(key: str, sizes: dict[str, int]) -> tuple:
    """Sort key: smaller groups first, and the more specific of two of one size."""
    return sizes.get(key, 0), -_SPECIFIC[key.partition(":")[0]], key


def group_filter(key: str) -> dict[str, str | None]:
    """A group key as the model, firmware and region a device must have (None: any)."""
    kind, _, value = key.partition(":")
    match = {"model": None, "firmware": None, "region": None}
    if kind == "model":
        match["model"] = value
    elif kind == "firmware":
        match["model"], _, match["firmware"] = value.partition("@")
    elif kind == "region":
        match["region"] = value
    return match


def outage_over(still_offline: int, affected: int, policy: FleetPolicy) -> bool:
    """Whether enough of an outage's devices are back to call it over."""
    return still_offline * 100 <= policy.resolve_pct * affected


def describe_group(key: str) -> str:
    """'all devices', 'model camera-v1', 'firmware camera-v1@2.4.1', 'region eu-west'."""
    if key == "all":
        return "all devices"
    kind, _, value = key.partition(":")
    return f"{kind} {value}"
