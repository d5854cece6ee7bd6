"""Fleet simulator: fake devices that heartbeat over MQTT, some of them faulty on purpose.

build_fleet(n, seed=...) -> [SimDevice]     fleet.py     who the devices are
registry_rows(fleet)     -> [dict]          fleet.py     rows for devices.registry
SimDevice.heartbeat(now) -> dict            device.py    pure state machine
Simulator(target, fleet=...).start()        runner.py    one thread drives them all
"""

from devices.simulator.device import DeviceSpec, Owner, SimDevice
from devices.simulator.fleet import build_fleet, registry_rows
from devices.simulator.runner import Simulator
from devices.simulator.scenarios import SCENARIOS, Fault, make_fault
from devices.simulator.stats import SimulatorStats

__all__ = [
    "SCENARIOS",
    "DeviceSpec",
    "Fault",
    "Owner",
    "SimDevice",
    "Simulator",
    "SimulatorStats",
    "build_fleet",
    "make_fault",
    "registry_rows",
]
