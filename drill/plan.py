"""What the drill plans before it starts: its configuration, the deadlines and monitor
timings of a fleet living faster than real time, and which devices fall silent when.
Pure functions of the configuration and the device models.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from harness.fleet import ModelTiming, scaled_deadlines

DEVICES_PER_SIMULATOR = 10_000
# Devices per edge broker when the drill picks the number of edges: one Mosquitto process
# holds one descriptor per device, and a process here may open 20,000 files.
DEVICES_PER_EDGE = 19_000
# The least number of edges the drill runs unless told otherwise: one edge could not show a
# bridge's behaviour beside another edge's (an edge restart while the others carry on).
MIN_EDGES = 2
# Scaled offline deadlines never go below this: a reconnect takes wall-clock time.
MIN_ALLOWANCE_S = 15
STEPS = ("broker", "edge", "database", "ingest", "monitor", "alerts", "double", "single")
STEP_TITLES = {
    "broker": "restart the (core) broker",
    "edge": "restart one edge broker (its devices wait and reconnect to it)",
    "database": "cut every database connection",
    "ingest": "kill -9 the ingest, start it again",
    "monitor": "kill -9 the monitor, start it again",
    "alerts": "kill -9 the alert dispatcher, start it again",
    "double": "two of each process",
    "single": "back to one of each (SIGTERM the second ones)",
}
ROLES = ("ingest", "monitor", "alerts")


@dataclass
class DrillConfig:
    devices: int = 100_000
    minutes: float = 10.0
    silent: float = 0.01  # a share of the fleet below 1, a count from 1 up
    time_scale: float = 0.1
    simulators: int = 0  # 0: one per DEVICES_PER_SIMULATOR devices
    seed: int = 1
    sink_delay_s: float = 0.1  # the sink answers as slowly as a remote webhook
    restart_gap_s: float = 5.0  # a killed process is started again after this
    database_server: str | None = None
    keep: bool = False
    progress_every_s: float = 0.0  # 0: about 20 lines over the run
    steps: tuple[str, ...] = STEPS  # a subset, to find which fault breaks what
    # Run the ingests on a shared subscription instead of the default plain one (to see
    # what Mosquitto's restart costs a group: README, "Running beyond one machine").
    shared_group: str = ""
    # Edge brokers bridged to a core (harness/bridges.py): None picks one per
    # DEVICES_PER_EDGE devices and at least MIN_EDGES; 0 runs one broker, no bridges.
    edges: int | None = None

    def __post_init__(self) -> None:
        if self.edges is not None and self.edges < 0:
            raise ValueError(f"edges must be 0 or more; got {self.edges}")
        if self.edge_count == 0:  # no edge to restart
            self.steps = tuple(s for s in self.steps if s != "edge")
        unknown = set(self.steps) - set(STEPS)
        if unknown or not self.steps:
            raise ValueError(f"steps must be some of {', '.join(STEPS)}; got {self.steps}")
        if "single" in self.steps and "double" not in self.steps:
            raise ValueError("'single' goes back from 'double': give both")
        self.steps = tuple(s for s in STEPS if s in self.steps)

    @property
    def silent_count(self) -> int:
        count = round(self.silent * self.devices) if self.silent < 1 else int(self.silent)
        return max(len(self.steps), min(count, self.devices // 2))

    @property
    def edge_count(self) -> int:
        if self.edges is not None:
            return self.edges
        return max(MIN_EDGES, math.ceil(self.devices / DEVICES_PER_EDGE))

    @property
    def simulator_count(self) -> int:
        """Each simulator process connects its devices to one edge, and every edge has as
        many of them (the count is rounded up to a multiple of the edges): an even share of
        the devices on each edge."""
        wanted = self.simulators or max(1, math.ceil(self.devices / DEVICES_PER_SIMULATOR))
        if self.edge_count == 0:
            return wanted
        return math.ceil(wanted / self.edge_count) * self.edge_count

    def edge_of(self, simulator: int) -> int:
        """The edge a simulator process's devices connect to: simulators dealt round."""
        return simulator % self.edge_count


@dataclass(frozen=True)
class Timings:
    """Deadlines and monitor timings for a fleet living `time_scale` times real time."""

    offline_after_s: dict[str, int]  # per model: every device's offline_after_s
    interval_s: dict[str, float]  # per model: wall-clock seconds between heartbeats
    blind_after_s: int
    resume_grace_s: int
    broker_down_s: float
    lease_s: int


def plan_timings(models: dict[str, ModelTiming], time_scale: float) -> Timings:
    """From the models' timings: scaled deadlines, and a blind-spot window short enough that
    the guard engages before any beating device's deadline passes.

    A device that beat just before the broker went down is due `allowance - interval` later;
    the guard needs `blind_after` plus a tick to engage: half that margin for each.
    """
    offline_after = scaled_deadlines(models, time_scale, at_least_s=MIN_ALLOWANCE_S)
    interval = {m: timing.interval_s * time_scale for m, timing in models.items()}
    margin = min(offline_after[m] - interval[m] for m in models)
    blind_after = max(2, int(margin // 2))
    return Timings(
        offline_after_s=offline_after,
        interval_s=interval,
        blind_after_s=blind_after,
        # Devices reconnect with backoff (up to ~2x the outage) before they beat again.
        resume_grace_s=max(20, 3 * blind_after),
        broker_down_s=blind_after + 3.0,
        lease_s=10,
    )


@dataclass
class SilentPlan:
    """Which devices fall silent, and when their deadline should pass (s after warm-up start)."""

    due_at: dict[str, float]  # device id -> seconds after warm-up start
    cohort: dict[str, str]  # device id -> the step its deadline was aimed at, or "spread"


def plan_silence(
    fleet,
    timings: Timings,
    *,
    steps: tuple[str, ...],
    count: int,
    warm_s: float,
    run_s: float,
    seed: int,
) -> SilentPlan:
    """Half the silent devices spread over the run, half in cohorts aimed at the steps."""
    draw = random.Random(f"drill:{seed}")
    slot = (run_s - warm_s) / (len(steps) + 1)
    offsets = {
        "broker": timings.blind_after_s + 1.0,  # held by the blind spot, then found once
        "edge": 1.0,  # due while one edge is down and the others carry on
        "database": 0.5,
        "ingest": 1.0,
        "monitor": 1.0,  # due while no monitor runs
        "alerts": -1.5,  # being sent when the dispatcher dies
        "double": slot / 2,
        "single": 1.0,
    }
    targets: list[tuple[float, str]] = []
    per_step = count // 2 // len(steps)
    for i, step in enumerate(steps):
        at = warm_s + slot * (i + 0.5) + offsets[step]
        targets += [(at, step)] * per_step
    spread = count - len(targets)
    start, end = warm_s + 3, warm_s + slot * (len(steps) + 0.5)
    targets += [(start + (end - start) * (k + 0.5) / spread, "spread") for k in range(spread)]

    lead = {  # a device must have beaten after warm-up began, before it falls silent
        d.device_id: timings.offline_after_s[d.spec.profile.model_id]
        - timings.interval_s[d.spec.profile.model_id] / 2
        + 2
        for d in fleet
    }
    # Not a car that sleeps when parked: its announced sleep, not the drill, decides when
    # its silence is overdue.
    free = [d.device_id for d in fleet if not d.spec.profile.sleeps_when_idle]
    draw.shuffle(free)
    # One silent device per household: the rest of its home keeps beating, so each silence
    # is that device's own alert and any site incident is a false one (checks.py).
    owner = {d.device_id: d.spec.owner.customer_id for d in fleet}
    due_at, cohort = {}, {}
    homes: set[str] = set()
    for at, step in sorted(targets):
        pick = next(
            (i for i, d in enumerate(free) if lead[d] <= at and owner[d] not in homes), None
        )
        if pick is None:
            continue
        device_id = free.pop(pick)
        homes.add(owner[device_id])
        due_at[device_id], cohort[device_id] = at, step
    return SilentPlan(due_at, cohort)
