"""Receivers for what Fleetwatch sends: an HTTP endpoint for Apprise's json:// URLs and an
SMTP server for its mailto:// URLs, each on a free port of 127.0.0.1.

In a thread of this process (tests, the demo's inbox), or each in a child process of its own
(benchmarks, the drill), so that it takes no GIL from the processes measured; the child
takes each arrival time and sends what arrived back through a queue:

    this process                         HttpSink / SmtpSink (thread)
    Apprise json:// or mailto:// ------> ThreadingHTTPServer or aiosmtpd
                                         |  on_receive(Received)
                                         v  (keep: the latest ones, or all)
    sink.received(), sink.by_path()      sink.posts

    this process                         child process (spawn)
    Apprise ---------------------------> HttpSink / SmtpSink in a thread
    SinkProcess.drain() <---- queue ---- (arrival time, path, title, message)

aiosmtpd is a dev dependency: it is imported when an SmtpSink is made.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import json
import multiprocessing
import queue
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from harness.ports import LOCALHOST, free_port

# Numbered device ids (`dev-000042`), as the benchmarks register their fleets.
NUMBERED_DEVICE_ID = re.compile(r"\bdev-\d+\b")


@dataclass(frozen=True, slots=True)
class Received:
    """One message as a sink received it."""

    at: float  # time.time() once the message had been read in full
    path: str  # HTTP: the URL path (`/<customer id>`); SMTP: the To header
    title: str  # HTTP: the JSON title; SMTP: the subject
    message: str  # HTTP: the JSON message; SMTP: the plain-text body, stripped

    @property
    def device_ids(self) -> tuple[str, ...]:
        """Numbered device ids named in the title and message, in order (a digest names
        several)."""
        return tuple(dict.fromkeys(NUMBERED_DEVICE_ID.findall(f"{self.title}\n{self.message}")))


class _Sink:
    """What both sinks keep: the latest `keep` messages (None: all), a count of every one,
    and an `on_receive` callback, called before the reply is sent."""

    def __init__(
        self,
        *,
        delay_s: float = 0.0,
        keep: int | None = None,
        on_receive: Callable[[Received], None] | None = None,
    ) -> None:
        self.delay_s = delay_s  # a remote service's response time, after the arrival
        self.on_receive = on_receive
        self.posts: deque[Received] = deque(maxlen=keep)
        self.total = 0
        self.lock = threading.Lock()

    def _arrived(self, item: Received) -> None:
        with self.lock:
            self.total += 1
            self.posts.append(item)
        if self.on_receive is not None:
            self.on_receive(item)

    def received(self) -> list[tuple[str, str]]:
        """(title, message) of each message kept, in arrival order."""
        with self.lock:
            return [(p.title, p.message) for p in self.posts]

    def latest(self, count: int) -> list[Received]:
        """The last `count` messages kept, newest first."""
        with self.lock:
            return list(self.posts)[::-1][:count]

    def by_path(self) -> dict[str, list[tuple[str, str]]]:
        """(title, message) of each message kept, per path (`/c1`) or recipient."""
        with self.lock:
            paths: dict[str, list[tuple[str, str]]] = {}
            for p in self.posts:
                paths.setdefault(p.path, []).append((p.title, p.message))
            return paths

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class _HttpServer(ThreadingHTTPServer):
    # listen()'s backlog; the default 5 drops connections from a dozen concurrent senders,
    # and each dropped SYN costs the sender a 1 s retransmit.
    request_queue_size = 1024
    daemon_threads = True


class HttpSink(_Sink):
    """An HTTP endpoint for Apprise's json:// URLs, in a thread of this process.

    `fail_next = n` answers the next n posts with 503 and keeps nothing of them.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.fail_next = 0
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                at = time.time()
                with sink.lock:
                    failing = sink.fail_next > 0
                    if failing:
                        sink.fail_next -= 1
                if not failing:
                    try:
                        post = json.loads(body)
                    except ValueError:
                        post = {"title": "<unreadable>", "message": body.decode(errors="replace")}
                    # Recorded before the reply: once the body is in, the customer has the
                    # message, whatever happens to the sender afterwards.
                    sink._arrived(
                        Received(at, self.path, post.get("title", ""), post.get("message", ""))
                    )
                    if sink.delay_s:
                        time.sleep(sink.delay_s)
                self.send_response(503 if failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self._server = _HttpServer((LOCALHOST, 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="http-sink", daemon=True
        )

    def url(self, path: str = "hook") -> str:
        """The Apprise URL posting to `/path` of this sink."""
        return http_url(self.port, path)

    def start(self) -> HttpSink:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()


class SmtpSink(_Sink):
    """An SMTP server (aiosmtpd; no TLS, no AUTH), in a thread of this process.

    `messages` holds (arrival time, EmailMessage) of each message kept, for the headers.
    """

    def __init__(self, **kwargs) -> None:
        from aiosmtpd.controller import Controller

        super().__init__(**kwargs)
        self.messages: deque[tuple[float, email.message.EmailMessage]] = deque(
            maxlen=self.posts.maxlen
        )
        self.port = free_port()
        self._controller = Controller(self, hostname=LOCALHOST, port=self.port)

    async def handle_DATA(self, server, session, envelope):
        import asyncio

        at = time.time()
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        part = message.get_body(("plain",))
        text = part.get_content().strip() if part is not None else ""
        with self.lock:
            self.messages.append((at, message))
        self._arrived(Received(at, str(message["to"]), str(message["subject"]), text))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        return "250 OK"

    def url(self, to: str = "owner@example.com") -> str:
        """The Apprise URL mailing `to` through this sink."""
        return smtp_url(self.port, to)

    def start(self) -> SmtpSink:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()


# ntfy's priorities by name (its `X-Priority` header takes a name or 1-5).
NTFY_PRIORITIES = {"min": 1, "low": 2, "default": 3, "high": 4, "max": 5, "urgent": 5}


@dataclass(frozen=True, slots=True)
class Pushed:
    """One ntfy message as the NtfySink published it."""

    at: float
    topic: str
    title: str
    message: str
    priority: int  # 1 (min) to 5 (max), 3 when none was given
    click: str | None
    authorization: str | None  # the request's Authorization header, as sent


class NtfySink(_Sink):
    """A local ntfy server's publish API (https://docs.ntfy.sh/publish/), for Apprise's
    ntfy:// URLs, in a thread of this process. Like ntfy it takes

        POST / with a JSON object (topic, message, title, priority, click), which is how
             Apprise's plugin publishes, and
        PUT or POST /<topic> with the message as the body,

    with the fields also as headers (X-Title or Title or t, X-Priority or Priority or p,
    X-Click or Click), and answers 200 with the message as JSON. With `token` set, a
    publish without `Authorization: Bearer <token>` is refused with ntfy's 401 (a wrong
    topic name or priority: its 400s). `pushes` holds what it published.
    """

    def __init__(self, *, token: str | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.token = token
        self.pushes: deque[Pushed] = deque(maxlen=self.posts.maxlen)
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _error(self, status: int, code: int, error: str) -> None:
                self._answer(status, {"code": code, "http": status, "error": error})

            def do_PUT(self):
                self.do_POST()

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                at = time.time()
                auth = self.headers.get("Authorization")
                if sink.token is not None and auth != f"Bearer {sink.token}":
                    return self._error(401, 40101, "unauthorized")
                fields = {
                    "title": _header(self.headers, "X-Title", "Title", "t"),
                    "priority": _header(self.headers, "X-Priority", "Priority", "prio", "p"),
                    "click": _header(self.headers, "X-Click", "Click"),
                }
                topic = self.path.split("?", 1)[0].strip("/")
                if topic:
                    fields["message"] = body.decode(errors="replace")
                else:
                    try:
                        posted = json.loads(body)
                    except ValueError:
                        return self._error(400, 40017, "invalid request: request body must be JSON")
                    if not isinstance(posted, dict):
                        return self._error(400, 40017, "invalid request: request body must be JSON")
                    topic = str(posted.get("topic") or "")
                    for name in ("message", "title", "priority", "click"):
                        if posted.get(name) is not None:
                            fields[name] = posted[name]
                if not re.fullmatch(r"[-_A-Za-z0-9]{1,64}", topic):
                    return self._error(400, 40010, "invalid request: topic invalid")
                priority = fields["priority"]
                priority = NTFY_PRIORITIES.get(str(priority).lower(), priority or 3)
                try:
                    priority = int(priority)
                except (TypeError, ValueError):
                    priority = 0
                if not 1 <= priority <= 5:
                    return self._error(400, 40007, "invalid priority")
                pushed = Pushed(
                    at,
                    topic,
                    str(fields["title"] or ""),
                    str(fields.get("message") or "triggered"),
                    priority,
                    fields["click"] or None,
                    auth,
                )
                with sink.lock:
                    sink.pushes.append(pushed)
                sink._arrived(Received(at, f"/{topic}", pushed.title, pushed.message))
                if sink.delay_s:
                    time.sleep(sink.delay_s)
                answer = {"id": f"m{sink.total}", "time": int(at), "event": "message"}
                answer.update(
                    topic=topic, title=pushed.title, message=pushed.message, priority=priority
                )
                if pushed.click:
                    answer["click"] = pushed.click
                self._answer(200, answer)

            def log_message(self, *args):
                pass

        self._server = _HttpServer((LOCALHOST, 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="ntfy-sink", daemon=True
        )

    def url(self, topic: str = "alerts") -> str:
        """Apprise's URL for publishing to `topic` of this server (with its token, if any)."""
        return ntfy_url(self.port, topic, self.token)

    def latest_push(self) -> Pushed | None:
        with self.lock:
            return self.pushes[-1] if self.pushes else None

    def start(self) -> NtfySink:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()


def _header(headers, *names: str) -> str | None:
    for name in names:
        if headers.get(name):
            return headers.get(name)
    return None


def ntfy_url(port: int, topic: str, token: str | None = None) -> str:
    """Apprise's URL for an ntfy server of our own on this machine (private mode: Apprise
    posts to it, not to ntfy.sh; `token` as Apprise's ntfy access token)."""
    auth = f"{token}@" if token else ""
    return f"ntfy://{auth}{LOCALHOST}:{port}/{topic}?mode=private" + (
        "&auth=token" if token else ""
    )


SINKS: dict[str, type[_Sink]] = {"http": HttpSink, "smtp": SmtpSink, "ntfy": NtfySink}


def http_url(port: int, path: str) -> str:
    """Apprise's URL for a JSON post to /path of a local sink."""
    return f"json://{LOCALHOST}:{port}/{path}"


def smtp_url(port: int, to: str) -> str:
    """Apprise's URL for a mail to `to` through a local sink (no TLS, no AUTH)."""
    return f"mailto://{LOCALHOST}:{port}?from=alerts@example.com&to={to}&mode=insecure"


def _serve_in_child(kind: str, delay_s: float, out, stop) -> None:
    def forward(item: Received) -> None:
        out.put((item.at, item.path, item.title, item.message))

    sink = SINKS[kind](delay_s=delay_s, keep=0, on_receive=forward).start()
    out.put(("ready", sink.port, sink.url()))
    stop.wait()
    sink.stop()


class SinkProcess:
    """An HttpSink ("http") or SmtpSink ("smtp") in a child process of its own.

    `url` is the Apprise URL of its default path or recipient, `url_for(path)` that of
    another path; `drain()` takes in what arrived since the last drain and returns it, and
    `arrived` holds everything so far. `delay_s` holds each reply that long after the
    message has arrived, as a remote service would.
    """

    def __init__(self, kind: str, delay_s: float = 0.0) -> None:
        if kind not in SINKS:
            raise ValueError(f"kind must be one of {', '.join(SINKS)}, not {kind!r}")
        ctx = multiprocessing.get_context("spawn")
        self.kind = kind
        self._queue = ctx.Queue()
        self._stop = ctx.Event()
        self._proc = ctx.Process(
            target=_serve_in_child,
            args=(kind, delay_s, self._queue, self._stop),
            name=f"{kind}-sink",
            daemon=True,
        )
        self.port = 0
        self.url = ""
        self.arrived: list[Received] = []

    def start(self, timeout_s: float = 30.0) -> SinkProcess:
        self._proc.start()
        tag, self.port, self.url = self._queue.get(timeout=timeout_s)
        assert tag == "ready", tag
        return self

    def url_for(self, path: str) -> str:
        """The Apprise URL of `path` (HTTP) or recipient `path` (SMTP) of this sink."""
        return {"http": http_url, "smtp": smtp_url, "ntfy": ntfy_url}[self.kind](self.port, path)

    def drain(self, wait_s: float = 0.0) -> list[Received]:
        """What arrived since the last drain (waiting up to `wait_s` for a first one)."""
        new = []
        with contextlib.suppress(queue.Empty):
            item = self._queue.get(timeout=wait_s) if wait_s else self._queue.get_nowait()
            while True:
                new.append(Received(*item))
                item = self._queue.get_nowait()
        self.arrived += new
        return new

    def stop(self) -> None:
        self.drain()
        self._stop.set()
        self._proc.join(10)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(5)
        self._queue.close()
        self._queue.join_thread()
