"""Driving a whole fleet over MQTT from one process and one thread.

Each device keeps its own paho client and TCP connection, so it has its own birth message
and Last Will; paho's external-loop API (loop_read/loop_write/loop_misc on a selector, see
`connections`) multiplexes them all without a thread per device. This module keeps time:
a heap of wake-ups plays each device's heartbeats and fault connection changes.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import resource
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import paho.mqtt.client as mqtt

from devices.simulator.connections import Connections
from devices.simulator.device import SimDevice
from devices.simulator.links import DeviceLink, LinkState, make_link, publish_heartbeat
from devices.simulator.stats import Counters, SimulatorStats
from fleetwatch.settings import MqttTarget

log = logging.getLogger(__name__)

# Wall-clock seconds, not scaled: pings keep idle and silent devices connected.
KEEPALIVE_S = 60
# Longest wait in select(), so a stop request is seen promptly.
MAX_WAIT_S = 0.1
# On stop, how long every device's `offline` and DISCONNECT may take to be written.
SHUTDOWN_GRACE_S = 5.0
# File descriptors kept free beyond one per device (selector, logs, the host program).
SPARE_FDS = 64


def raise_fd_limit(needed: int) -> int:
    """Raise RLIMIT_NOFILE to its hard limit; fail clearly if `needed` still does not fit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit from %s to %s: %s", soft, hard, exc)
    if needed > soft:
        raise RuntimeError(
            f"{needed} file descriptors needed but the limit is {soft} (ulimit -n); "
            "simulate fewer devices or raise the hard limit"
        )
    return soft


class Simulator:
    """Connects every device of `fleet`, publishes its heartbeats and plays its faults.

    `time_scale` multiplies every device duration: 0.1 makes intervals 10x shorter.
    """

    def __init__(
        self,
        target: MqttTarget,
        *,
        prefix: str = "fleet",
        fleet: Sequence[SimDevice],
        protocol: str = "5",
        time_scale: float = 1.0,
    ) -> None:
        if not time_scale > 0:
            raise ValueError("time_scale must be positive")
        if protocol not in ("5", "3.1.1"):
            raise ValueError("protocol must be '5' or '3.1.1'")
        self.target, self.prefix, self.protocol = target, prefix, protocol
        self.time_scale = time_scale
        # Fresh devices, so one fleet list can be run twice and at any time scale.
        self.devices = [SimDevice(d.spec, time_scale=time_scale) for d in fleet]
        self._counters = Counters()
        self._counters.devices = len(self.devices)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.failure: BaseException | None = None  # why the background loop ended, if it failed

    def start(self) -> None:
        """Run the loop on a background thread."""
        if self._thread is not None:
            raise RuntimeError("simulator already started")
        self._stop.clear()
        self.failure = None
        self._thread = threading.Thread(
            target=self._run_in_background, name="fleet-simulator", daemon=True
        )
        self._thread.start()

    def _run_in_background(self) -> None:
        try:
            self.run(self._stop)
        except Exception as exc:
            self.failure = exc
            log.exception("simulator stopped on an error")

    def stop(self, timeout: float = SHUTDOWN_GRACE_S + 5) -> None:
        """Stop the background loop: devices publish `offline`, then DISCONNECT."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("simulator thread still running after %.1f s", timeout)
            self._thread = None

    def stats(self) -> SimulatorStats:
        """The counters as of now; safe to call from any thread."""
        return self._counters.snapshot()

    def run(self, stop_event: threading.Event) -> None:
        """Drive the fleet on this thread until `stop_event` is set, then shut down cleanly."""
        raise_fd_limit(len(self.devices) + SPARE_FDS)
        self._wakes: list[tuple[float, int, DeviceLink]] = []
        self._tiebreak = itertools.count()
        self._t0_mono = time.monotonic()
        self._t0_wall = datetime.now(UTC)  # the one wall-clock read; `now` derives from it
        self._never_connected = len(self.devices)
        links = [
            make_link(d, self.target, prefix=self.prefix, protocol=self.protocol,
                      keepalive_s=KEEPALIVE_S)
            for d in self.devices
        ]  # fmt: skip
        connections = Connections(links, self._counters, on_first_connect=self._power_on)
        self._counters.running = True
        log.info(
            "simulating %d devices against %s at time scale %s",
            len(links),
            self.target.redacted(),
            self.time_scale,
        )
        try:
            while not stop_event.is_set():
                connections.serve(connections.wait_s(self._wait_s()))
                mono = time.monotonic()
                self._fire_wakes(mono, connections)
                connections.tick(mono)
        finally:
            connections.close_all(SHUTDOWN_GRACE_S, MAX_WAIT_S)
            self._counters.running = False

    # -- inside ----------------------------------------------------------------------------

    def _wait_s(self) -> float:
        if not self._wakes:
            return MAX_WAIT_S
        return min(MAX_WAIT_S, max(0.0, self._wakes[0][0] - time.monotonic()))

    def _power_on(self, link: DeviceLink) -> None:
        """A device powers on at its first connection: fault offsets count from there."""
        link.device.start(self._now(time.monotonic()))
        self._schedule_wake(link)
        self._never_connected -= 1
        if self._never_connected == 0:
            self._counters.all_connected_s = round(time.monotonic() - self._t0_mono, 3)

    def _fire_wakes(self, mono: float, connections: Connections) -> None:
        while self._wakes and self._wakes[0][0] <= mono:
            _, _, link = heapq.heappop(self._wakes)
            try:
                self._wake(link, mono, connections)
            except Exception:
                # Not rescheduled: a device whose own logic fails would fail again at once.
                self._counters.errors += 1
                log.exception("%s: unexpected error; this device stops", link.device)

    def _wake(self, link: DeviceLink, mono: float, connections: Connections) -> None:
        """Play what the device has due: a connection change, then a heartbeat."""
        device = link.device
        now = self._now(mono)
        change = device.take_link_change(now)
        if change is not None:
            connections.change(link, change)
        due = device.next_due
        if due is not None and due <= now:
            body = device.heartbeat(now)
            if link.state is LinkState.CONNECTED:
                info = publish_heartbeat(link, body)
                if info.rc == mqtt.MQTT_ERR_SUCCESS:
                    self._counters.heartbeats_sent += 1
                else:
                    self._counters.publish_failures += 1
            else:
                self._counters.heartbeats_dropped += 1
        self._schedule_wake(link)

    def _schedule_wake(self, link: DeviceLink) -> None:
        device = link.device
        change = device.next_link_change
        moments = [m for m in (device.next_due, change and change[0]) if m is not None]
        if moments:
            mono = self._t0_mono + (min(moments) - self._t0_wall).total_seconds()
            heapq.heappush(self._wakes, (mono, next(self._tiebreak), link))

    def _now(self, mono: float) -> datetime:
        return self._t0_wall + timedelta(seconds=mono - self._t0_mono)
