"""The live stream: incident timeline events as server-sent events, scoped per key."""

from __future__ import annotations

import contextlib
import json
import socket
import threading

import httpx
import pytest
from support import auth, make_device, wait_until

from api import live
from api.app import create_app
from api.feed import POLL_S
from devices.registry import import_devices
from harness.apiserver import ApiServer


@pytest.fixture
def events(conn):
    """Three timeline events: opened and resolved on A's camera, opened on B's panel."""
    make_device(conn, "a-1", customer_id="cust-a", model_id="camera-v1")
    make_device(conn, "b-1", customer_id="cust-b", model_id="alarm-panel-v3")
    ids = []
    for device, kinds in (("a-1", ("opened", "resolved")), ("b-1", ("opened",))):
        incident = conn.execute(
            "INSERT INTO incidents (scope, device_id, kind, severity, opened_at, summary) "
            "VALUES ('device', %s, 'offline', 'warning', now(), %s) RETURNING id",
            (device, f"{device} went offline"),
        ).fetchone()[0]
        for kind in kinds:
            ids.append(
                conn.execute(
                    "INSERT INTO incident_events (incident_id, at, kind) VALUES (%s, now(), %s) "
                    "RETURNING id",
                    (incident, kind),
                ).fetchone()[0]
            )
    return ids


def read_stream(api, key: str, query: str, headers: dict | None = None) -> list[tuple[int, dict]]:
    with api.stream(
        "GET", f"/api/v1/events?{query}", headers={**auth(key), **(headers or {})}
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        messages, current = [], {}
        for line in response.iter_lines():
            if line.startswith("id: "):
                current["id"] = int(line[4:].split("-")[0])  # the incident part of I-C
            elif line.startswith("event: "):
                assert line == "event: incident"
            elif line.startswith("data: "):
                messages.append((current["id"], json.loads(line[6:])))
    return messages


def test_staff_stream_carries_every_event_in_order(api, keys, events):
    messages = read_stream(api, keys.staff, "since=0&limit=3")
    assert [m[0] for m in messages] == events
    assert [(m[1]["event"], m[1]["incident"]["device_id"]) for m in messages] == [
        ("opened", "a-1"),
        ("resolved", "a-1"),
        ("opened", "b-1"),
    ]
    assert messages[0][1]["incident"]["summary"] == "a-1 went offline"


def test_the_stream_opens_with_its_position_so_a_client_can_resume_from_it(api, keys, events):
    with api.stream("GET", "/api/v1/events?since=1", headers=auth(keys.staff)) as response:
        first = next(response.iter_lines())
    assert first.startswith("id: 1-")


def test_a_resumed_stream_starts_after_the_last_event_seen(api, keys, events):
    messages = read_stream(api, keys.staff, "limit=1", {"Last-Event-ID": f"{events[1]}-0"})
    assert [m[0] for m in messages] == [events[2]]


def test_customer_stream_carries_only_their_devices(api, keys, events):
    messages = read_stream(api, keys.customer("cust-b"), "since=0&limit=1")
    assert [(m[0], m[1]["incident"]["device_id"]) for m in messages] == [(events[2], "b-1")]


def test_stream_needs_a_key_and_a_numeric_position(api, keys):
    assert api.get("/api/v1/events").status_code == 401
    bad = api.get("/api/v1/events", headers={**auth(keys.staff), "Last-Event-ID": "x"})
    assert bad.status_code == 422
    odd = api.get("/api/v1/events", headers={**auth(keys.staff), "Last-Event-ID": "1-2-3"})
    assert odd.status_code == 400 and "position" in odd.json()["detail"]


def test_staff_stream_carries_campaign_progress(api, keys, conn):
    make_device(conn, "cam-1", model_id="camera-v1", customer_id="cust-a")
    campaign = conn.execute(
        "INSERT INTO campaigns (name, kind, target, starts_at, created_by, waves) VALUES "
        "('Recall', 'recall_notice', '{}', now(), 'fw', '[100]') RETURNING id"
    ).fetchone()[0]
    conn.execute(
        "INSERT INTO campaign_events (campaign_id, at, kind, detail) "
        "VALUES (%s, now(), 'halted', '{\"reason\": \"3 of 10 failed\"}')",
        (campaign,),
    )
    with api.stream(
        "GET",
        "/api/v1/events?since=0&limit=1",
        headers={**auth(keys.staff), "Last-Event-ID": "0-0"},
    ) as response:
        lines = list(response.iter_lines())
    assert "event: campaign" in lines
    data = json.loads(next(line for line in lines if line.startswith("data: "))[6:])
    assert data["event"] == "halted" and data["campaign"]["id"] == campaign
    assert data["detail"] == {"reason": "3 of 10 failed"}


# -- over real HTTP: one reader per process, a poll's cost, streams per key --------------


class LiveStream:
    """GET /api/v1/events over a raw socket, read in a thread, until `close()`.

    A raw socket, because only shutting it down reliably ends a blocking read elsewhere."""

    def __init__(self, server, key: str, query: str = "") -> None:
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        self.sock.sendall(
            f"GET /api/v1/events?{query} HTTP/1.1\r\nHost: fleetwatch.test\r\n"
            f"Authorization: Bearer {key}\r\nAccept: text/event-stream\r\n\r\n".encode()
        )
        self.data = b""
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            while part := self.sock.recv(65536):
                self.data += part
        except OSError:
            pass

    @property
    def status(self) -> int | None:
        """The answer's status, once its first line has arrived."""
        line = self.data.split(b"\r\n", 1)[0]
        return int(line.split()[1]) if b"\r\n" in self.data else None

    @property
    def connected(self) -> bool:
        return b": connected" in self.data

    def messages(self) -> list[dict]:
        """The data of every message so far (each SSE message is one chunk on the wire)."""
        return [
            json.loads(line[6:])
            for line in self.data.decode(errors="replace").split("\n")
            if line.startswith("data: ")
        ]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(10)


@pytest.fixture
def serve(make_settings, dsn, conn):
    """Start the app over the test database on a free port (`serve(**settings)`)."""
    servers = []

    def start(**overrides):
        app = create_app(make_settings(api_summary_refresh_s=3600, **overrides), dsn)
        servers.append(ApiServer(app, name="live-api", timeout_graceful_shutdown=2).start())
        servers[-1].app = app
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def streams():
    """Streams opened by a test (`streams(server, key, query)`), closed afterwards."""
    opened: list[LiveStream] = []

    def open_stream(server, key: str, query: str = "") -> LiveStream:
        opened.append(LiveStream(server, key, query))
        return opened[-1]

    yield open_stream
    for stream in opened:
        stream.close()


def add_incident(conn, device_id: str) -> int:
    return conn.execute(
        "INSERT INTO incidents (scope, device_id, kind, severity, opened_at, summary) "
        "VALUES ('device', %s, 'offline', 'warning', now(), 'x') RETURNING id",
        (device_id,),
    ).fetchone()[0]


def add_events(conn, incident_id: int, n: int = 1, kind: str = "comment") -> None:
    conn.execute(
        "INSERT INTO incident_events (incident_id, at, kind) "
        "SELECT %s, now(), %s FROM generate_series(1, %s)",
        (incident_id, kind, n),
    )


def event_rows_read(conn) -> int:
    """Rows of incident_events PostgreSQL has read so far, by any scan, in any session."""
    return conn.execute(
        "SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) "
        "FROM pg_stat_user_tables WHERE relname = 'incident_events'"
    ).fetchone()[0]


def test_a_quiet_customer_stream_does_not_read_history_again(
    serve, streams, keys, conn, monkeypatch
):
    """Ten customers of 40 devices each. While the other nine's timelines grow by 3,240
    events, cust-0 hears of none; once those are past, what its quiet stream's polls read
    does not grow with them (PostgreSQL's own count of the rows it read)."""
    monkeypatch.setattr(live, "KEEPALIVE_S", POLL_S)  # a keepalive after each quiet poll
    assert import_devices(
        conn,
        [
            {"id": f"d{c}-{n}", "model_id": "camera-v1", "customer_id": f"cust-{c}"}
            for c in range(10)
            for n in range(40)
        ],
    ).ok
    conn.execute(
        "INSERT INTO incidents (scope, device_id, kind, severity, opened_at, summary) "
        "SELECT 'device', id, 'offline', 'warning', now(), 'x' FROM devices"
    )
    # A history for everyone, and statistics that know it, as in any running install.
    conn.execute(
        "INSERT INTO incident_events (incident_id, at, kind) "
        "SELECT id, now(), 'comment' FROM incidents, generate_series(1, 5)"
    )
    conn.execute("ANALYZE devices, incidents, incident_events")
    server = serve(api_pool_size=2)
    stream = streams(server, keys.customer("cust-0"))
    wait_until(lambda: stream.connected)

    conn.execute(
        "INSERT INTO incident_events (incident_id, at, kind) "
        "SELECT i.id, now(), 'comment' FROM incidents i JOIN devices d ON d.id = i.device_id, "
        "generate_series(1, 9) WHERE d.customer_id <> 'cust-0'"
    )

    def quiet_polls(n: int) -> None:
        # Keepalives: each one comes after a poll that found nothing for cust-0.
        seen = stream.data.count(b": keepalive")
        wait_until(lambda: stream.data.count(b": keepalive") >= seen + n)

    quiet_polls(3)  # the 3,240 are read (once, or every time) and counted
    before = event_rows_read(conn)
    quiet_polls(3)
    read = event_rows_read(conn) - before

    assert stream.messages() == []
    assert read < 100, f"{read} rows read over 3 quiet polls, with 3,240 events behind"


def test_a_key_holds_at_most_its_share_of_streams(serve, streams, keys, conn):
    make_device(conn, "a-1", customer_id="cust-a")
    server = serve(api_streams_per_key=2)
    first, second = streams(server, keys.staff), streams(server, keys.staff)
    wait_until(lambda: first.connected and second.connected)

    third = streams(server, keys.staff)
    wait_until(lambda: third.status is not None)
    assert third.status == 429, third.data[:300]
    assert b"at most 2" in third.data
    other_key = streams(server, keys.customer("cust-a"))  # each key has its own share
    wait_until(lambda: other_key.connected)

    first.close()  # a closed stream gives its place back

    def reopened():
        stream = streams(server, keys.staff)
        wait_until(lambda: stream.status is not None)
        return stream.status == 200 or stream.close()

    wait_until(reopened)


def test_open_streams_hold_no_database_connection(serve, streams, keys, conn):
    """With more streams open than the pool has connections, the API still answers."""
    for n in range(3):
        make_device(conn, f"dev-{n}", customer_id=f"cust-{n}")
    server = serve(api_pool_size=2)
    opened = [streams(server, keys.customer(f"cust-{n}")) for n in range(3)]
    wait_until(lambda: all(s.connected for s in opened))
    answer = httpx.get(f"{server.url}/api/v1/fleet/summary", headers=auth(keys.staff), timeout=5)
    assert answer.status_code == 200


def test_streams_share_one_reader_that_reads_each_event_once(serve, streams, keys, conn):
    make_device(conn, "a-1", customer_id="cust-a")
    incident = add_incident(conn, "a-1")
    server = serve()
    opened = [
        streams(server, keys.staff),
        streams(server, keys.admin),
        streams(server, keys.customer("cust-a")),
    ]
    wait_until(lambda: all(s.connected for s in opened))
    feed = server.app.state.feed
    assert feed.streams == 3
    read_before = feed.events_read

    # Lines a customer may read too (a staff comment it would not be shown).
    add_events(conn, incident, 5, kind="opened")
    wait_until(lambda: all(len(s.messages()) == 5 for s in opened))
    assert feed.events_read - read_before == 5  # not 15: one reader for the three
