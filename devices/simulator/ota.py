"""Over-the-air updates on a simulated device: the failure profile and the plan.

Pure like `device`: nothing here reads the clock or does I/O. `OtaUpdater.receive` turns one
`ota_update` command (`contract.commands.UpdateCommand`, read by its `parse_command`) into an
`OtaPlan` (every message the device publishes on its `ota` topic and when, its reboot window
and the firmware it comes back on); the runner plays it.

    accepted ─> downloading x2-3 ─> installing ─> rebooting ─ away 20-60 s ─> back on new fw
    │           │            │      │                       ├─ brick: never back
    │           │            │      └─ install_failed       └─ rollback: back on the old fw
    │           │            └─ checksum_mismatch
    │           └─ download_failed
    └─ at once instead: low_battery, busy (another update in progress)

Outcomes are drawn from an `OtaProfile`, seeded by the device's seed and id and the
command id, so a rerun of the same fleet and commands plays the same updates.
"""

from __future__ import annotations

import json
import math
import random
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

from contract.commands import UpdateCommand
from contract.messages import ota_report_body

if TYPE_CHECKING:
    from devices.simulator.device import SimDevice

# Step durations in device seconds (scaled by the device's time_scale), drawn per update.
DOWNLOAD_S = (30.0, 90.0)
VERIFY_S = (1.0, 3.0)  # checking the sha256 between the last download step and installing
INSTALL_S = (20.0, 60.0)
REBOOT_S = (20.0, 60.0)  # away: disconnected cleanly, then reconnects on the new firmware
# A device below this battery level refuses an update rather than risk dying mid-install.
LOW_BATTERY_PCT = 20.0
# Command ids a device remembers, to ignore redeliveries; a campaign sends few per device.
REMEMBERED_COMMANDS = 256


def _is_name(value: object) -> bool:
    return isinstance(value, str) and value != ""


# -- the failure profile -------------------------------------------------------------------


@dataclass(frozen=True)
class OtaRates:
    """Chances (0..1, summing to at most 1) of each way one update can go wrong."""

    download_failed: float = 0.0
    checksum_mismatch: float = 0.0
    install_failed: float = 0.0
    brick: float = 0.0  # reboots and never comes back
    rollback: float = 0.0  # reboots and comes back on its old firmware

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{f.name} must be a number, not {value!r}")
            if not (math.isfinite(value) and 0 <= value <= 1):
                raise ValueError(f"{f.name} must be between 0 and 1, not {value!r}")
        if sum(getattr(self, f.name) for f in fields(self)) > 1 + 1e-9:
            raise ValueError("the rates of one profile entry add up to more than 1")


# Without a profile entry for a device: the odd download fails, nothing else goes wrong.
DEFAULT_RATES = OtaRates(download_failed=0.01)
ANY = "*"


@dataclass(frozen=True)
class OtaProfile:
    """Rates by (model_id or "*", target version or "*"); the most specific key wins.

    Specificity: (model, version), then (model, "*"), then ("*", version), then ("*", "*"),
    then DEFAULT_RATES. A model's entry beats a version's: versions are per model anyway.
    Values may be OtaRates or plain mappings of rate names (missing rates are 0).
    """

    rates: Mapping[tuple[str, str], OtaRates] = field(default_factory=dict)

    def __post_init__(self) -> None:
        coerced = {}
        for key, value in self.rates.items():
            if not (isinstance(key, tuple) and len(key) == 2 and all(map(_is_name, key))):
                raise ValueError(f"profile key {key!r} is not (model_id, version)")
            coerced[key] = value if isinstance(value, OtaRates) else _rates(value, f"{key}")
        object.__setattr__(self, "rates", MappingProxyType(coerced))

    def rates_for(self, model_id: str, version: str) -> OtaRates:
        """The rates of the most specific entry matching a device model and target version."""
        for key in ((model_id, version), (model_id, ANY), (ANY, version), (ANY, ANY)):
            if key in self.rates:
                return self.rates[key]
        return DEFAULT_RATES


def as_ota_profile(profile: OtaProfile | Mapping | None) -> OtaProfile:
    """An OtaProfile from one, from its mapping, or the default (every key unmatched)."""
    if profile is None:
        return OtaProfile()
    return profile if isinstance(profile, OtaProfile) else OtaProfile(profile)


def _rates(value: object, where: str) -> OtaRates:
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: rates must be an object of rate names")
    known = {f.name for f in fields(OtaRates)}
    unknown = sorted(set(value) - known)
    if unknown:
        raise ValueError(f"{where}: unknown rates {unknown}; known: {', '.join(sorted(known))}")
    try:
        return OtaRates(**value)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def load_ota_profile(path: str | Path) -> OtaProfile:
    """Read a profile file: a JSON list of entries (or {"rates": [...]}), for example

        [{"model_id": "thermostat-v2", "version": "2.5.0", "brick": 0.3},
         {"download_failed": 0.02}]

    `model_id` and `version` default to "*"; rates not given are 0. Raises ValueError
    naming the entry at fault, OSError if the file cannot be read.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not JSON: {exc}") from None
    if isinstance(data, dict) and set(data) == {"rates"}:
        data = data["rates"]
    if not isinstance(data, list):
        raise ValueError(f'{path}: expected a list of entries or {{"rates": [...]}}')
    rates: dict[tuple[str, str], OtaRates] = {}
    for index, entry in enumerate(data):
        where = f"{path}: entry {index}"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: not an object")
        entry = dict(entry)
        key = (entry.pop("model_id", ANY), entry.pop("version", ANY))
        if not all(map(_is_name, key)):
            raise ValueError(f"{where}: model_id and version must be non-empty strings")
        if key in rates:
            raise ValueError(f"{where}: a second entry for {key}")
        rates[key] = _rates(entry, where)
    return OtaProfile(rates)


# -- the plan ------------------------------------------------------------------------------


class Outcome(StrEnum):
    """How one command ends."""

    UPDATED = "updated"
    ROLLBACK = "rollback"
    BRICK = "brick"
    DOWNLOAD_FAILED = "download_failed"
    CHECKSUM_MISMATCH = "checksum_mismatch"
    INSTALL_FAILED = "install_failed"
    LOW_BATTERY = "low_battery"
    BUSY = "busy"


# Drawn in this order from one uniform number; whatever is left over is UPDATED.
DRAWN = (
    Outcome.DOWNLOAD_FAILED,
    Outcome.CHECKSUM_MISMATCH,
    Outcome.INSTALL_FAILED,
    Outcome.BRICK,
    Outcome.ROLLBACK,
)


@dataclass(frozen=True)
class OtaMessage:
    """One message on the device's `ota` topic, published at `at`."""

    at: datetime
    state: str  # accepted, downloading, installing, rebooting, failed
    progress: int | None = None  # downloading only
    reason: str | None = None  # failed only

    def body(self, command: UpdateCommand) -> dict:
        """The JSON body for `command`."""
        return ota_report_body(
            command_id=command.command_id,
            campaign=command.campaign,
            state=self.state,
            progress=self.progress,
            reason=self.reason,
            ts=self.at,
        )


@dataclass(frozen=True)
class OtaPlan:
    """What the device does about one command; every time is wall-clock."""

    command: UpdateCommand
    outcome: Outcome
    messages: tuple[OtaMessage, ...]  # in order, times never decreasing
    down_at: datetime | None  # right after `rebooting`: a clean disconnect, no Last Will
    back_at: datetime | None  # reconnects here; None: no reboot, or bricked
    firmware_after: str  # what the heartbeats report once the plan has played out
    busy_until: datetime  # a new command before this is answered failed/busy

    @property
    def bodies(self) -> list[dict]:
        return [m.body(self.command) for m in self.messages]


def plan_update(
    command: UpdateCommand,
    *,
    device_id: str,
    seed: int,
    model_id: str,
    firmware: str,
    profile: OtaProfile,
    now: datetime,
    time_scale: float = 1.0,
) -> OtaPlan:
    """The whole update a device accepting `command` at `now` goes through."""
    draw = random.Random(f"ota:{seed}:{device_id}:{command.command_id}")
    # Every number is drawn whatever the outcome, so timings do not depend on the rates.
    chance = draw.random()
    steps = draw.choice((2, 3))
    download_s = draw.uniform(*DOWNLOAD_S)
    verify_s = draw.uniform(*VERIFY_S)
    install_s = draw.uniform(*INSTALL_S)
    reboot_s = draw.uniform(*REBOOT_S)
    broken_at = draw.uniform(0.05, 0.95)  # how far a failing download or install got

    def at(device_s: float) -> datetime:
        return now + timedelta(seconds=device_s * time_scale)

    outcome = _draw_outcome(profile.rates_for(model_id, command.version), chance)
    messages = [OtaMessage(now, "accepted")]
    download_end = download_s if outcome is not Outcome.DOWNLOAD_FAILED else broken_at * download_s
    for k in range(1, steps + 1):
        reached_s = download_s * k / steps
        if reached_s <= download_end:
            messages.append(OtaMessage(at(reached_s), "downloading", round(100 * k / steps)))
    install_from = download_s + verify_s
    if outcome is Outcome.DOWNLOAD_FAILED:
        return _failed(command, outcome, messages, at(download_end), firmware)
    if outcome is Outcome.CHECKSUM_MISMATCH:
        return _failed(command, outcome, messages, at(install_from), firmware)
    messages.append(OtaMessage(at(install_from), "installing"))
    if outcome is Outcome.INSTALL_FAILED:
        failed_at = at(install_from + broken_at * install_s)
        return _failed(command, outcome, messages, failed_at, firmware)
    down_at = at(install_from + install_s)
    messages.append(OtaMessage(down_at, "rebooting"))
    return OtaPlan(
        command=command,
        outcome=outcome,
        messages=tuple(messages),
        down_at=down_at,
        back_at=None if outcome is Outcome.BRICK else at(install_from + install_s + reboot_s),
        firmware_after=command.version if outcome is Outcome.UPDATED else firmware,
        busy_until=down_at,
    )


def refusal(command: UpdateCommand, outcome: Outcome, now: datetime, firmware: str) -> OtaPlan:
    """A single `failed` at once: the device does not take the command on (busy, low_battery)."""
    return _failed(command, outcome, [], now, firmware, busy_until=now)


def _failed(
    command: UpdateCommand,
    outcome: Outcome,
    messages: list[OtaMessage],
    failed_at: datetime,
    firmware: str,
    busy_until: datetime | None = None,
) -> OtaPlan:
    messages = [*messages, OtaMessage(failed_at, "failed", reason=outcome.value)]
    return OtaPlan(
        command=command,
        outcome=outcome,
        messages=tuple(messages),
        down_at=None,
        back_at=None,
        firmware_after=firmware,
        busy_until=failed_at if busy_until is None else busy_until,
    )


def _draw_outcome(rates: OtaRates, chance: float) -> Outcome:
    edge = 0.0
    for outcome in DRAWN:
        edge += getattr(rates, outcome.value)
        if chance < edge:
            return outcome
    return Outcome.UPDATED


class OtaUpdater:
    """One device's update state: the commands it has handled and whether one is running."""

    def __init__(self, profile: OtaProfile | Mapping | None = None) -> None:
        self.profile = as_ota_profile(profile)
        self._handled: OrderedDict[str, None] = OrderedDict()
        self._busy_until: datetime | None = None

    def busy(self, now: datetime) -> bool:
        """Whether an accepted update has not yet reached its reboot or its failure."""
        return self._busy_until is not None and now < self._busy_until

    def receive(self, command: UpdateCommand, device: SimDevice, now: datetime) -> OtaPlan | None:
        """The plan for `command` arriving at `now`; None for a command id already handled."""
        if command.command_id in self._handled:
            return None
        self._handled[command.command_id] = None
        while len(self._handled) > REMEMBERED_COMMANDS:
            self._handled.popitem(last=False)
        firmware = device.firmware
        if self.busy(now):
            return refusal(command, Outcome.BUSY, now, firmware)
        battery = device.battery_pct
        if battery is not None and battery < LOW_BATTERY_PCT:
            return refusal(command, Outcome.LOW_BATTERY, now, firmware)
        spec = device.spec
        plan = plan_update(
            command,
            device_id=spec.device_id,
            seed=spec.seed,
            model_id=spec.profile.model_id,
            firmware=firmware,
            profile=self.profile,
            now=now,
            time_scale=device.time_scale,
        )
        self._busy_until = plan.busy_until
        return plan
