"""Fleet simulator: fake devices that heartbeat over MQTT, some of them faulty on purpose.

build_fleet(n, seed=...) -> [SimDevice]     fleet.py     who the devices are
registry_rows(fleet)     -> [dict]          fleet.py     rows for devices.registry
SimDevice.heartbeat(now) -> dict            device.py    pure state machine
OtaUpdater.receive(command, device, now)    ota.py       an update as a pure plan
Simulator(target, fleet=...).start()        runner.py    one thread drives them all
"""

from devices.simulator.device import DeviceSpec, Owner, SimDevice
from devices.simulator.fleet import build_fleet, registry_rows
from devices.simulator.ota import OtaProfile, OtaRates, load_ota_profile
from devices.simulator.runner import Simulator
from devices.simulator.scenarios import SCENARIOS, Fault, make_fault
from devices.simulator.stats import SimulatorStats

__all__ = [
    "SCENARIOS",
    "DeviceSpec",
    "Fault",
    "OtaProfile",
    "OtaRates",
    "Owner",
    "SimDevice",
    "Simulator",
    "SimulatorStats",
    "build_fleet",
    "load_ota_profile",
    "make_fault",
    "registry_rows",
]
