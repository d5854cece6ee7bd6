"""`fleetwatch demo`: the whole service and a simulated fleet in one process, with a live view.

The live view holds the terminal, so the log goes to `demo.log` in the data directory
(FLEETWATCH_DATA_DIR, `.fleetwatch` by default); the view counts its warnings and errors.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from core import db
from core.logs import setup_logging
from core.settings import get_settings
from fleetwatch import embedded
from fleetwatch.services import Services
from fleetwatch.webserver import serve_api
from harness.fleet import FleetNotRegistered, register_fleet
from harness.sinks import HttpSink

log = logging.getLogger(__name__)

# With --duration, the count starts when every simulated device has connected once (the
# embedded broker takes ~20 s to accept a thousand), or at the latest this long after start
# (a device that never connects does not keep the demo running).
FLEET_UP_WAIT_S = 60.0


def run_out(duration: float, elapsed_s: float, fleet_up_s: float | None) -> bool:
    """Whether a demo of `duration` seconds (0: until Ctrl-C) is over `elapsed_s` seconds
    after it started, its fleet up since `fleet_up_s` (None: not yet): the duration is the
    whole fleet's time on the air, not the time it took to connect."""
    if not duration:
        return False
    counted_from = FLEET_UP_WAIT_S if fleet_up_s is None else min(fleet_up_s, FLEET_UP_WAIT_S)
    return elapsed_s - counted_from >= duration


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
_OUTBOX = """
SELECT count(*) FILTER (WHERE status = 'pending'), count(*) FILTER (WHERE status = 'held'),
       count(*)
FROM notifications
"""
_OPEN_BY_KIND = """
SELECT kind, count(*) FROM incidents WHERE status <> 'resolved' GROUP BY kind ORDER BY 2 DESC
"""
_ESCALATED = "SELECT count(*) FROM incidents WHERE escalated_at IS NOT NULL"
_CAMPAIGNS = """
SELECT c.id, c.status, c.current_wave, count(*) FILTER (WHERE d.state = 'succeeded'),
       count(*) FILTER (WHERE d.state = 'failed'), count(d.*)
FROM campaigns c LEFT JOIN campaign_devices d ON d.campaign_id = c.id
GROUP BY c.id ORDER BY c.id DESC LIMIT 3
"""
_STAFF = """
INSERT INTO staff_channels (apprise_url, label)
SELECT %(inbox)s, 'demo staff inbox' WHERE NOT EXISTS (SELECT 1 FROM staff_channels)
"""
_OLD_STAFF = "UPDATE staff_channels SET apprise_url = %(inbox)s WHERE label = 'demo staff inbox'"

# Verified at creation, as the operator's channels are; a webhook names no person, so it
# has no address (portal/addresses.py): `fleetwatch customers signin-link` signs one in.
_CHANNELS = """
INSERT INTO contact_channels (customer_id, kind, apprise_url, label, verified_at)
SELECT id, 'webhook', %(inbox)s || id, 'demo inbox', now() FROM customers
WHERE NOT EXISTS (SELECT 1 FROM contact_channels c WHERE c.customer_id = customers.id)
"""
# Earlier runs' inbox channels: to this run's inbox (a new port each run), as the webhooks
# they are.
_OLD_CHANNELS = """
UPDATE contact_channels SET kind = 'webhook', apprise_url = %(inbox)s || customer_id,
       address = NULL, verified_at = coalesce(verified_at, now())
WHERE label = 'demo inbox'
"""
# The demo's inbox listens on 127.0.0.1, where alerts may not go by default
# (FLEETWATCH_ALERTS_ALLOWED_NETWORKS): the demo allows loopback, as an operator allows a
# network of their own.
DEMO_NETWORK = "127.0.0.0/8"


def run_demo(
    *,
    devices: int,
    time_scale: float,
    duration: float,
    stop: threading.Event,
    outage_after: float = 0,
) -> None:
    """Migrate, register a simulated fleet, serve it, and show what happens."""
    from devices.simulator.fleet import build_fleet
    from devices.simulator.ota import OtaProfile
    from devices.simulator.runner import Simulator

    console = Console()
    base = get_settings()
    log_file = (base.data_dir / "demo.log").resolve()
    setup_logging(base.log_level, log_file=log_file)
    problems = _ProblemCounts(log_file)
    logging.getLogger().addHandler(problems)
    # Addresses are printed whole (soft_wrap), so that they can be copied.
    console.print(f"Fleetwatch demo: the log goes to {log_file}", soft_wrap=True)
    console.print("Starting PostgreSQL, the MQTT broker and the services ...")

    settings = _demo_timing(base, time_scale)
    allowed = ",".join(n for n in (settings.alerts_allowed_networks, DEMO_NETWORK) if n)
    settings = settings.model_copy(update={"alerts_allowed_networks": allowed})
    log.info("demo: alerts may go to %s (the demo inbox is on 127.0.0.1)", allowed)
    dsn = embedded.database_url(settings)
    db.migrate(dsn)
    target, settings = embedded.mqtt_target(settings, start=True, log_file=log_file)
    # The demo's inbox, standing in for customers' phones and mailboxes: every simulated
    # customer gets an Apprise json:// channel to it, so what Fleetwatch sends is seen.
    inbox = HttpSink(keep=50).start()

    fleet = build_fleet(devices, seed=1, fault_share=0.03)
    if outage_after:
        _regional_outage(fleet, settings, start_after_s=outage_after / time_scale)
    with db.connect(dsn, autocommit=True) as conn:
        try:
            # At least 60 s: the embedded broker takes ~20 s to accept a thousand
            # connections, and a device is not "never seen" while the fleet still connects.
            report = register_fleet(conn, fleet, time_scale=time_scale, at_least_s=60)
        except FleetNotRegistered as refused:
            raise SystemExit(
                f"could not register the simulated fleet: {refused.errors[0]}"
            ) from None
        # Every simulated customer gets a channel to the demo inbox (earlier runs' stay).
        conn.execute(_OLD_CHANNELS, {"inbox": inbox.url("")})
        conn.execute(_CHANNELS, {"inbox": inbox.url("")})
        conn.execute(_OLD_STAFF, {"inbox": inbox.url("staff")})
        conn.execute(_STAFF, {"inbox": inbox.url("staff")})
        _demo_campaign(conn, time_scale)
    log.info("registered %d simulated devices; notifications go to the demo inbox", report.imported)

    services = Services(settings, dsn, target).start()
    api_stop = threading.Event()
    server = serve_api(settings, dsn, target, api_stop)
    dashboard = f"{server.url}/dashboard/#key={_demo_key(dsn)}"
    log.info("dashboard: %s", dashboard)
    console.print(f"Dashboard: {dashboard}", soft_wrap=True)
    customer_page = _demo_signin(dsn, server.url)
    console.print(f"A customer's page: {customer_page}", soft_wrap=True)
    sim = Simulator(
        target,
        prefix=settings.topic_prefix,
        fleet=fleet,
        protocol=settings.mqtt_protocol,
        time_scale=time_scale,
        # The demo's camera firmware bricks some cameras: its campaign halts itself.
        ota_profile=OtaProfile({("camera-v1", DEMO_CAMERA_FIRMWARE): {"brick": 0.3}}),
    )
    sim.start()
    try:
        with db.connect(dsn, autocommit=True) as conn:
            _show(
                conn,
                services,
                sim,
                inbox,
                stop,
                duration,
                dashboard,
                console,
                problems,
                customer_page,
            )
    finally:
        sim.stop()
        api_stop.set()
        server.wait()
        services.stop()
        inbox.stop()


DEMO_CAMERA_FIRMWARE = "1.9.0"


class _ProblemCounts(logging.Handler):
    """Counts the warnings and errors logged, for the view: the log itself is in a file."""

    def __init__(self, log_file: Path) -> None:
        super().__init__(level=logging.WARNING)
        self.log_file = log_file
        self.warnings = self.errors = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR:
            self.errors += 1
        else:
            self.warnings += 1

    def summary(self) -> str:
        return f"{self.log_file} (warnings: {self.warnings}, errors: {self.errors})"


def _demo_campaign(conn, time_scale: float) -> None:
    """An update of every camera, a minute in: a bad firmware, so its canary halts it."""
    from datetime import UTC, datetime, timedelta

    from campaigns.store import CampaignCreate, create_campaign

    if conn.execute("SELECT 1 FROM campaigns WHERE name LIKE 'Demo:%'").fetchone():
        return  # an earlier demo run's: its story is told
    spec = CampaignCreate.model_validate(
        {
            "name": f"Demo: camera firmware {DEMO_CAMERA_FIRMWARE}",
            "kind": "ota_update",
            "target": {"models": ["camera-v1"], "firmware": "<1.9"},
            "target_version": DEMO_CAMERA_FIRMWARE,
            "artifact_url": f"https://updates.example.com/camera/{DEMO_CAMERA_FIRMWARE}.bin",
            "artifact_sha256": "0" * 64,
            "waves": [10, 50, 100],
            "soak_s": max(30, round(3600 * time_scale)),
            "starts_at": datetime.now(UTC) + timedelta(seconds=60),
            # Simulated reboots take 20-60 device-seconds: five minutes is plenty.
            "policy": {"reboot_timeout_s": max(20, round(300 * time_scale))},
        }
    )
    campaign_id, targeted = create_campaign(conn, spec, created_by="demo", now=datetime.now(UTC))
    log.info("demo: campaign %d updates %d cameras a minute from now", campaign_id, targeted)


def _demo_signin(dsn: str, site: str) -> str:
    """A sign-in link to the page of the demo's first customer. Single-use like every
    sign-in link, but good for an hour rather than minutes: the operator may open it later."""
    from datetime import UTC, datetime, timedelta

    from portal.sessions import mint_signin_link, signin_url

    with db.connect(dsn, autocommit=True) as conn:
        customer = conn.execute(
            "SELECT customer_id FROM devices WHERE customer_id IS NOT NULL "
            "GROUP BY customer_id ORDER BY count(*) DESC, customer_id LIMIT 1"
        ).fetchone()[0]
        token = mint_signin_link(
            conn,
            customer,
            channel_id=None,
            requested_by="demo",
            now=datetime.now(UTC),
            ttl=timedelta(hours=1),
        )
    log.info("demo: a sign-in link for customer %s is on the console", customer)
    return signin_url(site, token)


def _demo_key(dsn: str) -> str:
    """A fresh staff key for the demo's dashboard (earlier demo keys are revoked)."""
    from api.auth import create_key

    with db.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "UPDATE api_keys SET revoked_at = now() WHERE label = 'demo' AND revoked_at IS NULL"
        )
        return create_key(conn, "staff", label="demo")[1]


def _demo_timing(settings, time_scale: float):
    """Holds, escalations and reminders at the fleet's own pace, so the demo shows them."""
    scaled = {
        "fleet_hold_s": max(60, round(settings.fleet_hold_s * time_scale)),
        "alerts_escalate_after_s": max(60, round(settings.alerts_escalate_after_s * time_scale)),
        "alerts_remind_every_s": max(120, round(settings.alerts_remind_every_s * time_scale)),
    }
    log.info("demo timing: %s", ", ".join(f"{k}={v}" for k, v in scaled.items()))
    return settings.model_copy(update=scaled)


def _regional_outage(fleet, settings, *, start_after_s: float) -> None:
    """Cut one region's devices off at once (a provider's network outage), late in the demo.

    The smallest region still big enough to count as an outage is chosen.
    """
    from dataclasses import replace

    from devices.simulator.device import SimDevice
    from devices.simulator.scenarios import make_fault

    regions: dict[str, list[int]] = {}
    for i, device in enumerate(fleet):
        regions.setdefault(device.spec.owner.region, []).append(i)
    big_enough = [
        (len(members), region)
        for region, members in regions.items()
        if len(members) >= settings.fleet_min_devices
        and len(members) * 100 >= settings.fleet_min_pct * len(fleet)
    ]
    if not big_enough:
        log.warning("demo: no region is big enough for an outage; none staged")
        return
    _, region = min(big_enough)
    for i in regions[region]:
        fault = make_fault("power_loss", start_after_s=start_after_s)
        fleet[i] = SimDevice(replace(fleet[i].spec, fault=fault), time_scale=fleet[i].time_scale)
    log.info(
        "demo: region %s (%d devices) loses its network %.0f device-seconds in",
        region,
        len(regions[region]),
        start_after_s,
    )


def _show(
    conn, services, sim, inbox, stop, duration, dashboard: str, console, problems, customer_page
) -> None:
    ingest = services.ingest
    started = time.monotonic()
    fleet_up_s: float | None = None
    previous, previous_at, rate = ingest.counters.stored, time.monotonic(), 0.0

    def view():
        seen, offline, never_seen, registered = conn.execute(_FLEET).fetchone()
        open_incidents, resolved = conn.execute(_INCIDENTS).fetchone()
        pending, held, queued = conn.execute(_OUTBOX).fetchone()
        by_kind = ", ".join(f"{k} {n}" for k, n in conn.execute(_OPEN_BY_KIND)) or "-"
        escalated = conn.execute(_ESCALATED).fetchone()[0]
        campaigns = (
            "; ".join(
                f"{cid} {status} in wave {wave}: {ok} updated, {bad} failed of {total}"
                for cid, status, wave, ok, bad, total in conn.execute(_CAMPAIGNS)
            )
            or "-"
        )
        c, st = ingest.counters, sim.stats()
        table = Table(title="Fleetwatch demo (Ctrl-C to stop)", show_header=False)
        table.add_column()
        # Folded, never cut: the dashboard's address must stay whole to be copied.
        table.add_column(overflow="fold")
        for name, value in [
            ("dashboard", dashboard),
            ("a customer's page (sign-in link, once)", customer_page),
            ("devices registered", registered),
            ("devices seen", seen),
            ("devices offline", offline),
            ("devices never seen", never_seen),
            ("heartbeats stored", c.stored),
            ("heartbeats/s", f"{rate:.0f}"),
            ("rejected messages", c.rejected_total),
            ("duplicates skipped", c.duplicates),
            ("open incidents", open_incidents),
            ("open incidents by kind", by_kind),
            ("resolved incidents", resolved),
            ("escalated to staff", escalated),
            ("notifications queued / pending / held", f"{queued} / {pending} / {held}"),
            ("notifications received by customers", inbox.total),
            ("campaigns", campaigns),
            ("simulator", f"{st.connected} of {st.devices} connected, {st.heartbeats_sent} sent"),
            ("log", problems.summary()),
        ]:
            table.add_row(name, str(value))
        latest = Table(title="Latest notifications", show_header=True)
        latest.add_column("customer")
        latest.add_column("message")
        for message in inbox.latest(8):
            latest.add_row(message.path.strip("/"), message.title)
        return Group(table, latest)

    with Live(view(), console=console, refresh_per_second=2) as live:
        while not stop.wait(1.0):
            now = time.monotonic()
            rate = (ingest.counters.stored - previous) / (now - previous_at)
            previous, previous_at = ingest.counters.stored, now
            live.update(view())
            if not console.is_terminal and int(now - started) % 10 == 0:
                console.print(f"demo: {ingest.summary()}")
            if fleet_up_s is None and sim.stats().all_connected_s is not None:
                fleet_up_s = now - started
            if run_out(duration, now - started, fleet_up_s):
                break
