"""The demo's inbox: a local HTTP endpoint standing in for customers' phones and mailboxes.

The demo gives every simulated customer an Apprise `json://` channel pointing here, so the
notifications Fleetwatch sends can be seen arriving.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Inbox:
    """Receives Apprise JSON posts on 127.0.0.1 and keeps the latest ones."""

    def __init__(self, keep: int = 50) -> None:
        self.total = 0
        self.latest: deque[tuple[str, str]] = deque(maxlen=keep)  # (recipient, title)
        lock = threading.Lock()
        inbox = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                try:
                    title = json.loads(self.rfile.read(length)).get("title", "")
                except ValueError:
                    title = "<unreadable>"
                with lock:
                    inbox.total += 1
                    inbox.latest.appendleft((self.path.strip("/"), title))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self._server = LocalHttpServer(Handler)
        self.port = self._server.port

    def url(self, recipient: str) -> str:
        return f"json://127.0.0.1:{self.port}/{recipient}"

    def start(self) -> Inbox:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()


class _Server(ThreadingHTTPServer):
    # The default backlog of 5 drops connections when many senders post at once.
    request_queue_size = 128


class LocalHttpServer:
    """A threaded HTTP server on a free 127.0.0.1 port, serving one handler class."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self._server = _Server(("127.0.0.1", 0), handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> LocalHttpServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
