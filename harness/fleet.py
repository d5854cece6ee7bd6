"""A simulated fleet (devices.simulator's profiles) registered in a database, as the demo,
the drill and `fleetwatch simulate --register` need it.

A fleet living `time_scale` times real time misses its heartbeats that much sooner, so its
offline deadlines are scaled with it: each device's `offline_after_s` becomes its model's
allowance (interval x allowed misses + grace) x time_scale, and never less than a floor
(a reconnect takes wall-clock time, whatever the fleet's pace).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import psycopg

from devices.registry import ImportReport, RowError, import_devices
from devices.simulator.device import SimDevice
from devices.simulator.fleet import registry_rows

_MODELS = "SELECT id, heartbeat_interval_s, allowed_misses, grace_s FROM device_models"


@dataclass(frozen=True, slots=True)
class ModelTiming:
    """A device model's heartbeat timing, as device_models holds it."""

    interval_s: int
    allowed_misses: int
    grace_s: int

    @property
    def allowance_s(self) -> int:
        """Silence allowed before a device of the model is offline."""
        return self.interval_s * self.allowed_misses + self.grace_s


class FleetNotRegistered(RuntimeError):
    """The registry refused the fleet: nothing of it was imported. `errors` says why."""

    def __init__(self, errors: list[RowError]) -> None:
        super().__init__(f"the registry refused the fleet: {errors[:3]}")
        self.errors = errors


def model_timings(conn: psycopg.Connection) -> dict[str, ModelTiming]:
    """Every device model's heartbeat timing."""
    return {m: ModelTiming(i, misses, grace) for m, i, misses, grace in conn.execute(_MODELS)}


def scaled_deadlines(
    models: Mapping[str, ModelTiming], time_scale: float, *, at_least_s: int
) -> dict[str, int]:
    """Per model: offline_after_s for a fleet living `time_scale` times real time."""
    return {
        model: max(at_least_s, round(timing.allowance_s * time_scale))
        for model, timing in models.items()
    }


def register_fleet(
    conn: psycopg.Connection,
    fleet: Sequence[SimDevice],
    *,
    time_scale: float | None = None,
    at_least_s: int = 0,
    labels: Mapping[str, Sequence[str]] | None = None,
    sites: bool = False,
) -> ImportReport:
    """Register `fleet`, and its owners as customers, through the registry's import: every
    device or, if the registry refuses one, none (FleetNotRegistered).

    With `time_scale`, every device's offline deadline is its model's scaled allowance
    (`scaled_deadlines`); without, the models' own apply. `labels` adds labels to devices by
    id. With `sites`, each owner's home devices share a site (fleet.registry_rows).
    """
    rows = registry_rows(fleet, sites=sites)
    if time_scale is not None:
        deadlines = scaled_deadlines(model_timings(conn), time_scale, at_least_s=at_least_s)
        for row in rows:
            row["offline_after_s"] = deadlines[row["model_id"]]
    for row in rows:
        row["labels"].extend((labels or {}).get(row["id"], ()))
    report = import_devices(conn, rows)
    if not report.ok:
        raise FleetNotRegistered(report.errors)
    return report
