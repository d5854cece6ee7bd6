"""The FastAPI application: routes under /api/v1, operations at the root, the dashboard.

Routes are plain functions (sync: FastAPI runs them in its thread pool) over a psycopg
connection pool. Bad input is a 4xx with a message, never a 500: pydantic checks the
shapes, and the handlers below turn what only the database can refuse into 4xx too.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from pathlib import Path

import psycopg
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from psycopg import errors
from psycopg_pool import ConnectionPool

from api import (
    campaigns,
    channels,
    fleet,
    home,
    incidents,
    links,
    live,
    me,
    metrics,
    ops,
    registry,
    releases,
    signin,
)
from api.feed import EventFeed
from api.headers import SecurityHeaders
from api.limits import BodyLimit, LargerBody
from api.summary import SummarySnapshot
from core.settings import MqttTarget, Settings
from portal.addresses import fill_missing_addresses

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
# The customer's page (portal/static): plain HTML, script and style, like the dashboard.
CUSTOMER_PAGE = Path(__file__).parent.parent / "portal" / "static"
PREFIX = "/api/v1"


def create_app(
    settings: Settings,
    dsn: str,
    *,
    mqtt_target: MqttTarget | None = None,
    mqtt_protocol: str = "5",
) -> FastAPI:
    """The API for one database (and the broker /readyz checks, when given)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        pool = ConnectionPool(
            dsn,
            min_size=1,
            max_size=settings.api_pool_size,
            kwargs={"autocommit": True, "application_name": "fleetwatch-api"},
            open=True,
        )
        app.state.pool = pool
        _fill_channel_addresses(dsn)
        app.state.settings = settings
        app.state.summary = SummarySnapshot(pool, settings.api_summary_refresh_s).start()
        app.state.metrics = metrics.metrics_registry(pool, app.state.summary)
        app.state.feed = EventFeed(pool, streams_per_key=settings.api_streams_per_key)
        app.state.flavour = None
        try:
            yield
        finally:
            await app.state.feed.stop()
            app.state.summary.stop()
            pool.close()

    app = FastAPI(
        # Served by api/ops.py, behind a key or on the operations listener.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        title="Fleetwatch",
        version="1",
        summary="Device-health monitoring and alerting: fleet status, incidents, registry.",
        description=(
            "Every route under /api/v1 needs an API key (`Authorization: Bearer fwk_...`, "
            "made with `fleetwatch keys create --role ROLE`). A customer key sees only its "
            "own customer's devices, incidents, notifications and channels."
        ),
        lifespan=lifespan,
    )
    app.state.settings = settings  # what routes read through api.registry.AppSettings
    for router in (
        fleet.router,
        incidents.router,
        registry.router,
        channels.router,
        me.router,
        home.router,
        live.router,
        campaigns.router,
        releases.router,
        signin.router,
        signin.staff_router,
        links.router,
    ):
        app.include_router(router, prefix=PREFIX)
    app.include_router(campaigns.links)
    app.include_router(ops.router)
    app.mount("/dashboard", StaticFiles(directory=STATIC, html=True), name="dashboard")
    app.mount("/my", StaticFiles(directory=CUSTOMER_PAGE, html=True), name="customer-page")

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/dashboard/")

    app.state.ops_port = settings.api_ops_port
    app.state.broker_check = (
        ops.BrokerCheck(mqtt_target, mqtt_protocol, settings.api_ready_cache_s)
        if mqtt_target is not None
        else None
    )
    _add_error_handlers(app)
    # Outermost last: headers on every answer, the body cap before anything reads a body.
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.api_max_body_bytes,
        larger=LargerBody(
            method="POST",
            path=f"{PREFIX}/campaigns",
            max_bytes=settings.api_max_campaign_body_bytes,
            roles=("admin", "firmware"),
        ),
        pool=lambda scope: getattr(scope["app"].state, "pool", None),
    )
    if settings.api_ops_port is not None:
        app.add_middleware(ops.OperationsListenerOnly, ops_port=settings.api_ops_port)
    app.add_middleware(SecurityHeaders)
    return app


def _fill_channel_addresses(dsn: str) -> None:
    """Channels saved before they had addresses get theirs (portal/addresses.py): this
    process answers sign-in requests by address. A failure costs only those requests. On a
    connection of its own, closed after: the pool's stay as the routes left them."""
    try:
        with psycopg.connect(dsn, autocommit=True, application_name="fleetwatch-api") as conn:
            fill_missing_addresses(conn)
    except psycopg.Error as exc:
        log.warning("channel addresses not filled in: %s", exc)


# What only the database can refuse, as the 4xx it is (most specific first).
_DATABASE_REFUSALS: tuple[tuple[type[Exception], int, str], ...] = (
    (errors.ForeignKeyViolation, 422, "refers to something that does not exist"),
    (errors.UniqueViolation, 409, "already exists"),
    (errors.NotNullViolation, 422, "a required value is missing"),
    (errors.CheckViolation, 422, "a value is out of range"),
    (errors.IntegrityError, 409, "conflicts with what is stored"),
    (psycopg.DataError, 400, "a value cannot be stored"),
)


def _add_error_handlers(app: FastAPI) -> None:
    for exc_type, status, message in _DATABASE_REFUSALS:

        def handler(request: Request, exc: Exception, status=status, message=message):
            # The constraint's name says which rule, without echoing stored values.
            diag = getattr(exc, "diag", None)
            constraint = getattr(diag, "constraint_name", None)
            detail = message + (f" ({constraint})" if constraint else "")
            log.info(
                "api %s %s refused by the database: %s",
                request.method,
                request.url.path,
                type(exc).__name__,
            )
            return JSONResponse({"detail": detail}, status_code=status)

        app.add_exception_handler(exc_type, handler)

    def unavailable(request: Request, exc: Exception) -> JSONResponse:
        log.warning("api %s %s: database unavailable: %s", request.method, request.url.path, exc)
        return JSONResponse({"detail": "database unavailable, try again"}, status_code=503)

    app.add_exception_handler(psycopg.OperationalError, unavailable)
