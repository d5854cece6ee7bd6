"""Notification receivers for benchmarks, each in its own process so it takes no GIL from us.

A copy, cut down, of tests/sinks.py: the bench needs only the arrival time of each message
and the device ids it names, and a receiver that is not slowed by (and does not slow) the
dispatcher threads it is measuring.

    bench process                          sink process
    Apprise json:// or mailto:// --------> ThreadingHTTPServer or aiosmtpd
    SinkProcess.drain() <----- queue ----- (time.time() on arrival, device ids)
"""

from __future__ import annotations

import email
import email.policy
import multiprocessing
import queue
import re
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Device ids as the bench registers them; a digest names several.
DEVICE_ID = re.compile(r"\bdev-\d+\b")


@dataclass(frozen=True, slots=True)
class Arrival:
    at: float  # time.time() when the message had been read in full
    device_ids: tuple[str, ...]


def _device_ids(*texts: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(m for text in texts for m in DEVICE_ID.findall(text)))


class _Server(ThreadingHTTPServer):
    # listen()'s backlog; the default 5 drops connections from a dozen concurrent senders,
    # and each dropped SYN costs the sender a 1 s retransmit.
    request_queue_size = 1024
    daemon_threads = True


def _serve_http(out: multiprocessing.Queue, stop, delay_s: float) -> None:
    import json

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            at = time.time()
            post = json.loads(body)
            if delay_s:  # a remote service's response time
                time.sleep(delay_s)
            self.send_response(200)
            self.end_headers()
            out.put((at, _device_ids(post.get("title", ""), post.get("message", ""))))

        def log_message(self, *args):
            pass

    server = _Server(("127.0.0.1", 0), Handler)
    out.put(("url", f"json://127.0.0.1:{server.server_address[1]}/hook"))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    stop.wait()
    server.shutdown()


def _serve_smtp(out: multiprocessing.Queue, stop, delay_s: float) -> None:
    import asyncio
    import socket

    from aiosmtpd.controller import Controller

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            at = time.time()
            message = email.message_from_bytes(envelope.content, policy=email.policy.default)
            text = message.get_body(("plain",)).get_content()
            out.put((at, _device_ids(str(message["subject"]), text)))
            if delay_s:
                await asyncio.sleep(delay_s)
            return "250 OK"

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    out.put(
        (
            "url",
            f"mailto://127.0.0.1:{port}?from=alerts@example.com&to=owner@example.com&mode=insecure",
        )
    )
    stop.wait()
    controller.stop()


def _run(kind: str, out: multiprocessing.Queue, stop, delay_s: float) -> None:
    {"http": _serve_http, "smtp": _serve_smtp}[kind](out, stop, delay_s)


class SinkProcess:
    """A local HTTP (Apprise json://) or SMTP (Apprise mailto://) receiver in a child process.

    `delay_s` holds each reply that long after the message has arrived, as a remote service
    would; the arrival time is still taken when the message is in.
    """

    def __init__(self, kind: str, delay_s: float = 0.0) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.kind = kind
        self._queue = ctx.Queue()
        self._stop = ctx.Event()
        self._proc = ctx.Process(
            target=_run, args=(kind, self._queue, self._stop, delay_s), daemon=True
        )
        self.url = ""

    def start(self) -> SinkProcess:
        self._proc.start()
        tag, self.url = self._queue.get(timeout=30)
        assert tag == "url"
        return self

    def drain(self, wait_s: float = 0.0) -> list[Arrival]:
        """Every arrival reported since the last drain (waiting up to wait_s for the first)."""
        arrivals = []
        try:
            item = self._queue.get(timeout=wait_s) if wait_s else self._queue.get_nowait()
            while True:
                arrivals.append(Arrival(*item))
                item = self._queue.get_nowait()
        except queue.Empty:
            pass
        return arrivals

    def stop(self) -> None:
        self._stop.set()
        self._proc.join(10)
        if self._proc.is_alive():
            self._proc.terminate()
