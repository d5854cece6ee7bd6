"""A customer's channel cannot make the server reach inside: the API over HTTP (uvicorn),
PostgreSQL, and a real HTTP sink that a refused URL never reaches.

The sink listens on 127.0.0.1, which production refuses: each test says which networks its
API allows (`alerts_allowed_networks`), "" being the production default.
"""

from __future__ import annotations

import httpx
import pytest
from support import add_channel, auth, count, make_device, verify

from api.app import create_app
from harness.apiserver import ApiServer

PRODUCTION = ""  # FLEETWATCH_ALERTS_ALLOWED_NETWORKS unset: public addresses only
LOOPBACK = "127.0.0.0/8"  # what the tests' sinks need


@pytest.fixture
def serve(make_settings, dsn, conn):
    """`serve(**settings)`: the API over HTTP on a free port, as an httpx client."""
    servers: list[ApiServer] = []
    clients: list[httpx.Client] = []

    def start(**overrides) -> httpx.Client:
        settings = make_settings(api_summary_refresh_s=3600, **overrides)
        server = ApiServer(create_app(settings, dsn)).start()
        servers.append(server)
        clients.append(httpx.Client(base_url=server.url, timeout=30))
        return clients[-1]

    yield start
    for client in clients:
        client.close()
    for server in servers:
        server.stop()


@pytest.fixture
def ann(conn, keys):
    make_device(conn, "dev-ann", customer_id="ann")
    return auth(keys.customer("ann"))


def refused(response: httpx.Response, rule: str) -> str:
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert f"({rule})" in detail, detail
    return detail


def marker_arrives(api: httpx.Client, who: dict, sink, conn) -> None:
    """A good channel's test message: sent after everything refused before it (the channel
    verified first, as a customer's new channel must be)."""
    made = api.post(
        "/api/v1/me/channels", json={"kind": "webhook", "url": sink.url("marker")}, headers=who
    )
    assert made.status_code == 201, made.text
    verify(api, conn, made.json()["id"], who)
    sent = api.post(f"/api/v1/me/channels/{made.json()['id']}/test", headers=who)
    assert sent.json()["ok"] is True, sent.text


@pytest.mark.parametrize(
    ("kind", "url", "rule"),
    [
        ("webhook", "json://127.0.0.1:{port}/internal/admin", "address"),
        ("webhook", "json://169.254.169.254/latest/meta-data/iam", "address"),
        ("webhook", "jsons://[::1]:{port}/x", "address"),
        ("webhook", "json://10.0.0.1/x", "address"),
        ("webhook", "json://0x7f000001:{port}/x", "address"),
        ("webhook", "xml://localhost:{port}/x", "address"),
        ("push", "gotify://192.168.0.10/token", "address"),
        ("push", "ntfy://127.0.0.1:{port}/topic", "address"),
        ("email", "mailto://u:p@example.com?smtp=127.0.0.1&to=a@example.com", "address"),
        ("webhook", "json://127.0.0.1:{port}/internal/admin?+X-Injected=yes", "headers"),
        ("webhook", "json://127.0.0.1:{port}/latest/meta-data?method=GET", "arguments"),
        ("webhook", "mqtt://127.0.0.1:1883/fleet/dev-ann/cmd", "scheme"),
        ("push", "json://127.0.0.1:{port}/x", "scheme"),
    ],
)
def test_customer_cannot_save_a_channel_that_reaches_inside(
    serve, ann, conn, http_sink, kind, url, rule
):
    api = serve(alerts_allowed_networks=PRODUCTION)
    url = url.format(port=http_sink.port)
    refused(api.post("/api/v1/me/channels", json={"kind": kind, "url": url}, headers=ann), rule)
    assert count(conn, "SELECT count(*) FROM contact_channels") == 0
    # Changing a good channel's URL to it is refused the same way, and changes nothing.
    good = add_channel(conn, "ann", "json://hooks.example.com/ann", kind=kind)
    changed = api.patch(f"/api/v1/me/channels/{good}", json={"url": url}, headers=ann)
    refused(changed, rule)
    stored = conn.execute("SELECT apprise_url FROM contact_channels WHERE id = %s", (good,))
    assert stored.fetchone()[0] == "json://hooks.example.com/ann"
    marker_arrives(serve(alerts_allowed_networks=LOOPBACK), ann, http_sink, conn)
    assert list(http_sink.by_path()) == ["/marker"]


def test_where_the_operator_allows_loopback_headers_and_methods_are_still_refused(
    serve, ann, conn, http_sink
):
    api = serve(alerts_allowed_networks=LOOPBACK)
    for url, rule in (
        (http_sink.url("internal/admin") + "?+X-Injected=yes", "headers"),
        (http_sink.url("internal/admin") + "?method=GET", "arguments"),
        (http_sink.url("internal/admin") + "?redirect=yes", "arguments"),
    ):
        body = {"kind": "webhook", "url": url}
        detail = refused(api.post("/api/v1/me/channels", json=body, headers=ann), rule)
        assert "X-Injected=yes" not in detail  # the rule, not the URL back
    marker_arrives(api, ann, http_sink, conn)
    assert list(http_sink.by_path()) == ["/marker"]


def test_staff_made_channels_follow_the_same_rules(serve, ann, keys, http_sink, conn):
    api = serve(alerts_allowed_networks=PRODUCTION)
    channels = (
        "SELECT (SELECT count(*) FROM contact_channels), (SELECT count(*) FROM staff_channels)"
    )
    before = conn.execute(channels).fetchone()
    metadata = "json://169.254.169.254/latest/meta-data"
    body = {"kind": "webhook", "url": metadata}
    made = api.post("/api/v1/customers/ann/channels", json=body, headers=auth(keys.staff))
    refused(made, "address")
    refused(api.post("/api/v1/staff-channels", json=body, headers=auth(keys.admin)), "address")
    mqtt = {"kind": "webhook", "url": "mqtt://127.0.0.1:1883/fleet/x"}
    refused(api.post("/api/v1/staff-channels", json=mqtt, headers=auth(keys.admin)), "scheme")
    # Refused means not stored: nothing to send to later.
    assert conn.execute(channels).fetchone() == before


def test_a_stored_url_that_now_reaches_inside_is_refused_when_tested(
    serve, ann, conn, keys, http_sink
):
    """A channel saved before these rules, or whose name now resolves to an inside address:
    the test send refuses it and says why; the sink hears nothing."""
    channel = add_channel(conn, "ann", http_sink.url("inside"), kind="webhook")
    api = serve(alerts_allowed_networks=PRODUCTION)
    for path, who in (
        (f"/api/v1/me/channels/{channel}/test", ann),
        (f"/api/v1/channels/{channel}/test", auth(keys.staff)),
    ):
        tested = api.post(path, headers=who)
        assert tested.status_code == 200 and tested.json()["ok"] is False
        assert "refused" in tested.json()["error"] and "loopback" in tested.json()["error"]
    marker_arrives(serve(alerts_allowed_networks=LOOPBACK), ann, http_sink, conn)
    assert list(http_sink.by_path()) == ["/marker"]


def test_test_messages_are_limited_per_customer(serve, ann, conn, keys, http_sink):
    make_device(conn, "dev-bob", customer_id="bob")
    bob = auth(keys.customer("bob"))
    api = serve(alerts_allowed_networks=LOOPBACK, api_channel_tests_per_hour=2)
    mine = add_channel(conn, "ann", http_sink.url("ann"), kind="webhook")
    for _ in range(2):
        assert api.post(f"/api/v1/me/channels/{mine}/test", headers=ann).json()["ok"] is True
    third = api.post(f"/api/v1/me/channels/{mine}/test", headers=ann)
    assert third.status_code == 429, third.text
    assert "2 test messages an hour" in third.json()["detail"]
    assert 3500 <= int(third.headers["Retry-After"]) <= 3600
    # Another customer's allowance is their own: their test is the marker.
    marker_arrives(api, bob, http_sink, conn)
    assert [path for path, sent in http_sink.by_path().items() for _ in sent] == [
        "/ann",
        "/ann",
        "/marker",
    ]


def test_channels_per_customer_are_capped(serve, ann, conn, keys):
    api = serve(alerts_allowed_networks=PRODUCTION, api_channels_per_customer=2)
    body = {"kind": "webhook", "url": "json://93.184.216.34/hook"}
    ids = []
    for _ in range(2):
        made = api.post("/api/v1/me/channels", json=body, headers=ann)
        assert made.status_code == 201, made.text
        ids.append(made.json()["id"])
    over = api.post("/api/v1/me/channels", json=body, headers=ann)
    assert over.status_code == 409 and "at most 2 channels" in over.json()["detail"]
    by_staff = api.post("/api/v1/customers/ann/channels", json=body, headers=auth(keys.staff))
    assert by_staff.status_code == 409
    assert api.delete(f"/api/v1/me/channels/{ids[0]}", headers=ann).status_code == 204
    assert api.post("/api/v1/me/channels", json=body, headers=ann).status_code == 201
    assert count(conn, "SELECT count(*) FROM contact_channels WHERE customer_id = 'ann'") == 2


def test_customer_may_lower_but_never_raise_their_hourly_limit(serve, ann, keys):
    api = serve(alerts_rate_limit_per_hour=20)
    above = api.patch("/api/v1/me", json={"max_messages_per_hour": 21}, headers=ann)
    assert above.status_code == 422 and "at most 20" in above.json()["detail"]
    assert api.get("/api/v1/me", headers=ann).json()["max_messages_per_hour"] is None
    for lower in (20, 5):
        done = api.patch("/api/v1/me", json={"max_messages_per_hour": lower}, headers=ann)
        assert done.status_code == 200 and done.json()["max_messages_per_hour"] == lower
    # The operator (an admin key) decides above it.
    raised = api.patch(
        "/api/v1/customers/ann", json={"max_messages_per_hour": 50}, headers=auth(keys.admin)
    )
    assert raised.status_code == 200 and raised.json()["max_messages_per_hour"] == 50
