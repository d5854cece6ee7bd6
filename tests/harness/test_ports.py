"""harness.ports: a free port is free, an open one is seen open, waiting ends when it should."""

from __future__ import annotations

import socket
import time

from harness.ports import free_port, port_open, wait_for_port


def test_free_port_can_be_listened_on_and_is_then_open():
    port = free_port()
    assert not port_open(port)

    with socket.socket() as server:
        server.bind(("127.0.0.1", port))
        server.listen()
        assert port_open(port)
        assert wait_for_port(port, timeout_s=1)


def test_waiting_for_a_port_stops_as_soon_as_its_process_is_gone():
    started = time.monotonic()

    assert not wait_for_port(free_port(), timeout_s=30, alive=lambda: False)
    assert time.monotonic() - started < 5


def test_waiting_for_a_port_nobody_opens_gives_up_after_the_timeout():
    assert not wait_for_port(free_port(), timeout_s=0.2)
