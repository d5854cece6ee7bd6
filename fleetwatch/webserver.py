"""Serving the API for `fleetwatch api`, `serve` and the demo: the app on
FLEETWATCH_API_HOST:PORT (and its operations routes on FLEETWATCH_API_OPS_HOST:PORT when
set), by harness.apiserver's uvicorn thread, until the stop event."""

from __future__ import annotations

import logging
import threading

from core.settings import MqttTarget, Settings
from harness.apiserver import ApiServer

log = logging.getLogger(__name__)


def serve_api(
    settings: Settings, dsn: str, target: MqttTarget | None, stop: threading.Event
) -> ApiServer:
    """Start the API on FLEETWATCH_API_HOST:PORT; it shuts down when `stop` is set.
    `wait()` on the result returns once it has."""
    from api.app import create_app

    app = create_app(settings, dsn, mqtt_target=target, mqtt_protocol=settings.mqtt_protocol)
    # Not a daemon: the process waits for the API to finish its requests.
    server = ApiServer(
        app,
        host=settings.api_host,
        port=settings.api_port,
        daemon=False,
        ops_host=settings.api_ops_host,
        ops_port=settings.api_ops_port,
    )
    server.start(ready_within_s=None).stop_on(stop)
    log.info("API and dashboard on http://%s:%d/", settings.api_host, settings.api_port)
    if settings.api_ops_port is not None:
        log.info(
            "metrics, readiness and API docs on http://%s:%d/ (no key)",
            settings.api_ops_host,
            settings.api_ops_port,
        )
    return server
