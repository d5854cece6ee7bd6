"""The `fleetwatch` command."""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress

from core import db
from core.logs import setup_logging
from core.settings import get_settings, own_login
from fleetwatch import embedded

app = typer.Typer(help="Fleetwatch: device-health monitoring and alerting.", no_args_is_help=True)
devices_app = typer.Typer(help="The device registry.", no_args_is_help=True)
app.add_typer(devices_app, name="devices")
incidents_app = typer.Typer(help="Open incidents; acknowledge one.", no_args_is_help=True)
app.add_typer(incidents_app, name="incidents")
keys_app = typer.Typer(help="API keys: create, list, revoke.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
customers_app = typer.Typer(help="Customers: sign-in links.", no_args_is_help=True)
app.add_typer(customers_app, name="customers")
campaigns_app = typer.Typer(
    help="Recall notices and update campaigns: run, create, list, show, pause, resume, cancel.",
    no_args_is_help=True,
)
app.add_typer(campaigns_app, name="campaigns")
console = Console(stderr=True)
log = logging.getLogger("fleetwatch")


@app.callback()
def _main() -> None:
    setup_logging(get_settings().log_level)


def _stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT, so every process stops the same way."""
    stop = threading.Event()

    def handler(signum, frame):
        log.info("received signal %s, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


def _database() -> str:
    return embedded.database_url(get_settings())


@app.command()
def migrate() -> None:
    """Apply database migrations (idempotent)."""
    applied = db.migrate(_database())
    console.print(
        f"{len(applied)} migration(s) applied" + (f": {', '.join(applied)}" if applied else "")
    )


@app.command()
def ingest() -> None:
    """Run the ingest: MQTT heartbeats into the database."""
    from ingest.service import Ingest

    dsn = _database()
    db.migrate(dsn)
    target, settings = embedded.mqtt_target(get_settings(), start=True)
    stop = _stop_on_signals()
    service = Ingest(settings, dsn, target).start()
    try:
        service.run_forever(stop)
    finally:
        service.stop()


@app.command("retire-ingest")
def retire_ingest(
    client_id: Annotated[
        str, typer.Option(help="The stopped ingest's FLEETWATCH_INGEST_CLIENT_ID.")
    ],
    quiet_s: Annotated[float, typer.Option(help="Done after this long with nothing new.")] = 3.0,
) -> None:
    """Retire a stopped ingest: store what its session holds, then end the session."""
    from ingest.service import Ingest

    dsn = _database()
    target, settings = embedded.mqtt_target(get_settings(), start=False)
    settings = settings.model_copy(update={"ingest_client_id": client_id})
    stored = Ingest(settings, dsn, target).retire(quiet_s=quiet_s)
    console.print(f"ingest {client_id} retired: {stored} queued message(s) stored")


@app.command()
def monitor() -> None:
    """Run the monitor: offline, Last Will and never-seen detection, incidents, outbox."""
    from monitor.service import Monitor

    dsn = _database()
    db.migrate(dsn)
    Monitor(get_settings(), dsn).run_forever(_stop_on_signals())


@app.command()
def alerts() -> None:
    """Run the alerts process: route notices, escalate and remind, send through Apprise."""
    from alerts.service import Alerts

    dsn = _database()
    db.migrate(dsn)
    Alerts(get_settings(), dsn).run_forever(_stop_on_signals())


@app.command()
def api() -> None:
    """Run the HTTP API and dashboard (FLEETWATCH_API_HOST:FLEETWATCH_API_PORT)."""
    from fleetwatch.webserver import serve_api

    dsn = _database()
    db.migrate(dsn)
    settings = get_settings()
    target, adjusted = embedded.mqtt_target(settings, start=False)
    readiness = own_login(settings.api_mqtt_url, target)
    serve_api(adjusted, dsn, readiness, _stop_on_signals()).wait()


@app.command()
def serve() -> None:
    """Run ingest, monitor, alerts and the API in one process (small installs)."""
    from fleetwatch.services import Services
    from fleetwatch.webserver import serve_api

    dsn = _database()
    db.migrate(dsn)
    target, settings = embedded.mqtt_target(get_settings(), start=True)
    stop = _stop_on_signals()
    services = Services(settings, dsn, target).start()
    server = serve_api(settings, dsn, own_login(settings.api_mqtt_url, target), stop)
    try:
        stop.wait()
    finally:
        server.wait()
        services.stop()


@app.command()
def simulate(
    devices: Annotated[int, typer.Option(help="How many devices to simulate.")] = 1000,
    faults: Annotated[float, typer.Option(help="Share of devices given a fault scenario.")] = 0.02,
    seed: Annotated[int, typer.Option(help="Seed: the same seed builds the same fleet.")] = 1,
    time_scale: Annotated[
        float, typer.Option(help="Interval multiplier (0.1 = ten times faster).")
    ] = 1.0,
    register: Annotated[bool, typer.Option(help="Register the simulated fleet first.")] = False,
    ota_profile: Annotated[
        Path | None,
        typer.Option(help="JSON failure rates for update commands, per model and version."),
    ] = None,
) -> None:
    """Run a simulated fleet publishing heartbeats over MQTT and answering update commands."""
    from devices.simulator.fleet import build_fleet
    from devices.simulator.ota import OtaProfile, load_ota_profile
    from devices.simulator.runner import Simulator

    try:
        profile = load_ota_profile(ota_profile) if ota_profile else OtaProfile()
    except (OSError, ValueError) as exc:
        console.print(f"[red]cannot use {ota_profile}: {exc}[/red]")
        raise typer.Exit(2) from None
    target, settings = embedded.mqtt_target(get_settings(), start=False)
    fleet = build_fleet(devices, seed=seed, fault_share=faults)
    if register:
        _register(fleet)
    stop = _stop_on_signals()
    sim = Simulator(
        target,
        prefix=settings.topic_prefix,
        fleet=fleet,
        protocol=settings.mqtt_protocol,
        time_scale=time_scale,
        ota_profile=profile,
    )
    sim.run(stop)


def _register(fleet) -> None:
    from harness.fleet import FleetNotRegistered, register_fleet

    try:
        with db.connect(_database(), autocommit=True) as conn:
            report = register_fleet(conn, fleet)
    except FleetNotRegistered as refused:
        for error in refused.errors[:20]:
            console.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from None
    console.print(f"registered {report.imported} devices")


@devices_app.command("import")
def devices_import(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="CSV or JSON file.")],
) -> None:
    """Import devices from CSV or JSON: all rows or, if any row is wrong, none."""
    from devices.registry import import_devices, read_device_file

    try:
        rows = read_device_file(file)
    except (ValueError, UnicodeDecodeError) as exc:
        console.print(f"[red]cannot read {file}: {exc}[/red]")
        raise typer.Exit(2) from None
    dsn = _database()
    db.migrate(dsn)
    started = time.perf_counter()
    with (
        Progress(console=console, transient=True) as progress,
        db.connect(dsn, autocommit=True) as conn,
    ):
        task = progress.add_task(f"importing {file.name}", total=len(rows))
        report = import_devices(conn, rows, on_progress=lambda n: progress.advance(task, n))
    if not report.ok:
        for error in report.errors[:50]:
            console.print(f"[red]{error}[/red]")
        more = len(report.errors) - 50
        if more > 0:
            console.print(f"[red]... and {more} more[/red]")
        console.print(f"[red]nothing imported: {len(report.errors)} error(s) in {file}[/red]")
        raise typer.Exit(1)
    console.print(
        f"imported {report.imported} devices ({report.created_customers} new customers) "
        f"in {time.perf_counter() - started:.1f} s"
    )


@app.command()
def demo(
    devices: Annotated[int, typer.Option(help="Size of the simulated fleet.")] = 1000,
    time_scale: Annotated[
        float, typer.Option(help="Real seconds per simulated second (0.1: ten times faster).")
    ] = 0.1,
    duration: Annotated[
        float,
        typer.Option(
            help="Stop this many seconds after the whole simulated fleet has connected "
            "(0: until Ctrl-C)."
        ),
    ] = 0,
    outage_after: Annotated[
        float, typer.Option(help="Cut one region off after this many seconds (0: never).")
    ] = 150,
) -> None:
    """Start everything with a simulated fleet and show a live summary."""
    from fleetwatch.demo import run_demo

    run_demo(
        devices=devices,
        time_scale=time_scale,
        duration=duration,
        stop=_stop_on_signals(),
        outage_after=outage_after,
    )


@incidents_app.command("list")
def incidents_list() -> None:
    """The open and acknowledged incidents, newest first."""
    from api.incidents import find_incidents

    with db.connect(_database()) as conn:
        found = find_incidents(conn, status="active", limit=200)
    for i in found:
        typer.echo(
            f"{i.id}\t{i.status}\t{i.severity}\t{i.scope}\t{i.device_id or i.group_key or ''}\t"
            f"{i.opened_at:%Y-%m-%d %H:%M:%S%z}\t{i.summary}"
        )


@incidents_app.command("ack")
def incidents_ack(
    incident_id: Annotated[int, typer.Argument(help="The incident's id.")],
    by: Annotated[str, typer.Option(help="Who takes it (recorded on its timeline).")],
) -> None:
    """Acknowledge an open incident: someone is on it, so it is not escalated."""
    from datetime import UTC, datetime

    import incidents

    with db.connect(_database(), autocommit=True) as conn:
        if not incidents.acknowledge(conn, incident_id, by, datetime.now(UTC)):
            console.print(f"incident {incident_id} is not open (unknown, acknowledged or resolved)")
            raise typer.Exit(1)
    console.print(f"incident {incident_id} acknowledged by {by}")


@keys_app.command("create")
def keys_create(
    role: Annotated[str, typer.Option(help="admin, staff, firmware or customer.")],
    customer: Annotated[
        str | None, typer.Option(help="The customer a customer key belongs to.")
    ] = None,
    label: Annotated[str | None, typer.Option(help="Who or what holds the key.")] = None,
) -> None:
    """Make an API key and print it (only its hash is kept: it is shown this once)."""
    from api.auth import create_key
    from api.registry import find_customer

    dsn = _database()
    db.migrate(dsn)
    with db.connect(dsn, autocommit=True) as conn:
        if customer and find_customer(conn, customer) is None:
            console.print(f"[red]no customer {customer!r}[/red]")
            raise typer.Exit(1)
        try:
            key_id, key = create_key(conn, role, customer_id=customer, label=label)
        except ValueError as exc:
            console.print(f"[red]{exc}[/red]")
            raise typer.Exit(2) from None
    console.print(f"key {key_id} ({role}) created; it is shown only now:")
    typer.echo(key)


@customers_app.command("signin-link")
def customers_signin_link(
    customer_id: Annotated[str, typer.Argument(help="The customer's id.")],
) -> None:
    """Print a sign-in link for a customer (for the operator and the demo): single-use,
    valid FLEETWATCH_PORTAL_SIGNIN_MINUTES. It is sent nowhere; whoever holds it signs in as
    the customer, so hand it over as you would a password."""
    from datetime import UTC, datetime, timedelta

    from api.registry import find_customer
    from portal.sessions import mint_signin_link, signin_url

    settings = get_settings()
    dsn = _database()
    db.migrate(dsn)
    with db.connect(dsn, autocommit=True) as conn:
        if find_customer(conn, customer_id) is None:
            console.print(f"[red]no customer {customer_id!r}[/red]")
            raise typer.Exit(1)
        token = mint_signin_link(
            conn,
            customer_id,
            channel_id=None,
            requested_by="operator",
            now=datetime.now(UTC),
            ttl=timedelta(minutes=settings.portal_signin_minutes),
        )
    console.print(
        f"sign-in link for {customer_id}, single-use, valid {settings.portal_signin_minutes} min:"
    )
    typer.echo(signin_url(settings.public_url, token))


@keys_app.command("list")
def keys_list() -> None:
    """The API keys: id, shown prefix, role, customer, label, revoked."""
    from api.registry import find_keys

    with db.connect(_database()) as conn:
        found = find_keys(conn)
    for k in found:
        revoked = "\trevoked" if k.revoked_at else ""
        typer.echo(
            f"{k.id}\t{k.prefix}...\t{k.role}\t{k.customer_id or ''}\t{k.label or ''}{revoked}"
        )


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[int, typer.Argument(help="The key's id.")]) -> None:
    """Revoke a key: refused from its next request on."""
    from datetime import UTC, datetime

    from api.auth import revoke_key

    with db.connect(_database(), autocommit=True) as conn:
        if not revoke_key(conn, key_id, datetime.now(UTC)):
            console.print(f"[red]no live key {key_id}[/red]")
            raise typer.Exit(1)
    console.print(f"key {key_id} revoked")


@campaigns_app.command("run")
def campaigns_run() -> None:
    """Run the campaign runner: waves, commands, health gates, notices."""
    from campaigns.runner import CampaignRunner

    dsn = _database()
    db.migrate(dsn)
    target, settings = embedded.mqtt_target(get_settings(), start=True)
    runner = CampaignRunner(settings, dsn, own_login(settings.campaigns_mqtt_url, target))
    runner.run_forever(_stop_on_signals())


@campaigns_app.command("create")
def campaigns_create(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="A JSON file.")],
    by: Annotated[str, typer.Option(help="Who schedules it (on its timeline).")],
) -> None:
    """Schedule a campaign described in a JSON file (the API's POST /campaigns body)."""
    import json
    from datetime import UTC, datetime

    from pydantic import ValidationError

    from campaigns.store import CampaignCreate, create_campaign

    try:
        spec = CampaignCreate.model_validate(json.loads(file.read_text(encoding="utf-8")))
    except (ValueError, ValidationError) as exc:
        console.print(f"[red]cannot use {file}: {exc}[/red]")
        raise typer.Exit(2) from None
    dsn = _database()
    db.migrate(dsn)
    with db.connect(dsn, autocommit=True) as conn:
        campaign_id, targeted = create_campaign(conn, spec, created_by=by, now=datetime.now(UTC))
    console.print(f"campaign {campaign_id} scheduled for {targeted} devices")
    typer.echo(campaign_id)


@campaigns_app.command("list")
def campaigns_list() -> None:
    """Campaigns, newest first: id, status, kind, wave, counts by state, name."""
    from api.campaigns import find_campaigns

    with db.connect(_database()) as conn:
        found = find_campaigns(conn, limit=100)
    for c in found:
        states = " ".join(f"{k}={v}" for k, v in sorted(c.progress["by_state"].items()))
        wave = f"wave {c.current_wave}/{len(c.waves)}"
        typer.echo(f"{c.id}\t{c.status}\t{c.kind}\t{wave}\t{states}\t{c.name}")


@campaigns_app.command("show")
def campaigns_show(campaign_id: Annotated[int, typer.Argument(help="The campaign's id.")]) -> None:
    """One campaign: status, progress by state and wave, failures, and its timeline."""
    import json

    from api.campaigns import campaign_with_timeline

    with db.connect(_database()) as conn:
        c = campaign_with_timeline(conn, campaign_id)
    if c is None:
        console.print(f"[red]no campaign {campaign_id}[/red]")
        raise typer.Exit(1)
    typer.echo(f"{c.id} {c.name} ({c.kind}): {c.status}, wave {c.current_wave}")
    if c.halted_reason:
        typer.echo(f"halted: {c.halted_reason}")
    typer.echo(json.dumps(c.progress, indent=2))
    for event in c.timeline:
        typer.echo(f"{event.at:%Y-%m-%d %H:%M:%S%z}\t{event.kind}\t{json.dumps(event.detail)}")


def _move(campaign_id: int, move: str, by: str) -> None:
    from datetime import UTC, datetime

    from campaigns.store import move_campaign

    with db.connect(_database(), autocommit=True) as conn:
        status = move_campaign(conn, campaign_id, move, by=by, now=datetime.now(UTC))
    if status is None:
        console.print(f"[red]campaign {campaign_id} cannot {move} (unknown, or not now)[/red]")
        raise typer.Exit(1)
    console.print(f"campaign {campaign_id}: {status}")


_CAMPAIGN_ARG = Annotated[int, typer.Argument(help="The campaign's id.")]
_BY = Annotated[str, typer.Option(help="Who decides (on its timeline).")]


@campaigns_app.command("pause")
def campaigns_pause(campaign_id: _CAMPAIGN_ARG, by: _BY) -> None:
    """No new commands; updates under way finish."""
    _move(campaign_id, "pause", by)


@campaigns_app.command("resume")
def campaigns_resume(campaign_id: _CAMPAIGN_ARG, by: _BY) -> None:
    """Go on after a pause or a halt."""
    _move(campaign_id, "resume", by)


@campaigns_app.command("cancel")
def campaigns_cancel(campaign_id: _CAMPAIGN_ARG, by: _BY) -> None:
    """Stop for good."""
    _move(campaign_id, "cancel", by)


if __name__ == "__main__":
    app()
