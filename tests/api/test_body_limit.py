"""Request bodies are capped before anything reads them, over real HTTP (uvicorn in a thread).

    test ──raw socket──► uvicorn ──► BodyLimit ──► FastAPI (reads, parses, checks the key)

A refusal is a 413 sent while the client is still sending: the server stops at the cap and
never holds the rest, whether the size was declared (Content-Length) or not (chunked).
"""

from __future__ import annotations

import json
import logging
import socket
import time
from pathlib import Path

import httpx
import pytest
from support import auth, make_device

from api.app import create_app
from api.limits import bearer_token, declared_length
from harness.apiserver import ApiProcess, ApiServer

MiB = 1024 * 1024
DEFAULT_LIMIT = MiB  # what an install gets without setting anything
CHUNK = 64 * 1024


@pytest.fixture
def site(make_settings, dsn, conn):
    """The app as installed by default (no body setting changed), on a free port."""
    app = create_app(make_settings(api_summary_refresh_s=3600), dsn)
    server = ApiServer(app, name="body-limit-api", timeout_graceful_shutdown=2).start()
    yield server
    server.stop()


def open_request(server, method: str, path: str, headers: dict[str, str]) -> socket.socket:
    """A connection with the request line and headers sent, the body not yet."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    lines = [f"{method} {path} HTTP/1.1", "Host: fleetwatch.test"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    return sock


def answered(sock: socket.socket) -> bool:
    """Whether the server has sent something back (without waiting)."""
    sock.setblocking(False)
    try:
        return bool(sock.recv(1, socket.MSG_PEEK))
    except BlockingIOError:
        return False
    finally:
        sock.setblocking(True)


def read_answer(sock: socket.socket, timeout_s: float = 10.0) -> tuple[int, dict, dict]:
    """The status, headers and JSON body of the answer on `sock`."""
    sock.settimeout(timeout_s)
    data = b""
    while b"\r\n\r\n" not in data:
        part = sock.recv(65536)
        assert part, f"connection closed without an answer: {data!r}"
        data += part
    head, body = data.split(b"\r\n\r\n", 1)
    status_line, *header_lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (h.split(":", 1) for h in header_lines)}
    length = int(headers.get("content-length", 0))
    while len(body) < length:
        part = sock.recv(65536)
        assert part, "connection closed in the middle of the answer"
        body += part
    return int(status_line.split()[1]), headers, json.loads(body[:length] or b"null")


def test_a_declared_oversized_body_is_refused_before_it_is_sent(site):
    """42 MB announced to a route that needs a key, without one: a 413 at once, nothing read."""
    declared = 42 * MiB
    sock = open_request(
        site,
        "POST",
        "/api/v1/devices",
        {"Content-Type": "application/json", "Content-Length": str(declared)},
    )
    with sock:
        sock.sendall(b"[" + b" " * (CHUNK - 1))  # a first piece; the rest never follows
        status, _, body = read_answer(sock)
    assert status == 413, body
    assert str(DEFAULT_LIMIT) in body["detail"]


def test_a_chunked_oversized_body_is_refused_while_it_streams(site, caplog):
    """No size announced: the server counts what arrives and answers 413 past the cap, while
    the client still has most of its 64 MiB to send."""
    caplog.set_level(logging.WARNING)
    total = 64 * MiB
    sock = open_request(
        site,
        "POST",
        "/api/v1/devices",
        {"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
    )
    sent = 0
    chunk = f"{CHUNK:x}\r\n".encode() + b" " * CHUNK + b"\r\n"
    deadline = time.monotonic() + 60
    with sock:
        sock.settimeout(10)
        while sent < total and not answered(sock) and time.monotonic() < deadline:
            try:
                sock.sendall(chunk)
            except OSError:  # the server may stop reading once it has answered
                break
            sent += CHUNK
        status, _, body = read_answer(sock)
    assert status == 413, body
    assert sent < total, "the answer came only after the whole body was sent"
    # Cut off mid-body, the app ends quietly: no error, no 500 logged.
    assert httpx.get(f"{site.url}/healthz").status_code == 200
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


def peak_rss_mb(pid: int) -> int:
    """The most memory the process has held (its resident peak), from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024
    raise AssertionError("no VmHWM in /proc")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux's /proc")
def test_a_42_mb_body_without_a_key_leaves_the_process_as_it_was(dsn, conn):
    """The finding's own case, in a process of its own: its peak memory stays put (before the
    cap, 42 MB of JSON took this one from 69 MB to 196 MB)."""
    api = ApiProcess({"FLEETWATCH_DATABASE_URL": dsn, "FLEETWATCH_API_SUMMARY_REFRESH_S": "3600"})
    api.start()
    try:
        assert httpx.get(f"{api.url}/api/v1/devices").status_code == 401  # warmed up
        before = peak_rss_mb(api.pid)
        body = b'{"id": "' + b"x" * (42 * MiB) + b'"}'
        answer = httpx.post(
            f"{api.url}/api/v1/devices",
            content=body,
            headers={"Content-Type": "application/json"},
            timeout=60,
        )
        assert answer.status_code == 413
        assert peak_rss_mb(api.pid) - before < 16
    finally:
        api.stop()


def test_bodies_within_the_cap_are_read_as_before(site, keys, conn):
    make_device(conn, "dev-1")
    answer = httpx.post(
        f"{site.url}/api/v1/devices",
        json={"id": "dev-2", "model_id": "camera-v1", "name": "x" * 100},
        headers=auth(keys.admin),
    )
    assert answer.status_code == 201, answer.text
    # Without a key, a small body still gets the key's answer.
    assert httpx.post(f"{site.url}/api/v1/devices", json={"id": "x"}).status_code == 401


def big_campaign(size: int) -> bytes:
    """A recall for a list of device ids, `size` bytes or a little more of JSON."""
    ids = [f"device-{n:056}" for n in range(size // 66 + 1)]
    body = {
        "name": "Recall by list",
        "kind": "recall_notice",
        "target": {"device_ids": ids},
        "safe_to_use": True,
        "instructions": "x",
    }
    return json.dumps(body).encode()


def test_only_campaign_creation_by_a_firmware_key_may_send_more(site, keys):
    body = big_campaign(3 * MiB)
    assert DEFAULT_LIMIT < len(body) < 4 * MiB
    headers = {"Content-Type": "application/json"}

    created = httpx.post(
        f"{site.url}/api/v1/campaigns", content=body, headers={**headers, **auth(keys.firmware)}
    )
    # Read and checked: no registered device has those ids, so nothing is targeted.
    assert created.status_code != 413 and created.status_code < 500, created.text

    for who in ({}, auth("fwk_forged"), auth(keys.staff)):  # no key, no such key, not allowed
        refused = httpx.post(
            f"{site.url}/api/v1/campaigns", content=body, headers={**headers, **who}
        )
        assert refused.status_code == 413, (who, refused.text)
    other = httpx.post(
        f"{site.url}/api/v1/devices", content=body, headers={**headers, **auth(keys.admin)}
    )
    assert other.status_code == 413


@pytest.mark.parametrize(
    ("headers", "declared"),
    [
        ([], None),
        ([(b"transfer-encoding", b"chunked")], None),
        ([(b"content-length", b"1048577")], 1048577),
        ([(b"content-length", b" 12 ")], 12),
        ([(b"content-length", b"-1")], -1),
        ([(b"content-length", b"1e9")], -1),
    ],
)
def test_what_a_request_declares(headers, declared):
    assert declared_length(headers) == declared


@pytest.mark.parametrize(
    ("header", "token"),
    [
        (b"Bearer fwk_abc", "fwk_abc"),
        (b"bearer  fwk_abc ", "fwk_abc"),
        (b"Basic dXNlcg==", None),
        (b"Bearer", None),
    ],
)
def test_the_key_a_request_carries(header, token):
    assert bearer_token([(b"authorization", header)]) == token
