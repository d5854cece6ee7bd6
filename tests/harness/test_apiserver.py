"""harness.apiserver: the API in a thread on a port of its choosing, stopped on request; in a
child process, stopped cleanly by SIGTERM."""

from __future__ import annotations

import socket
import threading

import httpx
import pytest
from fastapi import FastAPI

from harness.apiserver import ApiProcess, ApiServer
from harness.ports import free_port


def hello_app() -> FastAPI:
    app = FastAPI()
    app.get("/hello")(lambda: {"hello": "world"})
    return app


def test_server_on_port_0_serves_on_the_port_it_got_until_stopped():
    server = ApiServer(hello_app()).start()
    try:
        assert server.port != 0
        assert httpx.get(f"{server.url}/hello").json() == {"hello": "world"}
    finally:
        server.stop()

    assert not server.thread.is_alive()


def test_server_stops_once_its_stop_event_is_set():
    stop = threading.Event()
    server = ApiServer(hello_app()).start().stop_on(stop)

    stop.set()
    server.thread.join(10)

    assert not server.thread.is_alive()


def test_server_that_cannot_listen_fails_its_start():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = ApiServer(hello_app(), port=taken.getsockname()[1])

        with pytest.raises(RuntimeError, match="did not start"):
            server.start(ready_within_s=10)


def test_api_process_serves_the_app_and_ends_cleanly_on_sigterm(dsn):
    ops_port = free_port()
    api = ApiProcess(
        {
            "FLEETWATCH_DATABASE_URL": dsn,
            "FLEETWATCH_API_SUMMARY_REFRESH_S": "3600",
            "FLEETWATCH_API_OPS_PORT": str(ops_port),
        }
    )
    api.start()
    try:
        # Readiness on the operations port, without a key; not on the API's port.
        assert httpx.get(f"http://127.0.0.1:{ops_port}/readyz").json() == {
            "ready": True,
            "database": True,
            "broker": None,  # none given
        }
        assert httpx.get(f"{api.url}/readyz").status_code == 404
        assert httpx.get(f"{api.url}/api/v1/fleet/summary").status_code == 401  # needs a key
    finally:
        api.stop()

    assert api.proc.returncode == 0, api.output()
