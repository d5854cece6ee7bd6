"""The API served by uvicorn: in a thread of this process, or in a child process.

    ApiServer(app, port=0).start()    a thread; `fleetwatch api`, `serve` and the demo serve
                                      this way (fleetwatch/webserver.py), and so do the tests
    ApiServer(app, ops_port=9090)     the same, also listening on an operations port (the app
                                      tells its requests apart by the port they came in on)
    ApiProcess(env).start()           a child process running an ApiServer, as one uvicorn
                                      worker is deployed (bench/api.py: its CPU is its own)

Off the main thread uvicorn installs no signal handlers: `stop()` (or the event given to
`stop_on`) ends it.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import uvicorn

from harness.ports import LOCALHOST, free_port

log = logging.getLogger(__name__)


class ApiServer:
    """uvicorn serving `app` in a thread. Port 0: a free port, known once it has started."""

    def __init__(
        self,
        app,
        *,
        host: str = LOCALHOST,
        port: int = 0,
        name: str = "api",
        daemon: bool = True,
        timeout_graceful_shutdown: float | None = None,
        ops_host: str = LOCALHOST,
        ops_port: int | None = None,
    ) -> None:
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_config=None,  # the process's own logging, one line per event
            access_log=False,
            timeout_graceful_shutdown=timeout_graceful_shutdown,
        )
        self.server = uvicorn.Server(config)
        self.ops = (ops_host, ops_port) if ops_port is not None else None
        self.thread = threading.Thread(target=self._run, name=name, daemon=daemon)
        self.exit_code: int | str | None = None  # set when uvicorn gave up (it logs why)

    def _run(self) -> None:
        try:
            if self.ops is None:
                self.server.run()
                return
            config = self.server.config
            try:
                sockets = [_bind(config.host, config.port), _bind(*self.ops)]
            except OSError as exc:
                log.error("API cannot listen: %s", exc)
                self.exit_code = 3
                return
            self.server.run(sockets=sockets)
        except SystemExit as exc:  # uvicorn's way to give up, e.g. on a port in use
            self.exit_code = exc.code

    @property
    def port(self) -> int:
        """The port it listens on (the configured one until it has started)."""
        if self.server.started and self.server.servers:
            return self.server.servers[0].sockets[0].getsockname()[1]
        return self.server.config.port

    @property
    def url(self) -> str:
        return f"http://{self.server.config.host}:{self.port}"

    def start(self, *, ready_within_s: float | None = 15.0) -> ApiServer:
        """Start serving; wait until it listens, and fail if it does not within
        `ready_within_s` (None: do not wait)."""
        self.thread.start()
        if ready_within_s is None:
            return self
        deadline = time.monotonic() + ready_within_s
        while not self.server.started and self.thread.is_alive():
            if time.monotonic() > deadline:
                self.stop()
                break
            time.sleep(0.02)
        if not self.server.started:
            why = "" if self.exit_code is None else f" (it exited with {self.exit_code})"
            raise RuntimeError(f"uvicorn did not start on {self.url}{why}")
        return self

    def stop_on(self, event: threading.Event) -> ApiServer:
        """Shut down once `event` is set."""

        def watch() -> None:
            event.wait()
            self.server.should_exit = True

        threading.Thread(target=watch, name=f"{self.thread.name}-stop", daemon=True).start()
        return self

    def stop(self, timeout_s: float = 15.0) -> None:
        self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join(timeout_s)

    def wait(self) -> None:
        """Return once it has shut down."""
        self.thread.join()


def _bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port, as uvicorn binds its own."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


class ApiProcess:
    """`create_app` served by an ApiServer in a child process, on a free port; configured
    by FLEETWATCH_* variables (`env`: FLEETWATCH_DATABASE_URL at least), none inherited."""

    def __init__(self, env: dict[str, str], *, cwd: Path | None = None) -> None:
        self.port = free_port()
        child_env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETWATCH_")}
        child_env.update(env, FLEETWATCH_API_HOST=LOCALHOST, FLEETWATCH_API_PORT=str(self.port))
        self.env = child_env
        self.cwd = cwd
        self.log = tempfile.NamedTemporaryFile(prefix="fw-api-", suffix=".log")  # noqa: SIM115 (closed in stop)
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def start(self, timeout_s: float = 60.0) -> ApiProcess:
        """Start it; return once /healthz answers 200."""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "harness.apiserver"],
            env=self.env,
            cwd=self.cwd,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the API process exited:\n{self.output()}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as answer:  # noqa: S310 (our own http URL)
                    if answer.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the API did not answer within {timeout_s:g} s:\n{self.output()}")

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def _serve_from_environment() -> None:
    """ApiProcess's child: the app as FLEETWATCH_* configure it, until SIGTERM."""
    from api.app import create_app
    from core.settings import Settings

    settings = Settings()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    app = create_app(settings, settings.database_url)
    server = ApiServer(
        app,
        host=settings.api_host,
        port=settings.api_port,
        ops_host=settings.api_ops_host,
        ops_port=settings.api_ops_port,
    ).start()
    while server.thread.is_alive() and not stop.wait(0.5):
        pass
    server.stop()


if __name__ == "__main__":
    _serve_from_environment()
