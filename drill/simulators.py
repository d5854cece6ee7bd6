"""Simulator processes that record what the broker accepted: every heartbeat acknowledged
(PUBACK) goes to a TSV file, and devices fall silent at moments the drill picks.

    SimulatorProcess   the drill's handle: start, silence devices, poll reports, stop
      '-- simulator_main   devices.simulator in a child process (spawn)
            |-- DrillSimulator   the product's Simulator with DrillDevices
            |-- DrillDevice      falls silent at `silent_at`; notes how late it beats
            '-- AckRecorder      (device, mid) until its PUBACK, then a line of the TSV file
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import queue
import time
from array import array
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt

from core.settings import MqttTarget
from devices.simulator import pacing, runner
from devices.simulator.connections import Connections
from devices.simulator.device import DeviceSpec, SimDevice
from devices.simulator.links import publish_heartbeat
from devices.simulator.runner import Simulator
from devices.simulator.stats import SimulatorStats
from harness.stats import percentile

# How often a simulator process reports its counters to the drill.
REPORT_EVERY_S = 2.0


class Lateness:
    """How late each heartbeat went out compared with its due time; written by one thread."""

    def __init__(self) -> None:
        self.values = array("f")
        self.skipped = 0  # beat slots missed entirely (the device stays on its own beat)

    def add(self, late_s: float, interval_s: float) -> None:
        self.values.append(late_s)
        if late_s >= interval_s:
            self.skipped += int(late_s // interval_s)

    def summary(self) -> dict:
        values = sorted(self.values)  # then percentile()'s own sorts are one pass each
        return {
            "beats": len(values),
            "p50_s": round(percentile(values, 50) or 0.0, 3),
            "p99_s": round(percentile(values, 99) or 0.0, 3),
            "max_s": round(percentile(values, 100) or 0.0, 3),
            "over_1s": sum(1 for v in values if v > 1.0),
            "skipped": self.skipped,
        }


class DrillDevice(SimDevice):
    """A simulated device that falls silent at `silent_at` (set any time, from any thread),
    and notes how late each of its heartbeats is."""

    def __init__(self, spec: DeviceSpec, *, time_scale: float, lateness: Lateness) -> None:
        super().__init__(spec, time_scale=time_scale)
        self.lateness = lateness
        self.silent_at: datetime | None = None

    @property
    def next_due(self) -> datetime | None:
        due = super().next_due
        at = self.silent_at
        return None if due is not None and at is not None and due >= at else due

    def heartbeat(self, now: datetime) -> dict:
        due = super().next_due
        if due is not None:
            self.lateness.add((now - due).total_seconds(), self.interval.total_seconds())
        return super().heartbeat(now)


class AckRecorder:
    """Heartbeats sent and acknowledged: (device, mid) -> (seq, ts) until the PUBACK comes.

    paho keeps an unacknowledged QoS 1 message and resends it with the same mid after a
    reconnect, so the PUBACK finds its entry whichever connection it comes on.
    """

    def __init__(self, path: Path) -> None:
        self._file = open(path, "w", buffering=1 << 20)  # noqa: SIM115 - closed in close()
        self.pending: dict[tuple[str, int], tuple[int, str]] = {}
        self.sent = 0
        self.acked = 0
        self.refused = 0

    def publish(self, link, body: dict) -> mqtt.MQTTMessageInfo:
        info = publish_heartbeat(link, body)
        if info.rc == mqtt.MQTT_ERR_SUCCESS:
            self.sent += 1
            self.pending[(link.device.device_id, info.mid)] = (body["seq"], body["ts"])
        return info

    def puback(self, link, mid: int, reason_code) -> None:
        entry = self.pending.pop((link.device.device_id, mid), None)
        if entry is None:
            return  # a birth or offline status message
        if reason_code.is_failure:
            self.refused += 1
            return
        self.acked += 1
        # The PUBACK's time too: a publish cut by a broker restart is resent and accepted
        # by the next broker, long after the time in its body.
        self._file.write(f"{link.device.device_id}\t{entry[0]}\t{entry[1]}\t{time.time():.3f}\n")

    def close(self) -> None:
        self._file.close()


def _recording_connections(recorder: AckRecorder) -> type[Connections]:
    class RecordingConnections(Connections):
        def _on_publish(self, client, link, mid, reason_code, properties) -> None:
            recorder.puback(link, mid, reason_code)
            super()._on_publish(client, link, mid, reason_code, properties)

    return RecordingConnections


class DrillSimulator(Simulator):
    """The product's simulator with DrillDevices, so the drill can silence devices at times
    it picks after the fleet has connected."""

    def __init__(self, target: MqttTarget, *, specs: list[DeviceSpec], **kwargs) -> None:
        super().__init__(target, fleet=[], **kwargs)
        self.lateness = Lateness()
        self.devices = [
            DrillDevice(spec, time_scale=self.time_scale, lateness=self.lateness) for spec in specs
        ]
        self._counters.devices = len(self.devices)
        self.by_id = {d.device_id: d for d in self.devices}


@dataclass(frozen=True)
class SimulatorJob:
    index: int
    url: str  # this process's own listener
    prefix: str
    specs: list[DeviceSpec]
    time_scale: float
    ack_path: str


def simulator_main(job: SimulatorJob, reports, commands, stop) -> None:
    """A simulator process: run the job's devices until `stop`, reporting every few seconds.

    `commands` carries {device id: epoch seconds} of devices to silence at those moments.
    """
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s sim %(levelname)s %(message)s")
    # Reconnect backoff lives at the fleet's pace too: its 60 s cap becomes 6 s at 0.1, so a
    # broker restart costs a device the same share of its heartbeat interval as it would at
    # real time (an unscaled cap would cost a car two of its 30 s beats).
    pacing.RECONNECT_MAX_S = max(
        2 * pacing.RECONNECT_MIN_S, pacing.RECONNECT_MAX_S * job.time_scale
    )
    recorder = AckRecorder(Path(job.ack_path))
    # Inside this process only: heartbeats go through the recorder, PUBACKs reach it.
    runner.publish_heartbeat = recorder.publish
    runner.Connections = _recording_connections(recorder)
    sim = DrillSimulator(
        MqttTarget.from_url(job.url),
        prefix=job.prefix,
        specs=job.specs,
        protocol="5",
        time_scale=job.time_scale,
    )
    sim.start()

    def report(kind: str) -> None:
        stats = sim.stats()
        snapshot = {f.name: getattr(stats, f.name) for f in fields(SimulatorStats)}
        snapshot.update(
            sent=recorder.sent,
            acked=recorder.acked,
            refused=recorder.refused,
            unacked=len(recorder.pending),
            lateness=sim.lateness.summary()
            if kind == "final"
            else {"beats": len(sim.lateness.values), "skipped": sim.lateness.skipped},
            failure=repr(sim.failure) if sim.failure else None,
            reported_at=time.time(),
        )
        reports.put((kind, job.index, snapshot))

    reported = time.monotonic()
    while not stop.wait(0.2):
        with contextlib.suppress(queue.Empty):
            while True:
                for device_id, at in commands.get_nowait().items():
                    sim.by_id[device_id].silent_at = datetime.fromtimestamp(at, UTC)
        if time.monotonic() - reported >= REPORT_EVERY_S:
            reported = time.monotonic()
            report("progress")
    sim.stop()
    recorder.close()
    report("final")


class SimulatorProcess:
    """The parent's handle on one simulator process."""

    def __init__(self, job: SimulatorJob) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.job = job
        self.reports = ctx.Queue()
        self.commands = ctx.Queue()
        self._stop = ctx.Event()
        self.proc = ctx.Process(
            target=simulator_main,
            args=(job, self.reports, self.commands, self._stop),
            name=f"drill-sim-{job.index}",
            daemon=True,
        )
        self.latest: dict = {}
        self.final: dict | None = None

    def start(self) -> SimulatorProcess:
        self.proc.start()
        return self

    def silence(self, at: dict[str, float]) -> None:
        self.commands.put(at)

    def poll(self) -> dict:
        with contextlib.suppress(queue.Empty):
            while True:
                kind, _, snapshot = self.reports.get_nowait()
                self.latest = snapshot
                if kind == "final":
                    self.final = snapshot
        return self.latest

    def stop(self, timeout_s: float = 60.0) -> dict:
        self._stop.set()
        deadline = time.monotonic() + timeout_s
        while self.final is None and time.monotonic() < deadline:
            self.poll()
            if self.final is None and not self.proc.is_alive():
                self.poll()
                break
            time.sleep(0.1)
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(5)
        for q in (self.reports, self.commands):
            q.close()
            q.join_thread()
        return self.final or self.latest
