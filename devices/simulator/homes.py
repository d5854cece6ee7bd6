"""Simulated homes: 2-6 devices at one site, some behind a hub, and the faults of a place.

    home (site)
    ├── alarm panel, thermostat, camera, EV charger ...   (straight to the router)
    └── hub ──── camera, thermostat ...                   (connect through the hub)

Two faults belong to a home, not to one device:
  router_dies  every device of the home loses its connection at the same moment
  hub_dies     the hub and every device behind it do
Each is played as the `power_loss` scenario (the broker sees the socket die and publishes
the Last Will, then nothing) given to each device it takes down, at one start time. A
`single` fault takes one device of the home alone (its own alert, not the home's).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from devices.simulator.device import DeviceSpec, Owner, SimDevice
from devices.simulator.fleet import home_site
from devices.simulator.profiles import PROFILES, Profile
from devices.simulator.scenarios import make_fault

HOME_FAULTS = ("router_dies", "hub_dies", "single")

HUB = Profile(
    type_code="hub",
    model_id="hub-v1",
    kind="home",
    interval_s=60,
    share=0.0,
    firmware=(("2.0.1", 1.0),),
    serial_prefix="HB1",
    names=("Hallway hub", "Living room hub"),
    metrics=(),
)
# What a home is made of; the first is always there (every home has a panel or thermostat).
_KINDS = ("alarm-panel-v3", "thermostat-v2", "camera-v1", "ev-charger-v1")


@dataclass(frozen=True)
class Home:
    site_id: str
    owner: Owner
    devices: tuple[SimDevice, ...]
    # The hub's id, and the ids of the devices behind it.
    hub: str | None
    behind: tuple[str, ...]
    fault: str | None
    # The ids of the devices its fault takes down.
    down: tuple[str, ...]


def build_homes(
    faults: Sequence[str | None],
    *,
    seed: int,
    fault_after_s: float,
    id_prefix: str = "home",
    time_scale: float = 1.0,
) -> list[Home]:
    """One home per entry of `faults` (None: a healthy home): the same for the same
    arguments. A home with the fault `hub_dies` always has a hub with devices behind it."""
    unknown = [f for f in faults if f is not None and f not in HOME_FAULTS]
    if unknown:
        raise ValueError(f"unknown home faults {unknown}; known: {', '.join(HOME_FAULTS)}")
    draw = random.Random(f"homes:{seed}:{id_prefix}")
    homes = []
    for n, fault in enumerate(faults):
        owner = Owner(f"{id_prefix}-owner-{n}", f"Owner{n} Example", "Europe/Berlin", "eu-central")
        size = draw.randint(2, 6)
        models = [_KINDS[0], *(draw.choice(_KINDS) for _ in range(size - 1))]
        with_hub = fault == "hub_dies" or (size >= 3 and draw.random() < 0.5)
        specs: list[tuple[str, Profile, str | None]] = []
        hub = f"{id_prefix}-{n}-hub" if with_hub else None
        if hub:
            specs.append((hub, HUB, None))
        for k, model in enumerate(models):
            # Behind the hub: the second device onwards, every other one.
            parent = hub if hub and k >= 1 and k % 2 == 1 else None
            specs.append((f"{id_prefix}-{n}-{k}", PROFILES[model], parent))
        behind = tuple(d for d, _, p in specs if p is not None)
        if fault == "router_dies":
            down = tuple(d for d, _, _ in specs)
        elif fault == "hub_dies":
            down = (hub, *behind)
        elif fault == "single":
            down = (specs[-1][0],)
        else:
            down = ()
        devices = tuple(
            SimDevice(
                DeviceSpec(
                    device_id=device_id,
                    profile=profile,
                    firmware=profile.firmware[0][0],
                    serial=f"{profile.serial_prefix}-{id_prefix}-{n}-{i}",
                    name=f"{draw.choice(profile.names)} {i}",
                    owner=owner,
                    seed=draw.getrandbits(64),
                    fault=(
                        make_fault("power_loss", start_after_s=fault_after_s)
                        if device_id in down
                        else None
                    ),
                ),
                time_scale=time_scale,
            )
            for i, (device_id, profile, _) in enumerate(specs)
        )
        homes.append(Home(f"home-{owner.customer_id}", owner, devices, hub, behind, fault, down))
    return homes


def home_rows(homes: Sequence[Home]) -> list[dict]:
    """The registry's import rows of these homes' devices: site and parent included."""
    rows = []
    for home in homes:
        for device in home.devices:
            spec = device.spec
            rows.append(
                {
                    "id": spec.device_id,
                    "model_id": spec.profile.model_id,
                    "name": spec.name,
                    "serial": spec.serial,
                    "firmware": spec.firmware,
                    "customer_id": home.owner.customer_id,
                    "customer_name": home.owner.customer_name,
                    "timezone": home.owner.timezone,
                    "region": home.owner.region,
                    "labels": ["simulated"] + ([f"home:{home.fault}"] if home.fault else []),
                    "parent_id": (spec.device_id in home.behind and home.hub) or None,
                    **home_site(home.owner),
                }
            )
    return rows
