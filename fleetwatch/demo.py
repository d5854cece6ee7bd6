"""`fleetwatch demo`: the whole service and a simulated fleet in one process, with a live view."""

from __future__ import annotations

import logging
import threading
import time

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from fleetwatch import db, embedded
from fleetwatch.inbox import Inbox
from fleetwatch.services import Services
from fleetwatch.settings import get_settings

log = logging.getLogger(__name__)

_FLEET = """
SELECT count(*) FILTER (WHERE last_seen_at IS NOT NULL),
       count(*) FILTER (WHERE status = 'offline'),
       count(*) FILTER (WHERE status = 'never_seen'),
       count(*)
FROM device_state
"""
_INCIDENTS = """
SELECT count(*) FILTER (WHERE status <> 'resolved'), count(*) FILTER (WHERE status = 'resolved')
FROM incidents
"""
_OUTBOX = "SELECT count(*) FILTER (WHERE status = 'pending'), count(*) FROM notifications"

_CHANNELS = """
INSERT INTO contact_channels (customer_id, kind, apprise_url, label)
SELECT id, 'push', %s || id, 'demo inbox' FROM customers
WHERE NOT EXISTS (SELECT 1 FROM contact_channels c WHERE c.customer_id = customers.id)
"""


def run_demo(*, devices: int, time_scale: float, duration: float, stop: threading.Event) -> None:
    """Migrate, register a simulated fleet, serve it, and show what happens."""
    from devices.registry import import_devices
    from devices.simulator.fleet import build_fleet, registry_rows
    from devices.simulator.runner import Simulator

    settings = get_settings()
    dsn = embedded.database_url(settings)
    db.migrate(dsn)
    target, settings = embedded.mqtt_target(settings, start=True)
    inbox = Inbox().start()

    fleet = build_fleet(devices, seed=1, fault_share=0.03)
    with db.connect(dsn, autocommit=True) as conn:
        rows = _scaled_deadlines(conn, registry_rows(fleet), time_scale)
        report = import_devices(conn, rows)
        if not report.ok:
            raise SystemExit(f"could not register the simulated fleet: {report.errors[0]}")
        # Every simulated customer gets a channel to the demo inbox (earlier runs' stay).
        conn.execute(_CHANNELS, (inbox.url(""),))
    log.info("registered %d simulated devices; notifications go to the demo inbox", report.imported)

    services = Services(settings, dsn, target).start()
    sim = Simulator(
        target,
        prefix=settings.topic_prefix,
        fleet=fleet,
        protocol=settings.mqtt_protocol,
        time_scale=time_scale,
    )
    sim.start()
    try:
        with db.connect(dsn, autocommit=True) as conn:
            _show(conn, services, sim, inbox, stop, duration)
    finally:
        sim.stop()
        services.stop()
        inbox.stop()


def _scaled_deadlines(conn, rows: list[dict], time_scale: float) -> list[dict]:
    """The simulated fleet lives faster than real time; so must its offline deadlines.

    At least 60 s: the embedded broker takes ~20 s to accept a thousand connections, and a
    device is not "never seen" while the fleet is still connecting.
    """
    allowance = dict(
        conn.execute(
            "SELECT id, heartbeat_interval_s * allowed_misses + grace_s FROM device_models"
        ).fetchall()
    )
    for row in rows:
        row["offline_after_s"] = max(60, round(allowance[row["model_id"]] * time_scale))
    return rows


def _show(conn, services, sim, inbox, stop, duration) -> None:
    ingest = services.ingest
    console = Console()
    started = time.monotonic()
    previous, previous_at, rate = ingest.counters.stored, time.monotonic(), 0.0

    def view():
        seen, offline, never_seen, registered = conn.execute(_FLEET).fetchone()
        open_incidents, resolved = conn.execute(_INCIDENTS).fetchone()
        pending, queued = conn.execute(_OUTBOX).fetchone()
        c, st = ingest.counters, sim.stats()
        table = Table(title="Fleetwatch demo (Ctrl-C to stop)", show_header=False)
        for name, value in [
            ("devices registered", registered),
            ("devices seen", seen),
            ("devices offline", offline),
            ("devices never seen", never_seen),
            ("heartbeats stored", c.stored),
            ("heartbeats/s", f"{rate:.0f}"),
            ("rejected messages", c.rejected_total),
            ("duplicates skipped", c.duplicates),
            ("open incidents", open_incidents),
            ("resolved incidents", resolved),
            ("notifications queued / pending", f"{queued} / {pending}"),
            ("notifications received by customers", inbox.total),
            ("simulator", f"{st.connected} of {st.devices} connected, {st.heartbeats_sent} sent"),
        ]:
            table.add_row(name, str(value))
        latest = Table(title="Latest notifications", show_header=True)
        latest.add_column("customer")
        latest.add_column("message")
        for recipient, title in list(inbox.latest)[:8]:
            latest.add_row(recipient, title)
        return Group(table, latest)

    with Live(view(), console=console, refresh_per_second=2) as live:
        while not stop.wait(1.0):
            now = time.monotonic()
            rate = (ingest.counters.stored - previous) / (now - previous_at)
            previous, previous_at = ingest.counters.stored, now
            live.update(view())
            if not console.is_terminal and int(now - started) % 10 == 0:
                log.info("demo: %s", ingest.summary())
            if duration and now - started >= duration:
                break
