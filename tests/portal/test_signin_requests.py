"""Asking for a sign-in link: it goes, through the alerts process, only to a verified channel
with the address asked for; it opens that customer's session once; the answer is the same
whatever happened; requests are limited; staff can send one; the link is shown nowhere."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta

import pytest
from support import add_channel, auth, count, make_device

from portal.requests import request_signin, signin_refusal

T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
LINK = re.compile(r"/my/#signin=([A-Za-z0-9_-]+)")
SAME = {
    "detail": "if this address belongs to a verified channel of a customer, a sign-in link "
    "is on its way to it"
}


@pytest.fixture
def jane(conn, smtp):
    """cust-a (Jane) with a verified e-mail channel at the SMTP sink; cust-b with a device."""
    make_device(conn, "a-dev", customer_id="cust-a")
    make_device(conn, "b-dev", customer_id="cust-b")
    conn.execute("UPDATE customers SET name = 'Jane' WHERE id = 'cust-a'")
    return add_channel(conn, "cust-a", smtp.url("jane@example.com"))


def ask(api, address: str):
    answer = api.post("/api/v1/signin/request", json={"address": address})
    assert answer.status_code == 202 and answer.json() == SAME, answer.text
    return answer


def mails(smtp) -> list[tuple[str, str, str]]:
    """(to, subject, body) of each mail the sink received, in order."""
    return [(p.path, p.title, p.message) for p in smtp.latest(100)[::-1]]


def links_in(smtp) -> list[str]:
    return [LINK.search(body)[1] for _, _, body in mails(smtp) if LINK.search(body)]


def test_a_requested_link_arrives_by_mail_and_signs_in_its_customer_once(
    api, conn, jane, smtp, make_dispatcher
):
    ask(api, "  Jane@Example.COM ")
    assert make_dispatcher().run_once() == 1
    [(to, subject, body)] = mails(smtp)
    assert to == "jane@example.com" and subject == "Your Fleetwatch sign-in link"
    assert "within 15 minutes" in body and "ignore this message" in body
    assert "http://127.0.0.1:8080/my/#signin=" in body
    [token] = links_in(smtp)

    signed = api.post("/api/v1/signin/redeem", json={"token": token})
    assert signed.status_code == 200 and signed.json()["customer_id"] == "cust-a"
    # The session is Jane's and no one else's.
    assert api.get("/api/v1/me").json()["id"] == "cust-a"
    assert api.get("/api/v1/devices/b-dev").status_code == 404
    # Once.
    again = api.post("/api/v1/signin/redeem", json={"token": token})
    assert again.status_code == 404
    # The outbox row stays (Jane sees a link was sent) without the link in it.
    listed = api.get("/api/v1/me/notifications")
    assert [n["template"] for n in listed.json()] == ["signin_link"]
    assert token not in listed.text
    stored = conn.execute("SELECT context::text FROM notifications").fetchone()[0]
    assert token not in stored and "signin_url" not in stored
    assert count(conn, "SELECT count(*) FROM signin_links WHERE channel_id = %s", jane) == 1


def test_unknown_and_unverified_addresses_get_the_same_answer_and_nothing(
    api, conn, jane, smtp, make_dispatcher, caplog
):
    caplog.set_level(logging.INFO)
    add_channel(conn, "cust-b", smtp.url("bob@example.com"), verified=False)
    ask(api, "nobody@example.com")
    ask(api, "bob@example.com")  # a channel Bob added but never verified
    ask(api, "jane@example.com")  # the marker: this one does go
    make_dispatcher().run_once()
    assert [to for to, _, _ in mails(smtp)] == ["jane@example.com"]
    assert count(conn, "SELECT count(*) FROM signin_links") == 1
    assert count(conn, "SELECT count(*) FROM notifications") == 1
    # Nothing in the log gives the link away either.
    [token] = links_in(smtp)
    assert token not in caplog.text


def test_a_webhook_with_the_address_gets_no_link(api, conn, jane, http_sink, make_dispatcher):
    """A link goes only to a channel that reaches a person; a webhook names no address."""
    hook = add_channel(conn, "cust-b", http_sink.url("bob"), kind="webhook")
    assert conn.execute(
        "SELECT address FROM contact_channels WHERE id = %s", (hook,)
    ).fetchone() == (None,)
    ask(api, http_sink.url("bob"))
    ask(api, "jane@example.com")
    make_dispatcher().run_once()
    assert http_sink.received() == []
    assert count(conn, "SELECT count(*) FROM signin_links") == 1


def test_a_shared_address_gets_a_link_for_each_customer(api, conn, jane, smtp, make_dispatcher):
    add_channel(conn, "cust-b", smtp.url("JANE@example.com"))
    ask(api, "jane@example.com")
    make_dispatcher().run_once()
    tokens = links_in(smtp)
    assert len(tokens) == 2
    owners = set()
    for token in tokens:
        api.cookies.clear()
        owners.add(api.post("/api/v1/signin/redeem", json={"token": token}).json()["customer_id"])
    assert owners == {"cust-a", "cust-b"}


@pytest.mark.parametrize(
    ("to_address", "to_customer", "expected"),
    [
        ([], [], None),
        ([T0 - timedelta(minutes=m) for m in (1, 2)], [], None),
        ([T0 - timedelta(minutes=m) for m in (1, 2, 3)], [], "address"),
        ([], [T0 - timedelta(minutes=m) for m in (1, 2, 3)], "customer"),
        # An hour on, the old ones no longer count.
        ([T0 - timedelta(minutes=m) for m in (60, 61, 62)], [], None),
        ([T0 - timedelta(minutes=m) for m in (59, 61, 62)], [T0 - timedelta(minutes=59)], None),
    ],
)
def test_signin_refusal(to_address, to_customer, expected):
    assert signin_refusal(to_address, to_customer, 3, T0) == expected


def test_requests_are_limited_per_address_and_per_customer(conn, jane, smtp, make_settings, caplog):
    caplog.set_level(logging.INFO)
    settings = make_settings(portal_signin_requests_per_hour=2)
    second = add_channel(conn, "cust-a", smtp.url("jane.work@example.com"))
    outcomes = [request_signin(conn, "jane@example.com", settings, T0 + timedelta(minutes=m))
                for m in (0, 1, 2)]  # fmt: skip
    assert outcomes == [
        [f"cust-a: sent to channel {jane}"],
        [f"cust-a: sent to channel {jane}"],
        ["cust-a: refused (address)"],
    ]
    # Another address of the same customer: the customer's own limit.
    assert request_signin(conn, "jane.work@example.com", settings, T0 + timedelta(minutes=3)) == [
        "cust-a: refused (customer)"
    ]
    # An hour after the first, one more may go.
    later = T0 + timedelta(minutes=60, seconds=1)
    assert request_signin(conn, "jane.work@example.com", settings, later) == [
        f"cust-a: sent to channel {second}"
    ]
    assert count(conn, "SELECT count(*) FROM notifications WHERE template = 'signin_link'") == 3
    assert caplog.text.count("sign-in request refused") == 2


def test_links_go_at_once_alone_and_outside_the_hourly_limit(
    api, conn, jane, smtp, make_dispatcher
):
    """Jane asked: quiet hours all day and an hourly limit already used up do not hold her
    link, and an alert waiting for the same channel does not swallow it into a digest."""
    conn.execute(
        "UPDATE customers SET quiet_hours_start = '00:00', quiet_hours_end = '23:59', "
        "max_messages_per_hour = 1 WHERE id = 'cust-a'"
    )
    now = datetime.now(UTC)
    context = (
        '{"device_name": "Hall", "model_name": "T2", "identity": "id a-dev", '
        '"since_local": "noon", "device_kind": "thermostat", "customer_name": "Jane", '
        '"what_to_do": "x"}'
    )
    for status, sent_at in (("sent", now - timedelta(minutes=10)), ("pending", None)):
        conn.execute(
            "INSERT INTO notifications (device_id, customer_id, channel_id, template, severity, "
            "context, created_at, due_at, status, sent_at) VALUES ('a-dev', 'cust-a', %s, "
            "'device_offline', 'warning', %s, %s, %s, %s, %s)",
            (jane, context, now - timedelta(minutes=11), now - timedelta(minutes=11), status,
             sent_at),
        )  # fmt: skip
    ask(api, "jane@example.com")
    make_dispatcher().run_once()
    assert [subject for _, subject, _ in mails(smtp)] == ["Your Fleetwatch sign-in link"]
    # The alert waits for the hour, as before.
    assert count(conn, "SELECT count(*) FROM notifications WHERE last_error = 'rate limited'") == 1


def test_staff_send_a_link_to_a_verified_channel_and_are_told_which(
    api, conn, keys, jane, smtp, make_dispatcher, caplog
):
    caplog.set_level(logging.INFO)
    staff = auth(keys.staff)
    unverified = add_channel(conn, "cust-a", smtp.url("new@example.com"), verified=False)
    hook = add_channel(conn, "cust-a", "json://127.0.0.1:9/hook", kind="webhook")
    sent = api.post("/api/v1/customers/cust-a/signin-link", json={}, headers=staff)
    assert sent.status_code == 202, sent.text
    assert sent.json() == {
        "channel": {"id": jane, "kind": "email", "label": None},
        "expires_in_minutes": 15,
    }
    for channel, status in ((unverified, 409), (hook, 409), (999999, 404)):
        refused = api.post(
            "/api/v1/customers/cust-a/signin-link", json={"channel_id": channel}, headers=staff
        )
        assert refused.status_code == status, refused.text
    # Bob has no verified channel at all.
    none = api.post("/api/v1/customers/cust-b/signin-link", json={}, headers=staff)
    assert none.status_code == 409 and "no verified" in none.json()["detail"]
    make_dispatcher().run_once()
    [token] = links_in(smtp)
    assert token not in sent.text and token not in caplog.text
    requested_by = conn.execute("SELECT requested_by FROM signin_links").fetchone()[0]
    assert "test staff" in requested_by
    assert api.post("/api/v1/signin/redeem", json={"token": token}).json()["customer_id"] == (
        "cust-a"
    )


def test_the_operator_command_prints_a_link_that_signs_in(api, conn, jane, dsn, monkeypatch):
    from typer.testing import CliRunner

    from core.settings import get_settings
    from fleetwatch.cli import app

    monkeypatch.setenv("FLEETWATCH_DATABASE_URL", dsn)
    monkeypatch.setenv("FLEETWATCH_PUBLIC_URL", "https://fleet.example.com")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["customers", "signin-link", "cust-a"])
        missing = CliRunner().invoke(app, ["customers", "signin-link", "nobody"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "https://fleet.example.com/my/#signin=" in result.output
    assert missing.exit_code == 1
    token = LINK.search(result.output)[1]
    row = conn.execute("SELECT channel_id, requested_by FROM signin_links").fetchone()
    assert row == (None, "operator")
    assert api.post("/api/v1/signin/redeem", json={"token": token}).json()["customer_id"] == (
        "cust-a"
    )
