"""A private Mosquitto on 127.0.0.1, for tests, benchmarks and the fault drill.

    Mosquitto()                                      anonymous, in memory: a simulator test
    Mosquitto(max_queued_messages=0,                 a backlog of any size (bench/ingest.py)
              max_inflight_messages=0)
    Mosquitto(workdir, listeners=3, persistence=True,   the drill: a clean stop saves sessions
              max_queued_messages=10_000_000, ...,      and queues, a start on the same ports
              raise_fd_limit=True)                      restores them
    Mosquitto(anonymous=None, persistence=None,      the deploy config with its ACL and a
              extra=[*deploy_lines, "acl_file ..."])   password file (tests/deploy)

It writes its own config (listeners, persistence location, log file, the user it runs as)
in its work directory; `extra` lines follow, so a caller's config can say what the keyword
arguments leave out (None: not written). The log is kept in the work directory, so a failed
start can say why.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import resource
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from harness.ports import free_port, port_open

SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])
MOSQUITTO = shutil.which("mosquitto", path=SEARCH_PATH)
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd", path=SEARCH_PATH)
# Descriptors a broker needs besides one per client: listeners, log, persistence file.
SPARE_FDS = 64


class Mosquitto:
    """One private Mosquitto process: `start()`, `stop()` (SIGTERM: it saves what it keeps),
    `start()` again on the same ports."""

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        listeners: int = 1,
        anonymous: bool | None = True,
        persistence: bool | None = False,
        max_queued_messages: int | None = None,
        max_inflight_messages: int | None = None,
        extra: Sequence[str] = (),
        log_types: Sequence[str] = ("error", "warning", "notice"),
        raise_fd_limit: bool = False,
    ) -> None:
        if MOSQUITTO is None:
            raise RuntimeError("needs the mosquitto binary (Debian package mosquitto)")
        self._own_dir = workdir is None
        self.dir = Path(tempfile.mkdtemp(prefix="fw-mosquitto-")) if workdir is None else workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ports = [free_port() for _ in range(listeners)]
        self.settings = {
            "allow_anonymous": anonymous,
            "persistence": persistence,
            "max_queued_messages": max_queued_messages,
            "max_inflight_messages": max_inflight_messages,
        }
        self.extra = list(extra)
        self.log_types = list(log_types)
        self.raise_fd_limit = raise_fd_limit
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self._write_conf()

    @property
    def conf_path(self) -> Path:
        return self.dir / "mosquitto.conf"

    @property
    def log_path(self) -> Path:
        return self.dir / "mosquitto.log"

    @property
    def output_path(self) -> Path:
        """What it printed: a config it refuses is reported here, not in its log."""
        return self.dir / "mosquitto.out"

    @property
    def port(self) -> int:
        """The first listener's port."""
        return self.ports[0]

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def url(self, listener: int = 0, user: str = "fleetwatch") -> str:
        return f"mqtt://{user}@127.0.0.1:{self.ports[listener]}"

    def log_tail(self, chars: int = 4000) -> str:
        """The end of what it printed and logged."""
        parts = [
            path.read_text(errors="replace")[-chars:]
            for path in (self.output_path, self.log_path)
            if path.exists()
        ]
        return "\n".join(part for part in parts if part) or "(nothing logged)"

    def _write_conf(self) -> None:
        lines = [f"listener {port} 127.0.0.1" for port in self.ports]
        for key, value in self.settings.items():
            if value is not None:
                lines.append(f"{key} {str(value).lower() if isinstance(value, bool) else value}")
        lines += [
            f"persistence_location {self.dir}/",
            # Stay the user running us: as root, Mosquitto would switch to `mosquitto`, which
            # may not write (or read) the work directory; persistence then fails on shutdown.
            f"user {pwd.getpwuid(os.getuid()).pw_name}",
            f"log_dest file {self.log_path}",
            *(f"log_type {kind}" for kind in self.log_types),
            *self.extra,
        ]
        self.conf_path.write_text("\n".join(lines) + "\n")

    def start(self, timeout_s: float = 20.0) -> Mosquitto:
        """Start it. The first start picks other ports if one was taken meanwhile (a broker
        beside this one); a restart keeps its ports, as a restarted production broker does."""
        for _ in range(1 if self.starts else 5):
            if self._start_once(timeout_s):
                self.starts += 1
                return self
            if self.starts:
                break
            self.ports = [free_port() for _ in self.ports]
            self._write_conf()
        raise RuntimeError(f"mosquitto did not start; its log:\n{self.log_tail()}")

    def _start_once(self, timeout_s: float) -> bool:
        with self.output_path.open("ab") as output:
            self.proc = subprocess.Popen(
                [MOSQUITTO, "-c", str(self.conf_path)],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                preexec_fn=_raise_fd_limit if self.raise_fd_limit else None,
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
            time.sleep(0.02)
        self.stop()
        return False

    def stop(self, timeout_s: float = 60.0) -> None:
        """A clean stop (SIGTERM): with persistence, Mosquitto writes sessions and queues."""
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

    def close(self) -> None:
        """Stop it, and remove the work directory if it made it."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


def connection_capacity(connections: int) -> int:
    """How many client connections one broker process may hold here, raising the open-file
    limit for our children if `connections` needs it and we are allowed to (it takes
    CAP_SYS_RESOURCE). Start the broker with `raise_fd_limit=True` to use it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = connections + SPARE_FDS
    if needed > hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, needed))
            hard = needed
    return hard - SPARE_FDS


def _raise_fd_limit() -> None:  # runs in the child, before exec
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
