"""The fault drill's machinery: a restartable broker, a notification sink, the processes under
test, and simulator processes that record what the broker acknowledged.

    bench/drill.py
      |-- DrillBroker        Mosquitto with persistence: a restart keeps sessions and queues;
      |                      one listener for the services, one per simulator process
      |-- NotificationSink   HTTP receiver for Apprise json:// URLs, in its own process
      |-- FleetProcess       `.venv/bin/fleetwatch ingest|monitor|alerts`, as in production
      '-- SimulatorProcess   devices.simulator in a child process (spawn), which writes every
                             heartbeat the broker acknowledged (PUBACK) to a TSV file

A listener per simulator process: every device has its own TCP connection, and one
(address, port) pair has only ~28,000 ephemeral ports towards it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import queue
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from array import array
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import paho.mqtt.client as mqtt

from core.settings import MqttTarget
from devices.simulator import pacing, runner
from devices.simulator.connections import Connections
from devices.simulator.device import DeviceSpec, SimDevice
from devices.simulator.links import publish_heartbeat
from devices.simulator.runner import Simulator
from devices.simulator.stats import SimulatorStats

SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])
MOSQUITTO = shutil.which("mosquitto", path=SEARCH_PATH)
FLEETWATCH = str(Path(sys.executable).with_name("fleetwatch"))
# Descriptors the broker needs besides one per device: listeners, services, logs, files.
BROKER_SPARE_FDS = 64
# How often a simulator process reports its counters to the drill.
REPORT_EVERY_S = 2.0
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 0.2).close()
        return True
    except OSError:
        return False


def stamp() -> str:
    """Wall-clock time for the drill's step lines."""
    return datetime.now().strftime("%H:%M:%S.%f")[:-3]


# -- the broker -------------------------------------------------------------------------------


class DrillBroker:
    """A private Mosquitto that survives restarts: persistence on, same ports every time."""

    def __init__(self, workdir: Path, *, listeners: int) -> None:
        if MOSQUITTO is None:
            raise RuntimeError("the drill needs the mosquitto binary (Debian package mosquitto)")
        self.dir = workdir / "mosquitto"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ports = [free_port() for _ in range(listeners)]
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self._write_conf()

    def _write_conf(self) -> None:
        lines = [f"listener {port} 127.0.0.1" for port in self.ports]
        lines += [
            "allow_anonymous true",
            "persistence true",
            f"persistence_location {self.dir}/",
            # Stay the user running the drill: the default drops to `mosquitto`, which may
            # not write the temp dir (persistence then silently fails on shutdown).
            f"user {_user_name()}",
            # As in deploy/mosquitto/mosquitto.conf: big queues for the ingest's session.
            "max_queued_messages 10000000",
            "max_inflight_messages 10000",
            "persistent_client_expiration 1d",
            f"log_dest file {self.dir}/mosquitto.log",
            "log_type error",
            "log_type warning",
            "log_type notice",
        ]
        (self.dir / "mosquitto.conf").write_text("\n".join(lines) + "\n")

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc and self.proc.poll() is None else None

    def url(self, listener: int = 0, user: str = "fleetwatch") -> str:
        return f"mqtt://{user}@127.0.0.1:{self.ports[listener]}"

    def start(self, timeout_s: float = 20.0) -> None:
        """Start it; the first start picks other ports if a port was taken meanwhile (a
        drill beside this one). A restart keeps its ports: that is what is drilled."""
        for _ in range(1 if self.starts else 5):
            if self._start_once(timeout_s):
                self.starts += 1
                return
            if self.starts:
                break
            self.ports = [free_port() for _ in self.ports]
            self._write_conf()
        raise RuntimeError(f"mosquitto did not start; see {self.dir}/mosquitto.log")

    def _start_once(self, timeout_s: float) -> bool:
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.dir / "mosquitto.conf")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=self._raise_fd_limit,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:  # a port in use: mosquitto exits at once
                self.proc = None
                return False
            # Open ports are ours only if our process still runs a moment later.
            if all(port_open(p) for p in self.ports):
                time.sleep(0.2)
                if self.proc.poll() is None:
                    return True
            time.sleep(0.05)
        self.stop()
        return False

    def stop(self, timeout_s: float = 60.0) -> None:
        """A clean stop (SIGTERM): Mosquitto writes its sessions and queues to disk."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def _raise_fd_limit(self) -> None:  # runs in the child, before exec
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def broker_capacity(connections: int) -> int:
    """How many device connections one broker process may hold here, raising the open-file
    limit for our children if `connections` needs it and we are allowed to."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = connections + BROKER_SPARE_FDS
    if needed > hard:
        with contextlib.suppress(ValueError, OSError):  # needs CAP_SYS_RESOURCE
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, needed))
            hard = needed
    return hard - BROKER_SPARE_FDS


def _user_name() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


# -- the notification sink --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Post:
    """One message as the sink received it."""

    at: float  # time.time() once the body was read
    path: str  # the channel: /<customer id> or /staff
    title: str
    message: str


class _Server(ThreadingHTTPServer):
    request_queue_size = 1024  # the default 5 drops connections from a dozen senders
    daemon_threads = True


def _serve_sink(out, stop, delay_s: float) -> None:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            at = time.time()
            try:
                post = json.loads(body)
            except ValueError:
                post = {}
            # Recorded before the reply: once the body is in, the customer has the message,
            # whatever happens to the sender afterwards.
            out.put((at, self.path, post.get("title", ""), post.get("message", "")))
            if delay_s:  # a remote service's response time
                time.sleep(delay_s)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = _Server(("127.0.0.1", 0), Handler)
    out.put(("port", server.server_address[1]))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    stop.wait()
    server.shutdown()
    server.server_close()


class NotificationSink:
    """An HTTP endpoint for Apprise json:// URLs in a child process; `drain()` the posts."""

    def __init__(self, delay_s: float = 0.0) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._queue = ctx.Queue()
        self._stop = ctx.Event()
        self._proc = ctx.Process(
            target=_serve_sink, args=(self._queue, self._stop, delay_s), daemon=True
        )
        self.port = 0
        self.posts: list[Post] = []

    def start(self) -> NotificationSink:
        self._proc.start()
        tag, self.port = self._queue.get(timeout=30)
        assert tag == "port"
        return self

    def url(self, path: str) -> str:
        return f"json://127.0.0.1:{self.port}/{path}"

    def drain(self) -> list[Post]:
        """Take in what arrived since the last drain; return every post so far."""
        with contextlib.suppress(queue.Empty):
            while True:
                self.posts.append(Post(*self._queue.get_nowait()))
        return self.posts

    def stop(self) -> None:
        self.drain()
        self._stop.set()
        self._proc.join(10)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(5)
        self._queue.close()
        self._queue.join_thread()


# -- the processes under test -----------------------------------------------------------------


class FleetProcess:
    """One `fleetwatch <command>` process; kill -9 and restart keep its name and environment.

    Each start is a new instance for the memory check (`Instance`), compared with itself.
    """

    def __init__(self, name: str, command: str, env: dict[str, str], logs: Path) -> None:
        self.name, self.command, self.env, self.logs = name, command, env, logs
        self.proc: subprocess.Popen | None = None
        self.instances: list[Instance] = []
        self._log_file = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def current(self) -> Instance | None:
        return self.instances[-1] if self.instances and self.alive else None

    @property
    def log_path(self) -> Path:
        return self.logs / f"{self.name}.{len(self.instances)}.log"

    def start(self) -> FleetProcess:
        if self.alive:
            raise RuntimeError(f"{self.name} is already running")
        self._close_log()
        self.instances.append(Instance(f"{self.name}#{len(self.instances) + 1}", time.time()))
        self.instances[-1].log = self.log_path
        self._log_file = open(self.log_path, "wb")  # noqa: SIM115 - the child writes to it
        self.proc = subprocess.Popen(
            [FLEETWATCH, self.command],
            env=self.env,
            cwd=self.logs,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )
        self.instances[-1].pid = self.proc.pid
        return self

    def kill9(self) -> None:
        """SIGKILL: no cleanup, no flush, no acknowledgement."""
        if self.alive:
            os.kill(self.proc.pid, signal.SIGKILL)
        self._reap("killed")

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM, as a deploy or scale-down would; SIGKILL if it does not end in time."""
        if self.alive:
            self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._reap("stopped")

    def wait_for_log(self, text: str, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if text in self.log_path.read_text(errors="replace"):
                return True
            if not self.alive:
                return False
            time.sleep(0.05)
        return False

    def log_count(self, text: str) -> int:
        """Lines with `text` over every instance's log (warnings, errors)."""
        total = 0
        for path in self.logs.glob(f"{self.name}.*.log"):
            total += sum(
                1 for line in path.read_text(errors="replace").splitlines() if text in line
            )
        return total

    def sample(self) -> None:
        """Record the current instance's resident memory and CPU time (from /proc)."""
        instance = self.current
        if instance is None:
            return
        rss, cpu = proc_rss_kb(instance.pid), proc_cpu_s(instance.pid)
        if rss is not None:
            instance.samples.append((time.time(), rss))
        if cpu is not None:
            instance.cpu_s = cpu

    def _reap(self, how: str) -> None:
        if self.proc is not None:
            self.proc.wait()
            if self.instances and self.instances[-1].ended_at is None:
                self.instances[-1].ended_at = time.time()
                self.instances[-1].ended = how
        self.proc = None
        self._close_log()

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


@dataclass
class Instance:
    """One run of a process: its memory samples, from its start to its end."""

    label: str
    started_at: float
    pid: int = 0
    ended_at: float | None = None
    ended: str = ""  # killed | stopped; empty while it runs
    cpu_s: float = 0.0
    samples: list[tuple[float, int]] = field(default_factory=list)  # (time, VmRSS kB)
    log: Path | None = None

    def log_times(self, marker: str) -> list[float]:
        """When this instance logged a line with `marker` (epoch seconds), in order."""
        if self.log is None or not self.log.exists():
            return []
        times = []
        with self.log.open(errors="replace") as lines:
            for line in lines:
                if marker in line:
                    with contextlib.suppress(ValueError):
                        at = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
                        times.append(at.timestamp())
        return times

    def rss_at(self, moment: float) -> int | None:
        """The first sample at or after `moment`."""
        return next((kb for at, kb in self.samples if at >= moment), None)

    def last_rss(self) -> int | None:
        return self.samples[-1][1] if self.samples else None


def proc_rss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def proc_cpu_s(pid: int) -> float | None:
    try:
        parts = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(parts[11]) + int(parts[12])) / _CLK_TCK
    except (OSError, ValueError, IndexError):
        return None


def cpu_busy_share(before: list[int], after: list[int]) -> float:
    """Share of the machine's CPU time spent busy between two readings of `cpu_times()`."""
    spent = [b - a for a, b in zip(before, after, strict=True)]
    total = sum(spent)
    idle = spent[3] + spent[4]  # idle, iowait
    return 0.0 if total <= 0 else 1 - idle / total


def cpu_times() -> list[int]:
    return [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:8]]


# -- the simulator, recording what the broker accepted ----------------------------------------


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
        values = sorted(self.values)
        if not values:
            return {
                "beats": 0,
                "p50_s": 0.0,
                "p99_s": 0.0,
                "max_s": 0.0,
                "over_1s": 0,
                "skipped": self.skipped,
            }
        return {
            "beats": len(values),
            "p50_s": round(values[len(values) // 2], 3),
            "p99_s": round(values[min(len(values) - 1, int(len(values) * 0.99))], 3),
            "max_s": round(values[-1], 3),
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
