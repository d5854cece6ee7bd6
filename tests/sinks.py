"""Real receivers for notifications: an SMTP server (aiosmtpd) and an HTTP endpoint."""

from __future__ import annotations

import email
import email.policy
import json
import threading
import time
from http.server import BaseHTTPRequestHandler

from aiosmtpd.controller import Controller
from support import free_port

from fleetwatch.inbox import LocalHttpServer


class SmtpSink:
    """A local SMTP server keeping every message it receives, with its arrival time."""

    def __init__(self) -> None:
        self.messages: list[tuple[float, email.message.EmailMessage]] = []
        self._lock = threading.Lock()
        self.port = free_port()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self._lock:
            self.messages.append((time.time(), message))
        return "250 OK"

    def start(self) -> SmtpSink:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def url(self, to: str = "owner@example.com") -> str:
        """The Apprise URL of this sink (no TLS, no AUTH)."""
        return f"mailto://127.0.0.1:{self.port}?from=alerts@example.com&to={to}&mode=insecure"

    def received(self) -> list[tuple[str, str]]:
        """(subject, body) of each message, in arrival order."""
        with self._lock:
            return [
                (m["subject"], m.get_body(("plain",)).get_content().strip())
                for _, m in self.messages
            ]


class HttpSink:
    """A local HTTP endpoint for Apprise's json:// URLs; can be told to fail for a while."""

    def __init__(self) -> None:
        self.posts: list[tuple[float, dict]] = []
        self.fail_next = 0
        self.lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with sink.lock:
                    failing = sink.fail_next > 0
                    if failing:
                        sink.fail_next -= 1
                    else:
                        sink.posts.append((time.time(), {**json.loads(body), "path": self.path}))
                self.send_response(503 if failing else 200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self._server = LocalHttpServer(Handler)
        self.port = self._server.port

    def start(self) -> HttpSink:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def url(self, path: str = "hook") -> str:
        return f"json://127.0.0.1:{self.port}/{path}"

    def by_path(self) -> dict[str, list[tuple[str, str]]]:
        """(title, message) of each post, per URL path ('/c1')."""
        with self.lock:
            paths: dict[str, list[tuple[str, str]]] = {}
            for _, p in self.posts:
                paths.setdefault(p["path"], []).append((p.get("title", ""), p.get("message", "")))
            return paths

    def received(self) -> list[tuple[str, str]]:
        with self.lock:
            return [(p.get("title", ""), p.get("message", "")) for _, p in self.posts]
