"""Driving a whole fleet over MQTT from one process and one thread.

Each device keeps its own paho client and TCP connection, so it has its own birth message
and Last Will; paho's external-loop API (loop_read/loop_write/loop_misc on a selector, see
`connections`) multiplexes them all without a thread per device. This module keeps time:
a heap of wake-ups plays each device's heartbeats, fault connection changes and update
steps. Each device has one live wake-up, at its earliest due moment; an earlier moment
(a command arriving) supersedes it, and the superseded heap entry is skipped when popped.

An `ota_update` command becomes an `ota.OtaPlan` at once; its steps wait on the device's
link until due: publish each message, shut down at `rebooting` (a clean disconnect, so no
Last Will), reconnect at the end of the reboot window, and boot on that connection (new
firmware in the heartbeats, uptime from 0). A bricked device never reconnects; one whose
fault has its link down boots without reconnecting, and its fault decides when it does.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import resource
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Literal, NamedTuple

import paho.mqtt.client as mqtt

from contract.commands import NotACommand, parse_command
from core.settings import MqttTarget
from devices.simulator.connections import Connections
from devices.simulator.device import SimDevice
from devices.simulator.links import (
    DeviceLink,
    LinkState,
    make_link,
    publish_heartbeat,
    publish_ota,
)
from devices.simulator.ota import OtaPlan, OtaProfile, OtaUpdater, as_ota_profile
from devices.simulator.scenarios import Link
from devices.simulator.stats import Counters, SimulatorStats

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


class OtaStep(NamedTuple):
    """One thing an update has the device do at `at` (wall clock)."""

    at: datetime
    kind: Literal["publish", "shut_down", "come_back"]
    body: dict | None = None  # publish: the ota message
    boot_into: str | None = None  # shut_down: the firmware it boots with; None: bricked


def ota_steps(plan: OtaPlan) -> list[OtaStep]:
    """A plan as timed steps: its messages, then the shutdown and the return, if any."""
    steps = [OtaStep(m.at, "publish", body=m.body(plan.command)) for m in plan.messages]
    if plan.down_at is not None:
        boot_into = None if plan.back_at is None else plan.firmware_after
        steps.append(OtaStep(plan.down_at, "shut_down", boot_into=boot_into))
    if plan.back_at is not None:
        steps.append(OtaStep(plan.back_at, "come_back"))
    return steps


class Simulator:
    """Connects every device of `fleet`, publishes its heartbeats and plays its faults.

    `time_scale` multiplies every device duration: 0.1 makes intervals 10x shorter.

    Given an `ota_profile` (`OtaProfile()` for the default rates), every device subscribes
    to its cmd topic and answers `ota_update` commands, failing as the profile says (see
    `ota`). Without one, devices take no commands and make no subscription, as before:
    the embedded amqtt broker does not cope with a subscription per device (every connect
    there walks every subscription against every retained message, and a subscription
    made meanwhile kills the connecting session), so the demo must not get them unasked.
    """

    def __init__(
        self,
        target: MqttTarget,
        *,
        prefix: str = "fleet",
        fleet: Sequence[SimDevice],
        protocol: str = "5",
        time_scale: float = 1.0,
        ota_profile: OtaProfile | Mapping | None = None,
    ) -> None:
        if not time_scale > 0:
            raise ValueError("time_scale must be positive")
        if protocol not in ("5", "3.1.1"):
            raise ValueError("protocol must be '5' or '3.1.1'")
        self.target, self.prefix, self.protocol = target, prefix, protocol
        self.time_scale = time_scale
        self.ota_profile = None if ota_profile is None else as_ota_profile(ota_profile)
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
        self._wakes: list[tuple[float, int, DeviceLink]] = []  # (mono, id, link)
        self._tiebreak = itertools.count()
        self._t0_mono = time.monotonic()
        self._t0_wall = datetime.now(UTC)  # the one wall-clock read; `now` derives from it
        self._never_connected = len(self.devices)
        links = [
            make_link(d, self.target, prefix=self.prefix, protocol=self.protocol,
                      keepalive_s=KEEPALIVE_S)
            for d in self.devices
        ]  # fmt: skip
        if self.ota_profile is not None:
            for link in links:
                link.ota = OtaUpdater(self.ota_profile)
        connections = Connections(
            links,
            self._counters,
            on_first_connect=self._power_on,
            on_reconnect=self._reconnected,
            on_command=None if self.ota_profile is None else self._on_command,
        )
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

    def _reconnected(self, link: DeviceLink) -> None:
        """Back after a reboot window: the device boots on this connection."""
        device = link.device
        if device.is_down and not device.bricked and not link.wanted_down:
            device.boot(self._now(time.monotonic()))
            self._schedule_wake(link)

    def _on_command(self, link: DeviceLink, payload: bytes) -> None:
        """A message on the device's cmd topic: plan what it does about it."""
        device = link.device
        try:
            command = parse_command(payload)
        except NotACommand as exc:
            self._counters.commands_ignored += 1
            log.debug("%s: ignoring a command: %s", device.device_id, exc)
            return
        plan = None
        if not device.is_down:  # between `rebooting` and its DISCONNECT: lost
            plan = link.ota.receive(command, device, self._now(time.monotonic()))
        if plan is None:
            self._counters.commands_ignored += 1
            log.debug(
                "%s: ignoring command %s (handled, or shut down)",
                device.device_id,
                command.command_id,
            )
            return
        self._counters.commands_received += 1
        link.ota_steps = sorted([*link.ota_steps, *ota_steps(plan)], key=lambda step: step.at)
        self._schedule_wake(link)

    def _fire_wakes(self, mono: float, connections: Connections) -> None:
        while self._wakes and self._wakes[0][0] <= mono:
            at, token, link = heapq.heappop(self._wakes)
            if link.wake != (at, token):
                continue  # superseded by an earlier wake-up, which rescheduled the device
            link.wake = None
            try:
                self._wake(link, mono, connections)
            except Exception:
                # Not rescheduled: a device whose own logic fails would fail again at once.
                self._counters.errors += 1
                log.exception("%s: unexpected error; this device stops", link.device)

    def _wake(self, link: DeviceLink, mono: float, connections: Connections) -> None:
        """Play what the device has due: a connection change, update steps, a heartbeat."""
        device = link.device
        now = self._now(mono)
        change = device.take_link_change(now)
        if change is not None:
            connections.change(link, change)
        self._play_ota(link, now, connections)
        due = device.next_due
        if due is not None and due <= now:
            body = device.heartbeat(now)
            sent = False
            if link.state is LinkState.CONNECTED:
                info = publish_heartbeat(link, body)
                sent = info.rc == mqtt.MQTT_ERR_SUCCESS
                if sent:
                    self._counters.heartbeats_sent += 1
                else:
                    self._counters.publish_failures += 1
            else:
                self._counters.heartbeats_dropped += 1
            if not sent and "next_checkin_s" in body:
                device.announcement_undelivered(now)
        self._schedule_wake(link)

    def _play_ota(self, link: DeviceLink, now: datetime, connections: Connections) -> None:
        steps = link.ota_steps
        while steps and steps[0].at <= now:
            step = steps[0]
            if step.kind == "come_back" and link.state is not LinkState.DOWN:
                # The reboot's clean disconnect still waits for a PUBACK: look again shortly.
                steps[0] = step._replace(at=now + timedelta(seconds=MAX_WAIT_S))
                return
            steps.pop(0)
            if step.kind == "publish":
                self._publish_ota(link, step.body)
            elif step.kind == "shut_down":
                link.device.shut_down(boot_into=step.boot_into)
                connections.take_down(link, Link.CLEAN_DISCONNECT)  # no Last Will
                self._counters.reboots += 1
                if step.boot_into is None:
                    self._counters.bricked += 1
            elif link.device.fault_keeps_link_down:
                link.device.boot(now)  # offline, as its fault wants, until the fault ends
            else:
                connections.bring_up(link)  # boots once connected (`_reconnected`)

    def _publish_ota(self, link: DeviceLink, body: dict) -> None:
        if link.state is not LinkState.CONNECTED:
            self._counters.ota_messages_dropped += 1
            return
        if publish_ota(link, body).rc == mqtt.MQTT_ERR_SUCCESS:
            self._counters.ota_messages_sent += 1
        else:
            self._counters.publish_failures += 1

    def _schedule_wake(self, link: DeviceLink) -> None:
        """Keep one live wake-up per device, at the earliest thing it has due."""
        device = link.device
        change = device.next_link_change
        step = link.ota_steps[0].at if link.ota_steps else None
        moments = [m for m in (device.next_due, change and change[0], step) if m is not None]
        if not moments:
            return
        mono = self._t0_mono + (min(moments) - self._t0_wall).total_seconds()
        if link.wake is not None and link.wake[0] <= mono:
            return  # the pending one comes first and reschedules when it fires
        link.wake = (mono, next(self._tiebreak))
        heapq.heappush(self._wakes, (*link.wake, link))

    def _now(self, mono: float) -> datetime:
        return self._t0_wall + timedelta(seconds=mono - self._t0_mono)
