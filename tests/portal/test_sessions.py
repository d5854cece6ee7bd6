"""Sign-in links and sessions: a link works once, expires, opens only its own customer's
session; the session is a customer caller like a customer key, and asks pages for proof of
origin before changing anything."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from support import PAGE, auth, make_device, sign_in

from portal.sessions import SESSION_COOKIE, find_session, mint_signin_link, redeem

T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def link(conn, customer_id: str, now: datetime = T0, minutes: int = 15) -> str:
    return mint_signin_link(
        conn,
        customer_id,
        channel_id=None,
        requested_by="test",
        now=now,
        ttl=timedelta(minutes=minutes),
    )


@pytest.fixture
def two_customers(conn):
    make_device(conn, "a-dev", customer_id="cust-a")
    make_device(conn, "b-dev", customer_id="cust-b")


def test_a_link_works_once(conn, two_customers):
    token = link(conn, "cust-a")
    assert redeem(conn, token, T0 + timedelta(minutes=1)) == "cust-a"
    assert redeem(conn, token, T0 + timedelta(minutes=2)) is None


def test_a_link_expires(conn, two_customers):
    token = link(conn, "cust-a", minutes=15)
    assert redeem(conn, token, T0 + timedelta(minutes=15)) is None
    fresh = link(conn, "cust-a", minutes=15)
    assert redeem(conn, fresh, T0 + timedelta(minutes=14, seconds=59)) == "cust-a"


@pytest.mark.parametrize("token", ["", "short", "x" * 65, "é" * 30, "A" * 43])
def test_what_is_not_a_link_opens_nothing(conn, two_customers, token):
    assert redeem(conn, token, T0) is None
    assert find_session(conn, token, T0) is None


def test_the_cookie_opens_only_its_own_customer(api, conn, two_customers):
    sign_in(conn, api, "cust-a")
    cookie = api.cookies.get(SESSION_COOKIE)
    assert cookie
    me = api.get("/api/v1/me")
    assert me.status_code == 200 and me.json()["id"] == "cust-a"
    assert [d["id"] for d in api.get("/api/v1/me/devices").json()["items"]] == ["a-dev"]
    assert api.get("/api/v1/devices/b-dev").status_code == 404
    assert api.get("/api/v1/devices/a-dev").status_code == 200
    # A customer caller, not staff.
    assert api.get("/api/v1/customers/cust-b").status_code == 403
    assert api.get("/api/v1/me/incidents").status_code == 200


def test_the_cookie_is_httponly_samesite_and_not_the_token(api, conn, two_customers):
    token = link(conn, "cust-a", now=datetime.now(UTC))
    answer = api.post("/api/v1/signin/redeem", json={"token": token})
    assert answer.status_code == 200
    header = answer.headers["set-cookie"]
    assert header.startswith(f"{SESSION_COOKIE}=")
    assert "HttpOnly" in header and "SameSite=lax" in header and "Path=/" in header
    # Served over plain http here, and public_url is http: not Secure (it would never be sent).
    assert "Secure" not in header
    assert token not in header
    # Nothing in the answer opens anything: no token, no session id.
    assert token not in answer.text and api.cookies.get(SESSION_COOKIE) not in answer.text


def test_secure_cookie_when_customers_reach_us_over_tls(make_settings, dsn, conn, two_customers):
    from fastapi.testclient import TestClient

    from api.app import create_app

    app = create_app(make_settings(public_url="https://fleet.example.com"), dsn)
    with TestClient(app) as client:
        token = link(conn, "cust-a", now=datetime.now(UTC))
        answer = client.post("/api/v1/signin/redeem", json={"token": token})
        assert answer.status_code == 200
        assert "Secure" in answer.headers["set-cookie"]


def test_a_used_or_expired_link_is_one_clear_404(api, conn, two_customers):
    token = link(conn, "cust-a", now=datetime.now(UTC))
    assert api.post("/api/v1/signin/redeem", json={"token": token}).status_code == 200
    again = api.post("/api/v1/signin/redeem", json={"token": token})
    assert again.status_code == 404 and "ask for a new one" in again.json()["detail"]
    old = link(conn, "cust-a", now=datetime.now(UTC) - timedelta(hours=1))
    assert api.post("/api/v1/signin/redeem", json={"token": old}).json() == again.json()
    assert api.post("/api/v1/signin/redeem", json={"token": "x" * 101}).status_code == 422


def test_changes_through_a_session_need_the_page_header(api, conn, two_customers):
    sign_in(conn, api, "cust-a")
    refused = api.patch("/api/v1/me", json={"timezone": "Europe/Berlin"})
    assert refused.status_code == 403 and "X-Fleetwatch-Page" in refused.json()["detail"]
    assert api.get("/api/v1/me").json()["timezone"] == "UTC"
    done = api.patch("/api/v1/me", json={"timezone": "Europe/Berlin"}, headers=PAGE)
    assert done.status_code == 200 and done.json()["timezone"] == "Europe/Berlin"


def test_a_key_wins_over_a_cookie(api, conn, keys, two_customers):
    sign_in(conn, api, "cust-a")
    # A program's key is what it is, whatever cookie rides along.
    as_b = api.get("/api/v1/me", headers=auth(keys.customer("cust-b")))
    assert as_b.json()["id"] == "cust-b"
    assert api.get("/api/v1/me", headers=auth("fwk_nope")).status_code == 401


def test_sign_out_ends_the_session(api, conn, two_customers):
    sign_in(conn, api, "cust-a")
    cookie = api.cookies.get(SESSION_COOKIE)
    assert api.post("/api/v1/signin/out").status_code == 204
    api.cookies.set(SESSION_COOKIE, cookie)  # a copy kept elsewhere opens nothing now
    answer = api.get("/api/v1/me")
    assert answer.status_code == 401 and "sign in again" in answer.json()["detail"]


def test_an_expired_session_opens_nothing(api, conn, two_customers):
    sign_in(conn, api, "cust-a")
    conn.execute(
        "UPDATE customer_sessions SET created_at = now() - interval '2 days', "
        "expires_at = now() - interval '1 second'"
    )
    assert api.get("/api/v1/me").status_code == 401


def test_the_session_names_the_customer_on_timelines(api, conn, two_customers):
    sign_in(conn, api, "cust-a")
    session = find_session(conn, api.cookies.get(SESSION_COOKIE), datetime.now(UTC))
    name = conn.execute("SELECT name FROM customers WHERE id = 'cust-a'").fetchone()[0]
    assert session.customer_id == "cust-a" and session.customer_name == name
