"""Operations: liveness, readiness (database and broker reachable), Prometheus metrics and
the API's own description (OpenAPI, interactive docs).

Only /healthz is open to anyone. The others say how the installation is built and how it
fares (ingest client ids, worker names, queue depths, every route and model), so they are
served either
- on the API's own port to a key of a staff role (the default: nothing to arrange, and
  nothing more reachable than the API itself), or
- with FLEETWATCH_API_OPS_PORT, only on that port (of FLEETWATCH_API_OPS_HOST) and without a
  key, for Prometheus and probes on a network the install keeps private; the API's port
  then answers them 404.

The metrics are read from the database at scrape time (api/metrics.py), so one scrape of
any API process shows the whole installation.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from api.deps import current_key, session_cookie
from core.mqtt import connect_client, make_client
from core.settings import MqttTarget
from ingest.upkeep import overdue, read_jobs

router = APIRouter(tags=["operations"])

# The roles that may read the operations routes on the API's own port.
OPS_ROLES = ("admin", "staff", "firmware")
_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer fwk_...`")


def ops_access(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    session: Annotated[str | None, Depends(session_cookie)] = None,
) -> None:
    """Anyone on the operations listener; elsewhere a key of a staff role, or 404 when an
    operations listener is set (they are not served on the API's port then)."""
    ops_port = request.app.state.ops_port
    if ops_port is not None:
        if (request.scope.get("server") or (None, None))[1] == ops_port:
            return
        raise HTTPException(404, "Not Found")
    with request.app.state.pool.connection(timeout=5) as conn:
        key = current_key(conn, request, credentials, session)
    if key.role not in OPS_ROLES:
        raise HTTPException(403, f"a {key.role} key may not do this (needs {'/'.join(OPS_ROLES)})")


OpsAccess = Depends(ops_access)
# What the operations listener serves; anything else there is a 404.
OPS_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"})


class OperationsListenerOnly:
    """ASGI middleware: a request that came in on `ops_port` reaches the operations routes
    and nothing else (no API, no dashboard on a port kept open for probes and scrapers)."""

    def __init__(self, app, *, ops_port: int | None) -> None:
        self.app = app
        self.ops_port = ops_port

    async def __call__(self, scope, receive, send) -> None:
        on_ops_port = (scope.get("server") or (None, None))[1] == self.ops_port
        if scope["type"] == "http" and on_ops_port and scope["path"] not in OPS_PATHS:
            await JSONResponse({"detail": "Not Found"}, status_code=404)(scope, receive, send)
            return
        await self.app(scope, receive, send)


@router.get("/healthz")
def healthz() -> dict:
    """The process answers."""
    return {"status": "ok"}


def broker_reachable(target: MqttTarget, protocol: str, timeout: float = 2.0) -> bool:
    """Whether the broker accepts an MQTT connection from us within `timeout`."""
    accepted = threading.Event()
    client = make_client(target, f"fleetwatch-ready-{uuid.uuid4().hex[:8]}", protocol=protocol)
    client.on_connect = lambda c, u, f, rc, p: rc.is_failure or accepted.set()
    try:
        client.connect_timeout = timeout
        connect_client(client, target, keepalive=10)
        client.loop_start()
        return accepted.wait(timeout)
    except OSError:
        return False
    finally:
        # Disconnect first: the network thread then ends at once, not at its next 1 s wake.
        client.disconnect()
        client.loop_stop()


def is_fresh(checked_at: float | None, now: float, ttl_s: float) -> bool:
    """Whether an answer found at `checked_at` still stands at `now`."""
    return checked_at is not None and now - checked_at < ttl_s


class BrokerCheck:
    """Whether the broker accepts us, found out at most once per `ttl_s` however often and
    however many callers ask: one login per period. While a check runs, other callers get
    the last answer (the first ones wait for it)."""

    def __init__(
        self,
        target: MqttTarget,
        protocol: str,
        ttl_s: float,
        check: Callable[[MqttTarget, str], bool] = broker_reachable,
    ) -> None:
        self.target, self.protocol, self.ttl_s = target, protocol, ttl_s
        self._check = check
        self._lock = threading.Lock()
        self._answer: bool | None = None
        self._at: float | None = None
        self.checks = 0

    def reachable(self, now: float) -> bool:
        """The answer at `now` (a monotonic clock's reading)."""
        if is_fresh(self._at, now, self.ttl_s):
            return self._answer
        if not self._lock.acquire(blocking=self._answer is None):
            return self._answer
        try:
            if not is_fresh(self._at, now, self.ttl_s):  # nobody checked while we waited
                self._answer = self._check(self.target, self.protocol)
                self._at = now
                self.checks += 1
            return self._answer
        finally:
            self._lock.release()


@router.get("/readyz", dependencies=[OpsAccess])
def readyz(request: Request) -> JSONResponse:
    """200 when the database and the broker are reachable, else 503 saying which is not
    (the broker's answer is at most FLEETWATCH_API_READY_CACHE_S old)."""
    state = request.app.state
    checks = {"database": False, "broker": None}
    try:
        with state.pool.connection(timeout=2) as conn:
            checks["database"] = conn.execute("SELECT true").fetchone()[0]
            jobs = timescaledb_jobs(conn)
            if jobs is not None:
                # Detail, not readiness: heartbeats are still stored; the disk fills slowly.
                checks["timescaledb_jobs"] = jobs
    except Exception:  # any failure to reach it means not ready
        checks["database"] = False
    if state.broker_check is not None:
        checks["broker"] = state.broker_check.reachable(time.monotonic())
    ready = checks["database"] and checks["broker"] is not False
    return JSONResponse({"ready": ready, **checks}, status_code=200 if ready else 503)


def timescaledb_jobs(conn) -> dict | None:
    """The TimescaleDB jobs our tables depend on, for /readyz (None on plain PostgreSQL)."""
    jobs = read_jobs(conn)
    if not jobs:
        return None
    now = conn.execute("SELECT now()").fetchone()[0]
    late = [j.label for j in jobs if overdue(j, now)]
    return {"ok": not late, "overdue": late, "failures": sum(j.failures for j in jobs)}


@router.get("/openapi.json", include_in_schema=False, dependencies=[OpsAccess])
def openapi(request: Request) -> JSONResponse:
    """The OpenAPI description of every route."""
    return JSONResponse(request.app.openapi())


@router.get("/docs", include_in_schema=False, dependencies=[OpsAccess])
def docs() -> HTMLResponse:
    """Swagger UI over /openapi.json (its script and style come from a CDN)."""
    return get_swagger_ui_html(openapi_url="/openapi.json", title="Fleetwatch API")


@router.get("/metrics", response_class=Response, dependencies=[OpsAccess])
def metrics(request: Request) -> Response:
    """Prometheus text format."""
    return Response(generate_latest(request.app.state.metrics), media_type=CONTENT_TYPE_LATEST)
