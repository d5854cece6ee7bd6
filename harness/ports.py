"""TCP ports on this machine: a free one, whether one is open, waiting until it is."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

LOCALHOST = "127.0.0.1"


def free_port(host: str = LOCALHOST) -> int:
    """A port nothing listens on now (the kernel's pick; someone may take it before us)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_open(port: int, host: str = LOCALHOST, timeout_s: float = 0.2) -> bool:
    """Whether something accepts TCP connections on host:port."""
    try:
        socket.create_connection((host, port), timeout_s).close()
    except OSError:
        return False
    return True


def wait_for_port(
    port: int,
    *,
    host: str = LOCALHOST,
    timeout_s: float = 10.0,
    alive: Callable[[], bool] | None = None,
) -> bool:
    """Wait until host:port accepts connections; False after `timeout_s`, or as soon as
    `alive()` (the process that should open it still runs) says False."""
    deadline = time.monotonic() + timeout_s
    while True:
        if port_open(port, host):
            return True
        if (alive is not None and not alive()) or time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
