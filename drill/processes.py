"""The processes under test, as production runs them: `.venv/bin/fleetwatch ingest|monitor|
alerts`, killed -9, stopped and started again; their memory and CPU from /proc.

    FleetProcess   one `fleetwatch <command>`; each start is an Instance with its own log
    Instance       one run of it: memory samples, CPU time, how it ended
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

FLEETWATCH = str(Path(sys.executable).with_name("fleetwatch"))
_CLK_TCK = os.sysconf("SC_CLK_TCK")


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


def memory_used_kb() -> tuple[int, int]:
    """(used, total) kB of the machine's memory: MemTotal less MemAvailable, so the page
    cache the kernel would give back does not count."""
    fields = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        name, _, value = line.partition(":")
        fields[name] = int(value.split()[0])
    return fields["MemTotal"] - fields["MemAvailable"], fields["MemTotal"]


def cpu_times() -> list[int]:
    return [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:8]]
