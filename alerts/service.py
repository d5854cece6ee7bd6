"""The alerts process (`fleetwatch alerts`): route notices, escalate and remind, dispatch.

    route     every FLEETWATCH_ALERTS_ROUTER_S: notices -> outbox rows (alerts/router.py)
    escalate  every FLEETWATCH_ALERTS_ESCALATION_S: unacknowledged critical incidents to staff,
              reminders to owners (alerts/escalation.py), a nudge to staff for each update
              promised and not posted (alerts/updates.py)
    dispatch  every FLEETWATCH_ALERTS_POLL_S: due rows -> Apprise (alerts/dispatcher.py)

Any number may run against one database: routing claims with SKIP LOCKED, escalation and
reminders are guarded writes, dispatch claims under a lease.
"""

from __future__ import annotations

import logging
from datetime import datetime

from alerts.dispatcher import Dispatcher
from alerts.escalation import CriticalReview, EscalationPolicy, review_critical
from alerts.router import Routed, route_notices
from alerts.updates import review_promises
from core import db
from core.settings import Settings
from core.worker import Job, RunsForever, Worker

log = logging.getLogger(__name__)


class Alerts(RunsForever):
    """The router, the escalation review and a dispatcher, as one worker."""

    def __init__(
        self, settings: Settings, dsn: str, *, sender=None, dispatcher: Dispatcher | None = None
    ) -> None:
        self.settings = settings
        self.dsn = dsn
        self.dispatcher = dispatcher or Dispatcher(settings, dsn, sender=sender)
        self.escalation = EscalationPolicy(
            escalate_after_s=settings.alerts_escalate_after_s,
            remind_every_s=settings.alerts_remind_every_s,
            max_reminders=settings.alerts_max_reminders,
        )
        self._conns = db.Connections(dsn)
        s = settings
        self.worker = Worker(
            "alerts",
            [
                Job(
                    "route", self._route_batch, s.alerts_router_s, lambda: self._conns.drop("route")
                ),
                Job(
                    "escalate",
                    self.review,
                    s.alerts_escalation_s,
                    lambda: self._conns.drop("escalate"),
                ),
                Job("dispatch", self._dispatch, s.alerts_poll_s, self.dispatcher.drop_connection),
            ],
            dsn=dsn,
        )

    def route(self, now: datetime | None = None) -> Routed:
        """Route one batch of notices at `now` (default: the database's clock)."""
        conn = self._conns.get("route")
        return route_notices(conn, now or db.db_now(conn), limit=self.settings.alerts_router_batch)

    def review(self, now: datetime | None = None) -> CriticalReview:
        """Escalate, remind and nudge where due at `now` (default: the database's clock)."""
        conn = self._conns.get("escalate")
        now = now or db.db_now(conn)
        result = review_critical(conn, now, self.escalation)
        result.nudged = review_promises(conn, now)
        return result

    def _route_batch(self) -> bool:
        return self.route().notices >= self.settings.alerts_router_batch

    def _dispatch(self) -> bool:
        return self.dispatcher.run_once() > 0

    def start(self) -> Alerts:
        self.worker.start()
        return self

    def stop(self) -> None:
        self.worker.stop()
        self.close()

    def close(self) -> None:
        self.dispatcher.close()
        self._conns.drop()
