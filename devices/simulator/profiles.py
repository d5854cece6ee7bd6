"""Simulated device types: their model, firmware, and the metrics they report and how."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

DAY_S = 86_400.0


@dataclass(frozen=True)
class Wobble:
    """A metric around a per-device baseline: a daily swing, an offset while active, noise."""

    baseline: tuple[float, float]  # each device draws its own baseline from this range
    noise: float  # standard deviation of the per-reading noise
    daily_swing: float = 0.0  # amplitude of the day/night sine
    active_offset: float = 0.0  # added while the device is active (driving, charging)
    only_active: bool = False  # reads 0 while inactive (speed, charging power)
    low: float = -math.inf
    high: float = math.inf
    digits: int = 1  # 0 reports an int


@dataclass(frozen=True)
class Battery:
    """A battery that drains at one rate and charges at another while `charges_when` holds."""

    start_pct: tuple[float, float]
    drain_pct_per_h: float
    charge_pct_per_h: float = 0.0
    charges_when: Literal["never", "always", "active", "daylight"] = "never"


@dataclass(frozen=True)
class Activity:
    """A repeating duty cycle: active for `active_s` of every `period_s` (a drive, a charge)."""

    name: str
    period_s: float
    active_s: float


@dataclass(frozen=True)
class Profile:
    """Everything the simulator needs to fake one kind of device."""

    type_code: str  # short tag used in simulated device ids
    model_id: str  # a row of device_models (migration 003)
    kind: Literal["home", "vehicle"]
    interval_s: int  # heartbeat interval of the model
    share: float  # weight in a generated fleet
    firmware: tuple[tuple[str, float], ...]  # (version, weight): most run the newest
    serial_prefix: str
    names: tuple[str, ...]
    metrics: tuple[tuple[str, Wobble], ...]
    battery: Battery | None = None
    activity: Activity | None = None
    odometer_km: tuple[float, float] | None = None  # cars: starting reading range
    # Between active spells (parked), sends one heartbeat announcing how long it will sleep
    # (`next_checkin_s`, contract 1.1), then nothing until the next spell begins.
    sleeps_when_idle: bool = False

    def metric(self, name: str) -> Wobble | None:
        """The behaviour of metric `name`, if this type reports it."""
        return dict(self.metrics).get(name)

    @property
    def reports(self) -> frozenset[str]:
        """Names of every metric this type reports."""
        names = {name for name, _ in self.metrics}
        if self.battery:
            names.add("battery_pct")
        if self.odometer_km:
            names.add("odometer_km")
        return frozenset(names)


def _rssi(low: float, high: float) -> Wobble:
    return Wobble(baseline=(low, high), noise=3.0, low=-110, high=-30, digits=0)


PROFILES: dict[str, Profile] = {
    p.model_id: p
    for p in (
        Profile(
            type_code="thermo",
            model_id="thermostat-v2",
            kind="home",
            interval_s=60,
            share=0.30,
            firmware=(("2.4.1", 0.7), ("2.3.9", 0.25), ("2.2.0", 0.05)),
            serial_prefix="TH2",
            names=("Living room thermostat", "Hallway thermostat", "Upstairs thermostat"),
            metrics=(
                # Board temperature tracks the room: near 21 C with a small daily swing.
                ("temp_c", Wobble(baseline=(19.5, 23.0), noise=0.3, daily_swing=1.5)),
                ("humidity_pct", Wobble((35, 55), 1.5, daily_swing=5, low=0, high=100, digits=0)),
                ("rssi_dbm", _rssi(-75, -50)),
            ),
            # Two AA cells last about a year and a half.
            battery=Battery(start_pct=(45, 100), drain_pct_per_h=0.008),
        ),
        Profile(
            type_code="panel",
            model_id="alarm-panel-v3",
            kind="home",
            interval_s=30,
            share=0.20,
            firmware=(("3.1.0", 0.8), ("3.0.4", 0.2)),
            serial_prefix="AP3",
            names=("Alarm panel", "Front door alarm panel", "Garage alarm panel"),
            metrics=(
                ("temp_c", Wobble(baseline=(24.0, 30.0), noise=0.4, daily_swing=1.0)),
                ("rssi_dbm", _rssi(-70, -50)),
            ),
            # Mains powered: the backup battery is trickle-charged and sits near full.
            battery=Battery(
                start_pct=(92, 100),
                drain_pct_per_h=0.0,
                charge_pct_per_h=0.5,
                charges_when="always",
            ),
        ),
        Profile(
            type_code="cam",
            model_id="camera-v1",
            kind="home",
            interval_s=60,
            share=0.25,
            firmware=(("1.8.2", 0.6), ("1.8.0", 0.3), ("1.7.5", 0.1)),
            serial_prefix="CM1",
            names=("Front door camera", "Driveway camera", "Backyard camera", "Garden camera"),
            metrics=(
                # Outdoors: follows the weather, with a wide day/night swing.
                ("temp_c", Wobble(baseline=(4.0, 22.0), noise=0.8, daily_swing=6.0)),
                ("rssi_dbm", _rssi(-80, -60)),
            ),
            # Solar panel: gains during the day a little more than it spends at night.
            battery=Battery(
                start_pct=(60, 100),
                drain_pct_per_h=1.2,
                charge_pct_per_h=2.0,
                charges_when="daylight",
            ),
        ),
        Profile(
            type_code="evc",
            model_id="ev-charger-v1",
            kind="home",
            interval_s=60,
            share=0.10,
            firmware=(("4.2.0", 0.75), ("4.1.3", 0.25)),
            serial_prefix="EV1",
            names=("Garage EV charger", "Driveway EV charger"),
            metrics=(
                ("temp_c", Wobble(baseline=(18.0, 28.0), noise=0.5, active_offset=14.0)),
                ("power_kw", Wobble(baseline=(7.2, 11.0), noise=0.1, only_active=True, low=0)),
                ("rssi_dbm", _rssi(-78, -55)),
            ),
            # Charges a car for about four hours a day, mostly overnight.
            activity=Activity(name="charging", period_s=DAY_S, active_s=4 * 3600),
        ),
        Profile(
            type_code="car",
            model_id="car-telematics-v1",
            kind="vehicle",
            interval_s=300,
            share=0.15,
            firmware=(("5.0.2", 0.65), ("4.9.8", 0.35)),
            serial_prefix="CT1",
            names=("Family car", "Company car", "Second car"),
            metrics=(
                # Unit under the dashboard: warm, hotter while driving.
                ("temp_c", Wobble(baseline=(22.0, 32.0), noise=0.7, active_offset=12.0)),
                (
                    "speed_kmh",
                    Wobble((45, 90), 12.0, only_active=True, low=0, high=180, digits=0),
                ),
                ("rssi_dbm", _rssi(-80, -55)),
            ),
            # The 12 V battery drains while parked and charges while driving.
            battery=Battery(
                start_pct=(70, 95),
                drain_pct_per_h=0.4,
                charge_pct_per_h=10.0,
                charges_when="active",
            ),
            # Two drives of about 40 minutes a day.
            activity=Activity(name="driving", period_s=DAY_S / 2, active_s=40 * 60),
            odometer_km=(8_000, 160_000),
            # Parked, the unit sleeps until the next drive to spare the 12 V battery.
            sleeps_when_idle=True,
        ),
    )
}


def is_active(activity: Activity | None, phase_s: float, elapsed_s: float) -> bool:
    """Whether the duty cycle is in its active part `elapsed_s` device seconds after start."""
    if activity is None:
        return False
    return (elapsed_s + phase_s) % activity.period_s < activity.active_s


def seconds_until_active(activity: Activity, phase_s: float, elapsed_s: float) -> float:
    """Device seconds from `elapsed_s` until the next active spell begins (0 while active)."""
    into = (elapsed_s + phase_s) % activity.period_s
    return 0.0 if into < activity.active_s else activity.period_s - into


def active_seconds(activity: Activity, phase_s: float, elapsed_s: float) -> float:
    """Seconds spent active in the first `elapsed_s` device seconds after start."""

    def since_zero(t: float) -> float:
        cycles, rest = divmod(t, activity.period_s)
        return cycles * activity.active_s + min(rest, activity.active_s)

    return since_zero(phase_s + elapsed_s) - since_zero(phase_s)


def is_daylight(day_phase_s: float, elapsed_s: float) -> bool:
    """Whether the sun is up on the device's simulated day (half of each day)."""
    return math.sin(2 * math.pi * (elapsed_s + day_phase_s) / DAY_S) > 0


def wobble_value(
    wobble: Wobble,
    *,
    baseline: float,
    day_phase_s: float,
    elapsed_s: float,
    active: bool,
    noise: float,
) -> float:
    """One reading of a wobbling metric; `noise` is a standard-normal draw."""
    if wobble.only_active and not active:
        return 0 if wobble.digits == 0 else 0.0
    value = baseline + wobble.noise * noise
    value += wobble.daily_swing * math.sin(2 * math.pi * (elapsed_s + day_phase_s) / DAY_S)
    if active:
        value += wobble.active_offset
    return round_metric(min(wobble.high, max(wobble.low, value)), wobble.digits)


def round_metric(value: float, digits: int) -> float:
    """Round like a device would report: ints for whole units, else `digits` decimals."""
    return round(value) if digits == 0 else round(value, digits)
