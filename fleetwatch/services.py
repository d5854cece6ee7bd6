"""Running Fleetwatch's processes together in one process (`fleetwatch serve`, the demo)."""

from __future__ import annotations

import logging
import threading

from alerts.dispatcher import Dispatcher
from campaigns.runner import CampaignRunner
from core.settings import MqttTarget, Settings
from ingest.service import Ingest
from monitor.service import Monitor

log = logging.getLogger(__name__)


class Services:
    """Ingest, monitor, campaign runner and alert dispatcher sharing one stop signal."""

    def __init__(self, settings: Settings, dsn: str, target: MqttTarget) -> None:
        self.ingest = Ingest(settings, dsn, target)
        self.monitor = Monitor(settings, dsn)
        self.dispatcher = Dispatcher(settings, dsn)
        self.campaigns = CampaignRunner(settings, dsn, target)
        self._stop = threading.Event()
        self._dispatch_thread = threading.Thread(
            target=self.dispatcher.run_forever, args=(self._stop,), name="dispatcher"
        )

    def start(self) -> Services:
        self.ingest.start()
        self.monitor.start()
        self.campaigns.start()
        self._dispatch_thread.start()
        log.info("serving: ingest, monitor, campaigns and alert dispatcher running")
        return self

    def stop(self) -> None:
        """Stop in the order that loses nothing: inputs first, the outbox last."""
        self.ingest.stop()
        self.monitor.stop()
        self.campaigns.stop()
        self._stop.set()
        self._dispatch_thread.join(30)
        self.dispatcher.close()
