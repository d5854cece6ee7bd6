"""Every API route against every role, and customer A against customer B's things.

The table below must name every route of the OpenAPI spec: a new route fails this test
until someone decides who may call it.
"""

from __future__ import annotations

import logging

import pytest
from support import PAGE, add_channel, auth, make_device, sign_in

from api.auth import create_key

ALL = {"admin", "staff", "firmware", "customer"}
READ = {"admin", "staff", "firmware"}
STAFF = {"admin", "staff"}
ADMIN = {"admin"}
FIRMWARE = {"admin", "firmware"}
CUSTOMER = {"customer"}

ALLOWED = {
    ("POST", "/api/v1/campaigns"): FIRMWARE,
    ("GET", "/api/v1/campaigns"): READ,
    ("GET", "/api/v1/campaigns/{campaign_id}"): READ,
    ("GET", "/api/v1/campaigns/{campaign_id}/devices"): READ,
    ("GET", "/api/v1/campaigns/{campaign_id}/completion"): READ,
    ("GET", "/api/v1/campaigns/{campaign_id}/completion.csv"): READ,
    ("POST", "/api/v1/campaigns/{campaign_id}/pause"): FIRMWARE,
    ("POST", "/api/v1/campaigns/{campaign_id}/resume"): FIRMWARE,
    ("POST", "/api/v1/campaigns/{campaign_id}/cancel"): FIRMWARE,
    ("PATCH", "/api/v1/channels/{channel_id}"): STAFF,
    ("DELETE", "/api/v1/channels/{channel_id}"): STAFF,
    ("POST", "/api/v1/channels/{channel_id}/test"): STAFF,
    ("POST", "/api/v1/customers"): ADMIN,
    ("GET", "/api/v1/customers/{customer_id}"): STAFF,
    ("PATCH", "/api/v1/customers/{customer_id}"): ADMIN,
    ("GET", "/api/v1/customers/{customer_id}/channels"): STAFF,
    ("POST", "/api/v1/customers/{customer_id}/channels"): STAFF,
    # A link that signs in as the customer: staff, not firmware (tests/portal/).
    ("POST", "/api/v1/customers/{customer_id}/signin-link"): STAFF,
    ("GET", "/api/v1/devices"): ALL,
    ("POST", "/api/v1/devices"): ADMIN,
    ("GET", "/api/v1/devices/{device_id}"): ALL,
    ("PATCH", "/api/v1/devices/{device_id}"): ADMIN,
    ("DELETE", "/api/v1/devices/{device_id}"): ADMIN,
    ("GET", "/api/v1/devices/{device_id}/history"): ALL,
    ("GET", "/api/v1/events"): ALL,
    ("GET", "/api/v1/fleet/online-share"): ALL,
    ("GET", "/api/v1/fleet/summary"): ALL,
    ("GET", "/api/v1/incidents"): ALL,
    ("GET", "/api/v1/incidents/{incident_id}"): ALL,
    ("POST", "/api/v1/incidents/{incident_id}/ack"): STAFF,
    ("POST", "/api/v1/incidents/{incident_id}/comments"): STAFF,
    ("POST", "/api/v1/incidents/{incident_id}/resolve"): STAFF,
    ("POST", "/api/v1/incidents/{incident_id}/updates"): STAFF,
    ("GET", "/api/v1/keys"): ADMIN,
    ("POST", "/api/v1/keys"): ADMIN,
    ("DELETE", "/api/v1/keys/{key_id}"): ADMIN,
    ("GET", "/api/v1/me"): CUSTOMER,
    ("PATCH", "/api/v1/me"): CUSTOMER,
    ("GET", "/api/v1/me/campaigns"): CUSTOMER,
    ("POST", "/api/v1/me/campaigns/{campaign_id}/ack"): CUSTOMER,
    ("GET", "/api/v1/me/channels"): CUSTOMER,
    ("POST", "/api/v1/me/channels"): CUSTOMER,
    ("PATCH", "/api/v1/me/channels/{channel_id}"): CUSTOMER,
    ("DELETE", "/api/v1/me/channels/{channel_id}"): CUSTOMER,
    ("POST", "/api/v1/me/channels/{channel_id}/test"): CUSTOMER,
    ("POST", "/api/v1/me/channels/{channel_id}/verify"): CUSTOMER,
    ("POST", "/api/v1/me/channels/{channel_id}/code"): CUSTOMER,
    ("GET", "/api/v1/me/devices"): CUSTOMER,
    ("GET", "/api/v1/me/home"): CUSTOMER,
    ("GET", "/api/v1/me/incidents"): CUSTOMER,
    ("GET", "/api/v1/me/notifications"): CUSTOMER,
    ("POST", "/api/v1/me/incidents/{incident_id}/ack"): CUSTOMER,
    ("POST", "/api/v1/me/devices/{device_id}/snooze"): CUSTOMER,
    ("DELETE", "/api/v1/me/devices/{device_id}/snooze"): CUSTOMER,
    ("POST", "/api/v1/me/devices/{device_id}/stop-watching"): CUSTOMER,
    ("GET", "/api/v1/models"): READ,
    ("POST", "/api/v1/models"): ADMIN,
    ("GET", "/api/v1/models/{model_id}"): READ,
    ("PATCH", "/api/v1/models/{model_id}"): ADMIN,
    ("GET", "/api/v1/releases/health"): READ,
    ("GET", "/api/v1/silences"): STAFF,
    ("POST", "/api/v1/silences"): STAFF,
    ("DELETE", "/api/v1/silences/{silence_id}"): STAFF,
    ("GET", "/api/v1/staff-channels"): STAFF,
    ("POST", "/api/v1/staff-channels"): ADMIN,
    ("DELETE", "/api/v1/staff-channels/{channel_id}"): ADMIN,
    # Operations: how the installation is built and fares (with an operations port set,
    # only there, without a key: tests/api/test_ops.py).
    ("GET", "/metrics"): READ,
    ("GET", "/readyz"): READ,
}
# Routes left out of the spec, decided here all the same.
HIDDEN = {
    ("GET", "/openapi.json"): READ,
    ("GET", "/docs"): READ,
}
# Routes open to everyone by design: liveness, no data; and the customer's way in (a
# sign-in link's token is the credential: tests/portal/test_sessions.py; asking for a link
# sends it only to a verified channel and answers the same whatever happened:
# tests/portal/test_signin_requests.py).
OPEN = {
    ("GET", "/healthz"),
    ("POST", "/api/v1/signin/redeem"),
    ("POST", "/api/v1/signin/out"),
    ("POST", "/api/v1/signin/request"),
}
# Routes whose credential is a message link's token in the body, not a key: what a token
# opens is tested below (test_a_link_opens_its_own_customers_things_only) and in
# tests/portal/.
TOKEN = {
    ("POST", "/api/v1/links/open"),
    ("POST", "/api/v1/links/act"),
    ("POST", "/api/v1/links/signin"),
}
# An endless stream: its scoping is tested in test_live.py.
STREAMS = {("GET", "/api/v1/events")}
# Routes where customer A, allowed in general, asks about B's thing: never found.
FOREIGN = {
    "/api/v1/devices/{device_id}",
    "/api/v1/devices/{device_id}/history",
    "/api/v1/incidents/{incident_id}",
    "/api/v1/me/campaigns/{campaign_id}/ack",
    "/api/v1/me/channels/{channel_id}",
    "/api/v1/me/channels/{channel_id}/test",
    "/api/v1/me/channels/{channel_id}/verify",
    "/api/v1/me/channels/{channel_id}/code",
    "/api/v1/me/incidents/{incident_id}/ack",
    "/api/v1/me/devices/{device_id}/snooze",
    "/api/v1/me/devices/{device_id}/stop-watching",
}
BODIES = {
    "/api/v1/campaigns": {
        "name": "x",
        "kind": "recall_notice",
        "target": {"models": ["x"]},
        "safe_to_use": True,
        "instructions": "x",
    },
    "/api/v1/customers": {"id": "cust-new", "name": "New"},
    "/api/v1/devices": {"id": "new-1", "model_id": "camera-v1"},
    "/api/v1/keys": {"role": "staff"},
    "/api/v1/models": {
        "id": "m-new",
        "name": "M",
        "device_type": "sensor",
        "kind": "home",
        "heartbeat_interval_s": 60,
    },
    "/api/v1/silences": {"scope": "label", "target": "x", "duration_s": 60, "reason": "x"},
    "/api/v1/staff-channels": {"kind": "webhook", "url": "json://127.0.0.1:9/staff"},
    "/api/v1/customers/{customer_id}/channels": {"kind": "webhook", "url": "json://127.0.0.1:9/x"},
    "/api/v1/me/channels": {"kind": "webhook", "url": "json://127.0.0.1:9/mine"},
    "/api/v1/incidents/{incident_id}/comments": {"text": "x"},
    "/api/v1/incidents/{incident_id}/resolve": {},
    "/api/v1/incidents/{incident_id}/updates": {"text": "x"},
    "/api/v1/me/channels/{channel_id}/verify": {"code": "123456"},
    "/api/v1/customers/{customer_id}/signin-link": {},
    "/api/v1/me/devices/{device_id}/snooze": {"hours": 24},
}


@pytest.fixture
def world(conn):
    """Customer A and customer B, each with a device, an incident, a channel, a recall."""
    from datetime import UTC, datetime

    from campaigns.store import CampaignCreate, create_campaign

    ids = {}
    for who in ("a", "b"):
        make_device(
            conn, f"{who}-1", customer_id=f"cust-{who}", model_id="camera-v1", serial=f"SER-{who}"
        )
        ids[f"channel_{who}"] = add_channel(
            conn, f"cust-{who}", f"json://127.0.0.1:9/{who}-secret-token-8271"
        )
        ids[f"incident_{who}"] = conn.execute(
            "INSERT INTO incidents (scope, device_id, kind, severity, opened_at, summary) "
            "VALUES ('device', %s, 'offline', 'warning', now(), 'x') RETURNING id",
            (f"{who}-1",),
        ).fetchone()[0]
    ids["campaign_b"] = create_campaign(
        conn,
        CampaignCreate.model_validate(
            {**BODIES["/api/v1/campaigns"], "target": {"device_ids": ["b-1"]}}
        ),
        created_by="t",
        now=datetime.now(UTC),
    )[0]
    ids["staff_channel"] = conn.execute(
        "INSERT INTO staff_channels (apprise_url) VALUES ('json://127.0.0.1:9/s') RETURNING id"
    ).fetchone()[0]
    ids["silence"] = conn.execute(
        "INSERT INTO silences (scope, target, starts_at, ends_at, reason, created_by) "
        "VALUES ('label', 'x', now(), now() + interval '1 hour', 'x', 't') RETURNING id"
    ).fetchone()[0]
    ids["spare_key"] = create_key(conn, "staff")[0]
    return ids


# Query parameters a route needs to answer more than 422.
QUERIES = {"/api/v1/releases/health": "?model=camera-v1"}


def concrete(path: str, ids: dict) -> str:
    staff = "staff-channels" in path
    return (
        path.replace("{campaign_id}", str(ids["campaign_b"]))
        .replace("{channel_id}", str(ids["staff_channel"] if staff else ids["channel_b"]))
        .replace("{customer_id}", "cust-b")
        .replace("{device_id}", "b-1")
        .replace("{incident_id}", str(ids["incident_b"]))
        .replace("{key_id}", str(ids["spare_key"]))
        .replace("{model_id}", "camera-v1")
        .replace("{silence_id}", str(ids["silence"]))
    ) + QUERIES.get(path, "")


def spec_routes(api, key: str) -> set[tuple[str, str]]:
    spec = api.get("/openapi.json", headers=auth(key)).json()
    return {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}


def test_the_matrix_names_every_route(api, keys):
    assert spec_routes(api, keys.admin) - OPEN - TOKEN == set(ALLOWED)
    for method, path in HIDDEN:
        assert api.request(method, path, headers=auth(keys.admin)).status_code == 200, path


def test_every_route_refuses_a_missing_or_unknown_key(api, world):
    for method, path in sorted(set(ALLOWED) - STREAMS | set(HIDDEN)):
        for headers in ({}, auth("fwk_forged")):
            response = api.request(
                method, concrete(path, world), headers=headers, json=BODIES.get(path)
            )
            assert response.status_code == 401, (method, path, headers)


def test_every_route_against_every_role(api, keys, world):
    role_keys = {
        "admin": keys.admin,
        "staff": keys.staff,
        "firmware": keys.firmware,
        "customer": keys.customer("cust-a"),
    }
    # Changes last, so that what a route removes does not hide the routes after it.
    order = sorted(
        set(ALLOWED) - STREAMS | set(HIDDEN), key=lambda r: (r[0] == "DELETE", r[0] != "GET", r)
    )
    for method, path in order:
        allowed = {**ALLOWED, **HIDDEN}[(method, path)]
        url = concrete(path, world)
        for role in sorted(role_keys, key=lambda r: r in allowed):  # refusals first
            body = BODIES.get(path, {} if method == "PATCH" else None)
            response = api.request(method, url, headers=auth(role_keys[role]), json=body)
            where = (method, path, role, response.status_code, response.text[:200])
            if role not in allowed:
                assert response.status_code == 403, where
            elif role == "customer" and path in FOREIGN:
                assert response.status_code == 404, where  # B's thing: as if it did not exist
            else:
                assert response.status_code not in (401, 403), where
                assert response.status_code < 500, where
            if role == "customer" and response.status_code < 400:
                # Whatever a customer is shown, nothing of B's is in it.
                assert "b-1" not in response.text and "cust-b" not in response.text, where
                assert "b-secret-token-8271" not in response.text, where


def test_a_customer_session_is_a_customer_key_and_changes_need_the_page_header(
    api, conn, keys, world
):
    """The session cookie, a second kind of caller: every route answers customer A's
    session as it answers customer A's key; a change without the page's header is refused
    before it is looked at (another site's page cannot make one)."""
    key = keys.customer("cust-a")
    order = sorted(
        set(ALLOWED) - STREAMS | set(HIDDEN), key=lambda r: (r[0] == "DELETE", r[0] != "GET", r)
    )
    sign_in(conn, api, "cust-a")
    cookies = dict(api.cookies)
    for method, path in order:
        url = concrete(path, world)
        body = BODIES.get(path, {} if method == "PATCH" else None)
        api.cookies.clear()
        by_key = api.request(method, url, headers=auth(key), json=body)
        for name, value in cookies.items():
            api.cookies.set(name, value)
        if method != "GET":
            bare = api.request(method, url, json=body)
            if by_key.status_code != 403:
                assert bare.status_code == 403, (method, path, bare.status_code)
                assert "X-Fleetwatch-Page" in bare.text, (method, path)
        by_session = api.request(method, url, headers=PAGE, json=body)
        where = (method, path, by_key.status_code, by_session.status_code, by_session.text[:200])
        if path.startswith("/api/v1/me") and method != "GET":
            # Changes of one's own: both succeed or both are refused for the same reason
            # (the key's went first, so a second create may meet a limit the first did not).
            assert (by_key.status_code < 400) == (by_session.status_code < 400) or (
                by_session.status_code in (404, 409, 422)
            ), where
        else:
            assert by_session.status_code == by_key.status_code, where
        if by_session.status_code < 400:
            assert "b-1" not in by_session.text and "cust-b" not in by_session.text, where


def test_no_answer_or_log_line_shows_a_channel_secret(api, keys, world, caplog):
    caplog.set_level(logging.INFO)  # what the service logs in production
    for path in (
        "/api/v1/customers/cust-b/channels",
        "/api/v1/staff-channels",
        f"/api/v1/incidents/{world['incident_b']}",
    ):
        assert "b-secret-token-8271" not in api.get(path, headers=auth(keys.admin)).text
    failed = api.post(f"/api/v1/channels/{world['channel_b']}/test", headers=auth(keys.staff))
    assert failed.json()["ok"] is False and "b-secret-token-8271" not in failed.text
    assert failed.json()["error"]  # the reason is there, scrubbed
    assert caplog.records and "b-secret-token-8271" not in caplog.text


# What staff keep for themselves: a staff note on B's incident and a silence's reason; and
# what is B's own: the address of one of B's channels (a customer sees their own).
STAFF_NOTE, SILENCE_REASON, B_ADDRESS = "b-private-note-5531", "b-silence-7719", "b-mail.example"


@pytest.fixture
def staff_notes(conn, world):
    """On B's device: a staff note, a message sent to B's mail channel, a silence; and a
    later event anyone reading B's timeline may see, as a marker for the stream."""
    from datetime import UTC, datetime

    import incidents

    now = datetime.now(UTC)
    incident = world["incident_b"]
    channel = add_channel(conn, "cust-b", f"mailto://owner@{B_ADDRESS}")
    conn.execute(
        "INSERT INTO notifications (incident_id, device_id, customer_id, channel_id, template, "
        "severity, context, status, created_at, due_at, sent_at, last_error) VALUES "
        "(%s, 'b-1', 'cust-b', %s, 'device_offline', 'warning', '{}', 'failed', now(), now(), "
        "NULL, %s)",
        (incident, channel, f"550 no mailbox owner@{B_ADDRESS}"),
    )
    incidents.comment(conn, incident, "key 1 (ops)", STAFF_NOTE, now)
    sent = {"channel": f"mailto://***@{B_ADDRESS}", "attempt": 1, "channel_id": channel}
    incidents.record_events(conn, [(incident, "notified", sent)], now)
    conn.execute(
        "INSERT INTO silences (scope, target, starts_at, ends_at, reason, created_by) "
        "VALUES ('device', 'b-1', now(), now() + interval '1 hour', %s, 'key 1 (ops)')",
        (SILENCE_REASON,),
    )
    incidents.record_events(conn, [(incident, "reminded", {"reminder": 1})], now)
    return world


def test_firmware_and_customers_read_no_staff_note_and_firmware_no_customer_channel(
    api, keys, staff_notes
):
    # role: its key, what it must not read, and how many of B's 3 timeline events it sees
    hidden = {
        "firmware": (keys.firmware, (STAFF_NOTE, SILENCE_REASON, B_ADDRESS), 1),
        "customer": (keys.customer("cust-b"), (STAFF_NOTE, SILENCE_REASON), 2),
        "admin": (keys.admin, (), 3),
    }
    shown_to_admin = set()
    for role, (key, secrets, events) in hidden.items():
        for method, path in sorted(set(ALLOWED) - STREAMS):
            if method != "GET" or role not in ALLOWED[(method, path)]:
                continue
            url = concrete(path, staff_notes)
            response = api.get(url, headers=auth(key))
            assert response.status_code == 200, (role, url, response.text[:200])
            for text in secrets:
                assert text not in response.text, (role, url, text)
            shown_to_admin |= {t for t in hidden["firmware"][1] if t in response.text}
        stream = api.get(f"/api/v1/events?since=0&limit={events}", headers=auth(key))
        kinds = [line for line in stream.text.splitlines() if line.startswith("data: ")]
        for text in secrets:
            assert text not in stream.text, (role, "events", text)
        # The stream reaches the marker without a staff note on the way.
        assert '"event": "reminded"' in kinds[-1], (role, kinds)
        assert role == "admin" or not any('"event": "comment"' in k for k in kinds), (role, kinds)
    # The check can fail: staff do read all of it.
    assert shown_to_admin == set(hidden["firmware"][1])


def _link_for(conn, world, who: str) -> str:
    """A message link minted for customer `who`'s offline message, as the dispatcher does."""
    import uuid
    from datetime import UTC, datetime

    from alerts.dispatcher import Claimed, Message
    from portal.links import mint_for_messages

    channel = world[f"channel_{who}"]
    nid = conn.execute(
        "INSERT INTO notifications (incident_id, device_id, customer_id, channel_id, template, "
        "severity, context, created_at, due_at) VALUES "
        "(%s, %s, %s, %s, 'device_offline', 'warning', '{}', now(), now()) RETURNING id",
        (world[f"incident_{who}"], f"{who}-1", f"cust-{who}", channel),
    ).fetchone()[0]
    claimed = Claimed(nid, world[f"incident_{who}"], f"{who}-1", "device_offline", "warning",
                      {}, 1, f"c{channel}")  # fmt: skip
    message = Message(f"c{channel}", "json://x", None, [claimed], uuid.uuid4())
    assert (
        mint_for_messages(conn, [message], datetime.now(UTC), public_url="https://x", link_days=1)
        == 1
    )
    return message.items[0].context["link"].split("#link=")[1]


def test_a_link_opens_its_own_customers_things_only(api, conn, world):
    token_a = _link_for(conn, world, "a")
    _link_for(conn, world, "b")
    page = api.post("/api/v1/links/open", json={"token": token_a})
    assert page.status_code == 200, page.text
    assert [s["device"]["id"] for s in page.json()["subjects"]] == ["a-1"]
    assert "b-1" not in page.text and "cust-b" not in page.text
    for action in ("ack", "snooze_24h", "stop_watching", "confirm_recall"):
        answer = api.post(
            "/api/v1/links/act", json={"token": token_a, "action": action, "device_id": "b-1"}
        )
        assert answer.status_code == 404, (action, answer.text)
    assert conn.execute(
        "SELECT i.status, s.status FROM incidents i JOIN device_state s USING (device_id) "
        "WHERE i.id = %s",
        (world["incident_b"],),
    ).fetchone() == ("open", "provisioned")
    assert conn.execute("SELECT count(*) FROM silences WHERE target = 'b-1'").fetchone()[0] == 0
