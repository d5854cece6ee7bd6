"""Generating a deterministic fleet of simulated devices, and its rows for the registry."""

from __future__ import annotations

import random
from collections.abc import Sequence

from contract.ids import is_device_id
from devices.simulator import identity
from devices.simulator.device import DeviceSpec, SimDevice
from devices.simulator.profiles import PROFILES, Profile
from devices.simulator.scenarios import SCENARIOS, Fault, fits, make_fault


def build_fleet(
    n: int,
    *,
    seed: int,
    fault_share: float = 0.02,
    scenarios: Sequence[str] | None = None,
    id_prefix: str = "sim",
) -> list[SimDevice]:
    """`n` devices, the same for the same arguments: mostly home devices, some cars.

    `fault_share` of them get one fault from `scenarios` (default: all), in turn.
    """
    if n < 0:
        raise ValueError("n must not be negative")
    if not 0 <= fault_share <= 1:
        raise ValueError("fault_share must be between 0 and 1")
    if not is_device_id(f"{id_prefix}-thermo-{max(n - 1, 0):05d}"):
        raise ValueError(f"id prefix {id_prefix!r} does not make valid device ids")
    names = list(SCENARIOS) if scenarios is None else list(scenarios)
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown:
        raise ValueError(f"unknown scenarios {unknown}; known: {', '.join(SCENARIOS)}")

    # The prefix is in the seed so two fleets side by side get different serials and VINs.
    draw = random.Random(f"fleet:{seed}:{id_prefix}")
    profiles = list(PROFILES.values())
    kinds = draw.choices(profiles, weights=[p.share for p in profiles], k=n)
    owners = identity.make_owners(draw, n)
    faults = _assign_faults(draw, kinds, names, fault_share)
    serial_base = draw.randrange(16**8)
    vin_base = draw.randrange(10**6)

    fleet = []
    cars = 0
    for index, (profile, owner) in enumerate(zip(kinds, owners, strict=True)):
        name = draw.choice(profile.names)
        vin = None
        if profile.kind == "vehicle":
            vin, make = identity.make_vin(draw, vin_base + cars)
            name = f"{name} ({make})"
            cars += 1
        spec = DeviceSpec(
            device_id=f"{id_prefix}-{profile.type_code}-{index:05d}",
            profile=profile,
            firmware=_weighted(draw, profile.firmware),
            serial=identity.make_serial(draw, profile.serial_prefix, serial_base + index),
            name=name,
            owner=owner,
            seed=draw.getrandbits(64),
            vin=vin,
            fault=faults.get(index),
        )
        fleet.append(SimDevice(spec))
    return fleet


def _assign_faults(
    draw: random.Random, kinds: list[Profile], names: list[str], share: float
) -> dict[int, Fault]:
    """Fault by device index, for round(share * n) devices that can show one of `names`."""

    def able_to(name: str, profile: Profile) -> bool:
        return fits(SCENARIOS[name], profile.reports, profile.sleeps_when_idle)

    able = [i for i, p in enumerate(kinds) if any(able_to(s, p) for s in names)]
    count = min(len(able), round(share * len(kinds)))
    faults = {}
    given = dict.fromkeys(names, 0)
    for turn, index in enumerate(sorted(draw.sample(able, count))):
        # Take scenarios in turn so a small share still shows every kind of fault; the
        # least given first, so those only a few devices can show (cars') are not crowded
        # out by the device kinds that cannot.
        rotated = names[turn % len(names) :] + names[: turn % len(names)]
        fitting = [s for s in rotated if able_to(s, kinds[index])]
        name = min(fitting, key=lambda s: given[s])
        given[name] += 1
        start = draw.uniform(*SCENARIOS[name].start_after_s)
        faults[index] = make_fault(name, start_after_s=round(start))
    return faults


def _weighted(draw: random.Random, options: tuple[tuple[str, float], ...]) -> str:
    return draw.choices([o[0] for o in options], weights=[o[1] for o in options])[0]


def registry_rows(fleet: Sequence[SimDevice], *, sites: bool = False) -> list[dict]:
    """One `devices.registry.import_devices` row per device.

    With `sites`, each owner's home devices share a site, their home (cars are not behind
    its router)."""
    rows = []
    for device in fleet:
        spec = device.spec
        labels = ["simulated"]
        if spec.fault is not None:
            labels.append(f"fault:{spec.fault.name}")
        rows.append(
            {
                "id": spec.device_id,
                "model_id": spec.profile.model_id,
                "name": spec.name,
                "serial": spec.serial,
                "vin": spec.vin,
                "firmware": spec.firmware,
                "customer_id": spec.owner.customer_id,
                "customer_name": spec.owner.customer_name,
                "timezone": spec.owner.timezone,
                "region": spec.owner.region,
                "labels": labels,
            }
        )
        if sites and spec.profile.kind == "home":
            rows[-1].update(home_site(spec.owner))
    return rows


def home_site(owner) -> dict:
    """The registry's site fields of an owner's home."""
    return {
        "site_id": f"home-{owner.customer_id}",
        "site_name": f"{owner.customer_name.split()[0]}'s home",
        "site_address": f"{len(owner.customer_id) * 3 % 97 + 1} Simulated Street",
    }
