"""Running Fleetwatch's processes together in one process (`fleetwatch serve`, the demo)."""

from __future__ import annotations

import logging

from alerts.service import Alerts
from campaigns.runner import CampaignRunner
from core.settings import MqttTarget, Settings
from ingest.service import Ingest
from monitor.service import Monitor

log = logging.getLogger(__name__)


class Services:
    """Ingest, monitor, campaign runner and the alerts process, in one process."""

    def __init__(self, settings: Settings, dsn: str, target: MqttTarget) -> None:
        self.ingest = Ingest(settings, dsn, target)
        self.monitor = Monitor(settings, dsn)
        self.alerts = Alerts(settings, dsn)
        self.campaigns = CampaignRunner(settings, dsn, target)

    def start(self) -> Services:
        self.ingest.start()
        self.monitor.start()
        self.campaigns.start()
        self.alerts.start()
        log.info("serving: ingest, monitor, campaigns and alerts running")
        return self

    def stop(self) -> None:
        """Stop in the order that loses nothing: inputs first, the outbox last."""
        self.ingest.stop()
        self.monitor.stop()
        self.campaigns.stop()
        self.alerts.stop()
