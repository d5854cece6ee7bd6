"""Serving the API with uvicorn in a background thread, stopped by the process's stop event."""

from __future__ import annotations

import logging
import threading

import uvicorn

from core.settings import MqttTarget, Settings

log = logging.getLogger(__name__)


class ApiServer:
    """uvicorn in a thread; `wait` returns once it has shut down."""

    def __init__(self, server: uvicorn.Server, thread: threading.Thread) -> None:
        self.server = server
        self.thread = thread

    @property
    def url(self) -> str:
        config = self.server.config
        return f"http://{config.host}:{config.port}"

    def wait(self) -> None:
        self.thread.join()


def serve_api(
    settings: Settings, dsn: str, target: MqttTarget | None, stop: threading.Event
) -> ApiServer:
    """Start the API on FLEETWATCH_API_HOST:PORT; it shuts down when `stop` is set."""
    from api.app import create_app

    app = create_app(settings, dsn, mqtt_target=target, mqtt_protocol=settings.mqtt_protocol)
    config = uvicorn.Config(
        app,
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,  # our logging setup, one line per event
        access_log=False,
    )
    # Off the main thread uvicorn installs no signal handlers: `stop` ends it.
    server = uvicorn.Server(config)

    def run() -> None:
        server.run()

    def watch() -> None:
        stop.wait()
        server.should_exit = True

    thread = threading.Thread(target=run, name="api")
    thread.start()
    threading.Thread(target=watch, name="api-stop", daemon=True).start()
    log.info("API and dashboard on http://%s:%d/", settings.api_host, settings.api_port)
    return ApiServer(server, thread)
