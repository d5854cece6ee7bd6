"""Request bodies are capped before anything reads them.

FastAPI reads and parses a route's body before it resolves the route's dependencies, the
key among them: without a cap, anyone could make the process hold any body in memory. This
pure ASGI middleware sits in front of everything and counts the bytes as they arrive:

    declared too big (Content-Length)   413 at once; the app is never called
    counted past the cap (chunked)      413 the moment the count passes it; the app gets
                                        a disconnect, and its own answer is dropped

One route may take more (campaign creation, whose target may list 100,000 device ids), and
only from a key allowed to use it: that key is looked up before a byte past the general cap
is read. FastAPI's own `max_body_size` is not used: its larger limit would be open to anyone,
and its route limits are fixed at import, where ours come from each app's settings.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import anyio
import psycopg

from api.auth import find_key

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LargerBody:
    """One route that may take bodies up to `max_bytes` from keys of `roles`."""

    method: str
    path: str
    max_bytes: int
    roles: tuple[str, ...]


def declared_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    """The Content-Length a request declares; None without one (or chunked); -1 if it is
    not a number."""
    for name, value in headers:
        if name == b"content-length":
            return int(value) if value.strip().isdigit() else -1
    return None


def bearer_token(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" and token.strip() else None
    return None


def key_role(pool, token: str) -> str | None:
    """The role of the live key `token`, or None (unknown, revoked, database unreachable)."""
    try:
        with pool.connection(timeout=5) as conn:
            key = find_key(conn, token, datetime.now(UTC))
    except (psycopg.Error, TimeoutError) as exc:  # PoolTimeout is a psycopg.Error
        log.warning("body limit: could not look up a key: %s", type(exc).__name__)
        return None
    return key.role if key is not None else None


class BodyLimit:
    """ASGI middleware: refuse request bodies over `max_bytes` with a 413, before the app
    reads them. `larger` names the one route that may take more, from the keys it allows;
    `pool` finds the app's connection pool (it exists only once the app has started)."""

    def __init__(
        self,
        app,
        *,
        max_bytes: int,
        larger: LargerBody | None = None,
        pool: Callable[[dict], object] | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.larger = larger
        self.pool = pool

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = declared_length(scope["headers"])
        if declared == -1:
            await _answer(send, 400, "Content-Length must be a number")
            return
        limit = await self._limit_for(scope, declared)
        if declared is not None and declared > limit:
            await _refuse(send, limit)
            return

        received, refused, started = 0, False, False

        async def counted_receive():
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    refused = True
                    if not started:
                        await _refuse(send, limit)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message) -> None:
            nonlocal started
            if refused:
                return  # the client has its 413; what the app makes of the disconnect is not sent
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, counted_receive, guarded_send)

    async def _limit_for(self, scope, declared: int | None) -> int:
        """The cap for this request: the general one, or the larger one of its route for a
        key allowed it (looked up only when the general cap might not do)."""
        larger = self.larger
        if (
            larger is None
            or scope["method"] != larger.method
            or scope["path"].rstrip("/") != larger.path
            or (declared is not None and declared <= self.max_bytes)
        ):
            return self.max_bytes
        token = bearer_token(scope["headers"])
        pool = self.pool(scope) if self.pool is not None else None
        if token is None or pool is None:
            return self.max_bytes
        role = await anyio.to_thread.run_sync(key_role, pool, token)
        return larger.max_bytes if role in larger.roles else self.max_bytes


async def _refuse(send, limit: int) -> None:
    await _answer(send, 413, f"the request body is larger than {limit} bytes")


async def _answer(send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
