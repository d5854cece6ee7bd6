"""One simulated device as a pure state machine: hand it `now`, get its heartbeat body.

Nothing here reads the clock, sleeps or does I/O, so a device is tested with plain
datetimes; the runner owns sockets and time.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from contract.ids import DEVICE_ID_RULE, is_device_id
from contract.messages import heartbeat_body
from devices.simulator import scenarios
from devices.simulator.profiles import (
    DAY_S,
    Profile,
    active_seconds,
    is_daylight,
    round_metric,
    seconds_until_active,
    wobble_value,
)
from devices.simulator.profiles import is_active as activity_is_active
from devices.simulator.scenarios import Fault, Link


@dataclass(frozen=True)
class Owner:
    """The customer a device belongs to, and where they live."""

    customer_id: str
    customer_name: str
    timezone: str  # IANA name
    region: str


@dataclass(frozen=True)
class DeviceSpec:
    """What a simulated device is; `seed` fixes its baselines and noise."""

    device_id: str
    profile: Profile
    firmware: str
    serial: str
    name: str
    owner: Owner
    seed: int
    vin: str | None = None
    fault: Fault | None = None

    def __post_init__(self) -> None:
        if not is_device_id(self.device_id):
            raise ValueError(f"device id {self.device_id!r} is not {DEVICE_ID_RULE}")


class SimDevice:
    """A device's changing state: call `start(now)` at power-on, then `heartbeat` when due.

    `time_scale` shrinks every wall-clock duration; metrics and uptime run in device time.
    """

    def __init__(self, spec: DeviceSpec, *, time_scale: float = 1.0) -> None:
        if not time_scale > 0:
            raise ValueError("time_scale must be positive")
        self.spec = spec
        self.time_scale = time_scale
        profile = spec.profile
        draw = random.Random(spec.seed)
        self._baselines = {name: draw.uniform(*w.baseline) for name, w in profile.metrics}
        self._day_phase_s = draw.uniform(0, DAY_S)
        cycle_s = profile.activity.period_s if profile.activity else 0.0
        self._activity_phase_s = draw.random() * cycle_s
        # Spreads first heartbeats over one interval, so a fleet does not beat in step.
        self._first_beat_fraction = draw.random()
        self._prior_uptime_s = draw.uniform(600, 30 * DAY_S)
        self._battery_start = draw.uniform(*profile.battery.start_pct) if profile.battery else None
        self._odometer_start = draw.uniform(*profile.odometer_km) if profile.odometer_km else None
        self._noise = random.Random(draw.getrandbits(64))

        self.started_at: datetime | None = None
        self.firmware = spec.firmware  # what the heartbeats report; an update changes it
        self.seq = 0
        self.battery_pct: float | None = None
        self._battery_at: datetime | None = None
        self._next_due: datetime | None = None
        self._link_index = 0
        self._fault_link: Link | None = None  # the latest fault connection change taken
        self._ramp_from: float | None = None
        # Device seconds since power-on at which uptime was 0: before it, or at the last boot.
        self._booted_s = -self._prior_uptime_s
        self._down = False  # shut down for a reboot (or for good)
        self._boot_into: str | None = None  # the firmware it boots into next
        self.asleep_for_good = False  # announced a sleep it never wakes from (its fault)

    def __repr__(self) -> str:
        fault = f" fault={self.spec.fault.name}" if self.spec.fault else ""
        return f"<SimDevice {self.device_id} {self.spec.profile.model_id}{fault}>"

    @property
    def device_id(self) -> str:
        return self.spec.device_id

    @property
    def interval(self) -> timedelta:
        """Wall-clock time between heartbeats."""
        return timedelta(seconds=self.spec.profile.interval_s * self.time_scale)

    def start(self, now: datetime) -> None:
        """Power on at `now`: fault offsets count from here; the first heartbeat is scheduled."""
        _require_aware(now)
        self.started_at = now
        self._down, self._boot_into = False, None
        self.battery_pct = self._battery_start
        self._battery_at = now
        first = now + self.interval * self._first_beat_fraction
        silent = self.silent_from
        self._next_due = None if silent is not None and first >= silent else first

    def elapsed_s(self, now: datetime) -> float:
        """Device seconds since power-on."""
        return (now - self._started()).total_seconds() / self.time_scale

    def at(self, device_s: float) -> datetime:
        """The wall-clock moment `device_s` device seconds after power-on."""
        return self._started() + timedelta(seconds=device_s * self.time_scale)

    @property
    def next_due(self) -> datetime | None:
        """When the next heartbeat is due; None before start and once the device is silent."""
        return self._next_due

    @property
    def silent_from(self) -> datetime | None:
        """From when the device sends no more heartbeats, if its fault silences it."""
        stop = scenarios.heartbeats_stop_at(self.spec.fault)
        return None if stop is None or self.started_at is None else self.at(stop)

    @property
    def next_link_change(self) -> tuple[datetime, Link] | None:
        """The next connection change the fault asks for, and when (none while shut down)."""
        if self.started_at is None or self._down:
            return None
        change = scenarios.link_change(self.spec.fault, self._link_index)
        return None if change is None else (self.at(change[0]), change[1])

    def take_link_change(self, now: datetime) -> Link | None:
        """Consume the changes due by `now`; returns the latest one (older ones are moot)."""
        taken = None
        while (change := self.next_link_change) is not None and change[0] <= now:
            taken = change[1]
            self._link_index += 1
        if taken is not None:
            self._fault_link = taken
        return taken

    @property
    def fault_keeps_link_down(self) -> bool:
        """Whether the fault's latest connection change took the link down (and still holds)."""
        return self._fault_link in (Link.CLEAN_DISCONNECT, Link.ABRUPT_CLOSE)

    @property
    def is_down(self) -> bool:
        """Shut down by `shut_down`, not yet booted again (or never: bricked)."""
        return self._down

    @property
    def bricked(self) -> bool:
        """Shut down with nothing to boot into: it never comes back."""
        return self._down and self._boot_into is None

    def shut_down(self, *, boot_into: str | None) -> None:
        """Go quiet for a reboot: no heartbeats and no fault link changes until `boot`.

        `boot_into` is the firmware it boots with; None bricks the device for good.
        """
        self._started()
        self._down = True
        self._boot_into = boot_into
        self._next_due = None

    def boot(self, now: datetime) -> None:
        """Back from a reboot at `now`: new firmware, uptime from 0, heartbeats resume.

        Fault changes that fell due while it was down are then taken at once (the latest
        wins), like any late ones; `seq` carries on, so no heartbeat repeats an earlier one.
        """
        _require_aware(now)
        if not self._down or self._boot_into is None:
            raise RuntimeError(f"{self.device_id} has nothing to boot into")
        self.firmware = self._boot_into
        self._down = False
        self._boot_into = None
        self._booted_s = self.elapsed_s(now)
        first = now + self.interval * self._first_beat_fraction
        silent = self.silent_from
        self._next_due = None if silent is not None and first >= silent else first

    def heartbeat(self, now: datetime) -> dict:
        """The heartbeat body sent at `now`; advances seq and schedules the next one."""
        _require_aware(now)
        started = self._started()
        if now < started:
            raise ValueError("heartbeat before power-on")
        if self._down:
            raise RuntimeError(f"{self.device_id} is shut down")
        silent = self.silent_from
        if silent is not None and now >= silent:
            raise RuntimeError(f"{self.device_id} is silent since {silent.isoformat()}")

        fault = self.spec.fault
        elapsed = self.elapsed_s(now)
        self.seq += 1
        clock = now + timedelta(seconds=scenarios.clock_offset_s(fault, elapsed))
        normal_uptime = elapsed - self._booted_s
        nap_s = self._nap_s(elapsed)
        body = heartbeat_body(
            ts=clock,
            seq=self.seq,
            fw=self.firmware,
            uptime_s=int(scenarios.uptime_s(fault, elapsed, normal_uptime)),
            metrics=self._metrics(now, elapsed),
            # In wall-clock seconds, as the service counts them; at least one.
            next_checkin_s=None if nap_s is None else max(1, math.ceil(nap_s * self.time_scale)),
        )
        if nap_s is None:
            self._schedule_after(now)
        elif (
            fault is not None
            and fault.scenario.stays_asleep
            and scenarios.is_active(fault, elapsed)
        ):
            self.asleep_for_good = True
            self._next_due = None
        else:
            self._next_due = now + timedelta(seconds=nap_s * self.time_scale)
        return body

    def announcement_undelivered(self, now: datetime) -> None:
        """The heartbeat announcing its sleep did not go out (no connection then). A unit
        keeps that announcement until it is delivered: it stays awake on its beat, and its
        next heartbeat announces the rest of the sleep. Sleeping unannounced would be
        silence the service rightly calls offline (the 100,000-device drill caught a
        parked car doing so across an edge broker's restart)."""
        _require_aware(now)
        if self.asleep_for_good:
            return  # its fault: it never wakes, announced or not
        self._next_due = None
        self._schedule_after(now)

    def _nap_s(self, elapsed: float) -> float | None:
        """Device seconds it will sleep after this heartbeat (idle until its next active
        spell), or None: it beats on as usual."""
        profile = self.spec.profile
        fault = self.spec.fault
        if not profile.sleeps_when_idle or profile.activity is None:
            return None
        if fault is not None and fault.scenario.keeps_awake and scenarios.is_active(fault, elapsed):
            return None
        nap = seconds_until_active(profile.activity, self._activity_phase_s, elapsed)
        # A stop shorter than a couple of heartbeats is not worth sleeping through.
        return nap if nap > 2 * profile.interval_s else None

    def _metrics(self, now: datetime, elapsed: float) -> dict[str, float]:
        profile = self.spec.profile
        active = activity_is_active(profile.activity, self._activity_phase_s, elapsed)
        metrics: dict[str, float] = {}
        if profile.battery is not None:
            metrics["battery_pct"] = round(self._advance_battery(now, elapsed, active), 1)
        for name, wobble in profile.metrics:
            metrics[name] = wobble_value(
                wobble,
                baseline=self._baselines[name],
                day_phase_s=self._day_phase_s,
                elapsed_s=elapsed,
                active=active,
                noise=self._noise.gauss(0.0, 1.0),
            )
        if self._odometer_start is not None and profile.activity is not None:
            speed = self._baselines.get("speed_kmh", 50.0)
            driven_h = active_seconds(profile.activity, self._activity_phase_s, elapsed) / 3600
            metrics["odometer_km"] = round(self._odometer_start + speed * driven_h, 1)
        self._apply_ramp(metrics, elapsed)
        return metrics

    def _advance_battery(self, now: datetime, elapsed: float, active: bool) -> float:
        battery = self.spec.profile.battery
        hours = (now - self._battery_at).total_seconds() / self.time_scale / 3600
        activity = self.spec.profile.activity
        if battery.charges_when == "active" and activity is not None:
            # Split the span: a car waking from a night parked drained all night, however
            # active it is when it reports.
            before = elapsed - hours * 3600
            active_h = (
                active_seconds(activity, self._activity_phase_s, elapsed)
                - active_seconds(activity, self._activity_phase_s, max(before, 0.0))
            ) / 3600
            change = battery.charge_pct_per_h * active_h - battery.drain_pct_per_h * (
                hours - active_h
            )
        else:
            charging = {
                "never": False,
                "always": True,
                "active": active,
                "daylight": is_daylight(self._day_phase_s, elapsed),
            }[battery.charges_when]
            rate = battery.charge_pct_per_h if charging else -battery.drain_pct_per_h
            change = rate * hours
        self.battery_pct = min(100.0, max(0.0, self.battery_pct + change))
        self._battery_at = now
        return self.battery_pct

    def _apply_ramp(self, metrics: dict[str, float], elapsed: float) -> None:
        fault = self.spec.fault
        if not scenarios.is_active(fault, elapsed):
            return
        name = fault.scenario.ramp_metric
        if name not in metrics:
            return
        if self._ramp_from is None:
            self._ramp_from = metrics[name]
        target = fault.scenario.ramp_to
        value = self._ramp_from + (target - self._ramp_from) * scenarios.ramp_progress(
            fault, elapsed
        )
        wobble = self.spec.profile.metric(name)
        if name == "battery_pct":
            # A drained battery falls steadily; no noise, and the state follows the ramp.
            self.battery_pct = value
            metrics[name] = round(value, 1)
        else:
            noise = wobble.noise * self._noise.gauss(0.0, 1.0) if wobble else 0.0
            metrics[name] = round_metric(value + noise, wobble.digits if wobble else 1)

    def _schedule_after(self, now: datetime) -> None:
        due = self._next_due or now
        if due <= now:
            # Stay on the device's own beat; slots missed while late are skipped, not bunched.
            due += self.interval * ((now - due) // self.interval + 1)
        silent = self.silent_from
        self._next_due = None if silent is not None and due >= silent else due

    def _started(self) -> datetime:
        if self.started_at is None:
            raise RuntimeError(f"{self.device_id} is not started; call start(now) first")
        return self.started_at


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")
