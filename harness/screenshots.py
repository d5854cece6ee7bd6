"""Screenshots of the customer's page for the README: `python -m harness.screenshots`.

Makes a scratch database on the PostgreSQL server FLEETWATCH_DATABASE_URL names (or
--server), migrates it, fills it with Maria's home (harness/customer_home.py), serves the
app on a free port, signs in through a real sign-in link in Debian's Chromium, and saves

    docs/customer-phone.png    390 x 844, her devices
    docs/customer-desktop.png  1280 x 800, her devices

then drops the scratch database.
"""

from __future__ import annotations

import argparse
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from psycopg import conninfo

from api.app import create_app
from core import db
from core.settings import Settings
from harness.apiserver import ApiServer
from harness.browser import DESKTOP, PHONE, launch
from harness.customer_home import CUSTOMER, make_home
from portal.sessions import mint_signin_link

DOCS = Path(__file__).resolve().parent.parent / "docs"
SHOTS = (("customer-phone.png", PHONE), ("customer-desktop.png", DESKTOP))


def take(server_url: str, out: Path) -> list[Path]:
    name = f"fleetwatch_shots_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    dsn = conninfo.make_conninfo(server_url, dbname=name)
    try:
        db.migrate(dsn)
        with psycopg.connect(dsn, autocommit=True) as conn:
            make_home(conn, datetime.now(UTC))
            tokens = [
                mint_signin_link(
                    conn,
                    CUSTOMER,
                    channel_id=None,
                    requested_by="screenshots",
                    now=datetime.now(UTC),
                    ttl=timedelta(minutes=5),
                )
                for _ in SHOTS
            ]
        return _shoot(dsn, tokens, out)
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _shoot(dsn: str, tokens: list[str], out: Path) -> list[Path]:
    from playwright.sync_api import expect, sync_playwright

    settings = Settings(database_url=dsn, api_summary_refresh_s=3600)
    server = ApiServer(create_app(settings, dsn), name="screenshots").start()
    saved = []
    try:
        with sync_playwright() as playwright:
            browser = launch(playwright)
            for (filename, viewport), token in zip(SHOTS, tokens, strict=True):
                context = browser.new_context(viewport=viewport, device_scale_factor=1)
                page = context.new_page()
                page.goto(f"{server.url}/my/#signin={token}")
                expect(page.locator("#view[data-view=devices] #open-incidents")).to_be_visible()
                out.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=out / filename)
                saved.append(out / filename)
                context.close()
            browser.close()
    finally:
        server.stop()
    return saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", help="a PostgreSQL URL (default FLEETWATCH_DATABASE_URL)")
    parser.add_argument("--out", type=Path, default=DOCS)
    args = parser.parse_args()
    server = args.server or Settings().database_url
    for path in take(server, args.out):
        print(path)


if __name__ == "__main__":
    main()
