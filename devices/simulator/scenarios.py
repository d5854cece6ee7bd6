"""Faults a simulated device can suffer, declared as data, and pure functions reading them.

Every time here is in device seconds since the device was powered on; the runner's
`time_scale` maps them to wall-clock seconds, so a 2 minute reboot loop still spans 20
heartbeats of a 6 s interval at time_scale 0.1.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

YEAR_S = 365.25 * 86_400


class Link(StrEnum):
    """What a scenario does to the device's MQTT connection."""

    CLEAN_DISCONNECT = "clean_disconnect"  # sends DISCONNECT: the broker discards the will
    ABRUPT_CLOSE = "abrupt_close"  # drops the socket: the broker publishes the will
    CONNECT = "connect"  # comes back: a new connection and a new birth message


@dataclass(frozen=True)
class Scenario:
    """One kind of fault; only the fields it needs are set."""

    name: str
    summary: str
    start_after_s: tuple[float, float] = (120.0, 1800.0)  # range build_fleet draws from
    duration_s: float = 0.0  # length of a ramp; a Fault may override it
    heartbeats_stop: Literal["start", "end"] | None = None  # at the start, or after the ramp
    link_at_start: Link | None = None
    flap_every_s: float = 0.0  # connection drops once per period ...
    flap_offline_s: float = 0.0  # ... and stays down this long
    reboot_every_s: float = 0.0
    clock_offset_s: float = 0.0
    ramp_metric: str | None = None  # metric moved linearly to ramp_to over duration_s
    ramp_to: float = 0.0
    needs_metric: str | None = None  # only devices reporting this metric can have it
    needs_sleep: bool = False  # only devices that sleep when idle (parked cars) can have it
    stays_asleep: bool = False  # the next sleep it announces never ends
    keeps_awake: bool = False  # once begun, the device no longer sleeps when idle


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "silent",
            "stays connected (keepalives flow) but sends no more heartbeats",
            heartbeats_stop="start",
        ),
        Scenario(
            "drop_no_will",
            "disconnects cleanly, so no Last Will is published, then nothing",
            heartbeats_stop="start",
            link_at_start=Link.CLEAN_DISCONNECT,
        ),
        Scenario(
            "power_loss",
            "the socket dies without DISCONNECT, so the broker publishes the will",
            heartbeats_stop="start",
            link_at_start=Link.ABRUPT_CLOSE,
        ),
        Scenario(
            "battery_drain",
            "battery falls to 0 over duration_s, then the device goes silent",
            duration_s=3600.0,
            heartbeats_stop="end",
            ramp_metric="battery_pct",
            ramp_to=0.0,
            needs_metric="battery_pct",
        ),
        Scenario(
            "overheat",
            "temperature climbs past 80 C over duration_s and stays there",
            duration_s=900.0,
            ramp_metric="temp_c",
            ramp_to=92.0,
            needs_metric="temp_c",
        ),
        Scenario(
            "reboot_loop",
            "reboots every couple of minutes: uptime keeps starting again from 0",
            reboot_every_s=120.0,
        ),
        Scenario(
            "flapping",
            "the connection drops (will published) and comes back, again and again",
            flap_every_s=180.0,
            flap_offline_s=45.0,
        ),
        Scenario(
            "fails_to_wake",
            "parked, it announces when it will wake up (next_checkin_s) and never does",
            stays_asleep=True,
            needs_sleep=True,
        ),
        Scenario(
            "parked_drain",
            "a parasitic load keeps the parked car awake and drains its 12 V battery to 0 "
            "over duration_s: it reports the fall, then cannot start and goes silent",
            duration_s=8 * 3600.0,
            heartbeats_stop="end",
            ramp_metric="battery_pct",
            ramp_to=0.0,
            needs_metric="battery_pct",
            needs_sleep=True,
            keeps_awake=True,
        ),
        Scenario(
            "clock_skew",
            "the real-time clock lost its setting: ts is years in the past",
            clock_offset_s=-3 * YEAR_S,
        ),
    )
}


@dataclass(frozen=True)
class Fault:
    """A scenario given to one device, beginning `start_after_s` after power-on."""

    scenario: Scenario
    start_after_s: float
    duration_s: float  # the ramp length for this device

    @property
    def name(self) -> str:
        return self.scenario.name


def make_fault(name: str, *, start_after_s: float, duration_s: float | None = None) -> Fault:
    """The fault `name` from SCENARIOS; `duration_s` overrides the scenario's ramp length."""
    try:
        scenario = SCENARIOS[name]
    except KeyError:
        raise ValueError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}") from None
    if start_after_s < 0:
        raise ValueError("start_after_s must not be negative")
    duration = scenario.duration_s if duration_s is None else duration_s
    if scenario.ramp_metric and duration <= 0:
        raise ValueError(f"{name} needs a positive duration_s")
    return Fault(scenario, float(start_after_s), float(duration))


def fits(scenario: Scenario, reports: frozenset[str], sleeps: bool = False) -> bool:
    """Whether a device reporting these metrics (and sleeping when idle, or not) can show
    the scenario."""
    if scenario.needs_sleep and not sleeps:
        return False
    return scenario.needs_metric is None or scenario.needs_metric in reports


def is_active(fault: Fault | None, elapsed_s: float) -> bool:
    """Whether the fault has begun."""
    return fault is not None and elapsed_s >= fault.start_after_s


def heartbeats_stop_at(fault: Fault | None) -> float | None:
    """Device seconds after which the device sends no heartbeat, or None."""
    if fault is None or fault.scenario.heartbeats_stop is None:
        return None
    if fault.scenario.heartbeats_stop == "start":
        return fault.start_after_s
    return fault.start_after_s + fault.duration_s


def ramp_progress(fault: Fault, elapsed_s: float) -> float:
    """How far along its ramp the fault is, from 0 at the start to 1 at the end."""
    if fault.duration_s <= 0:
        return 1.0
    return min(1.0, max(0.0, (elapsed_s - fault.start_after_s) / fault.duration_s))


def uptime_s(fault: Fault | None, elapsed_s: float, normal_uptime_s: float) -> float:
    """Device uptime: the normal one, or time since the last reboot of a reboot loop."""
    if not is_active(fault, elapsed_s) or fault.scenario.reboot_every_s <= 0:
        return normal_uptime_s
    return (elapsed_s - fault.start_after_s) % fault.scenario.reboot_every_s


def clock_offset_s(fault: Fault | None, elapsed_s: float) -> float:
    """Seconds the device clock is off (added to the true time in `ts`)."""
    return fault.scenario.clock_offset_s if is_active(fault, elapsed_s) else 0.0


def link_change(fault: Fault | None, index: int) -> tuple[float, Link] | None:
    """The index-th connection change the fault causes: (device seconds, what), or None."""
    if fault is None:
        return None
    scenario = fault.scenario
    if scenario.link_at_start is not None:
        return (fault.start_after_s, scenario.link_at_start) if index == 0 else None
    if scenario.flap_every_s > 0:
        cycle, second_half = divmod(index, 2)
        at = fault.start_after_s + cycle * scenario.flap_every_s
        if second_half:
            return at + scenario.flap_offline_s, Link.CONNECT
        return at, Link.ABRUPT_CLOSE
    return None
