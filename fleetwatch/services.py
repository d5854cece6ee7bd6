"""Running Fleetwatch's processes together in one process (`fleetwatch serve`, the demo)."""

from __future__ import annotations

import logging

from alerts.service import Alerts
from campaigns.runner import CampaignRunner
from core.settings import MqttTarget, Settings, own_login
from ingest.service import Ingest
from monitor.service import Monitor

log = logging.getLogger(__name__)


class Services:
    """Ingest, monitor, campaign runner and the alerts process, in one process."""

    def __init__(self, settings: Settings, dsn: str, target: MqttTarget) -> None:
        self.ingest = Ingest(settings, dsn, target)
        self.monitor = Monitor(settings, dsn)
        self.alerts = Alerts(settings, dsn)
        # Its own login where one is given: a broker that ties each session to its login
        # (deploy/) would otherwise let the runner's connection and the ingest's throw each
        # other off.
        self.campaigns = CampaignRunner(
            settings, dsn, own_login(settings.campaigns_mqtt_url, target)
        )

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
