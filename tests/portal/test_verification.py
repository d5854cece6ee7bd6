"""Verifying the channels customers add: a code goes to that channel only; the channel counts
(alerts, sign-in links) once the code comes back; wrong codes, expiry and new codes; and
where a channel's address comes from."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from support import PAGE, add_channel, auth, count, make_device, make_overdue, waiting_code

from portal.addresses import channel_address, fill_missing_addresses, normalize_address
from portal.verification import LiveCode, code_hash, code_verdict, issue_code, verify_code

T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
CODE = re.compile(r"\b(\d{6})\b")


@pytest.fixture
def ann(conn, keys):
    make_device(conn, "dev-ann", customer_id="ann")
    return auth(keys.customer("ann"))


def live(code: str, *, tries: int = 0, expires: datetime = T0 + timedelta(minutes=15)):
    salt = b"s" * 16
    return LiveCode(1, code_hash(salt, 7, code), salt, expires, tries)


@pytest.mark.parametrize(
    ("code", "given", "tries", "now", "expected"),
    [
        ("123456", "123456", 0, T0, ("verified", 0)),
        ("123456", "123457", 0, T0, ("wrong", 4)),
        ("123456", "123457", 3, T0, ("wrong", 1)),
        ("123456", "123457", 4, T0, ("spent", 0)),  # the fifth wrong answer ends it
        ("123456", "123456", 5, T0, ("spent", 0)),  # ... and then the right one is too late
        ("123456", "123456", 0, T0 + timedelta(minutes=15), ("expired", 0)),
        ("123456", "123456", 0, T0 + timedelta(minutes=14, seconds=59), ("verified", 0)),
        (None, "123456", 0, T0, ("none", 0)),
    ],
)
def test_code_verdict(code, given, tries, now, expected):
    found = live(code, tries=tries) if code else None
    verdict = code_verdict(found, 7, given, max_tries=5, now=now)
    assert (verdict.outcome, verdict.tries_left) == expected


def test_a_channel_added_by_the_customer_counts_once_its_code_comes_back(
    api, conn, ann, smtp, make_dispatcher
):
    made = api.post(
        "/api/v1/me/channels",
        json={"kind": "email", "url": smtp.url("ann@example.com")},
        headers=ann,
    )
    assert made.status_code == 201 and made.json()["verified"] is False
    channel = made.json()["id"]
    assert make_dispatcher().run_once() == 1
    [mail] = smtp.latest(1)
    assert mail.path == "ann@example.com" and mail.title.startswith("Your Fleetwatch code: ")
    assert "within 15 minutes" in mail.message and "ignore this message" in mail.message
    code = CODE.search(mail.title)[1]
    # Once sent, the stored message no longer holds the code.
    stored = conn.execute("SELECT context FROM notifications").fetchone()[0]
    assert "code" not in stored and stored["minutes"] == 15

    wrong = "000000" if code != "000000" else "111111"
    refused = api.post(f"/api/v1/me/channels/{channel}/verify", json={"code": wrong}, headers=ann)
    assert refused.status_code == 422 and "4 tries left" in refused.json()["detail"]
    verified = api.post(f"/api/v1/me/channels/{channel}/verify", json={"code": code}, headers=ann)
    assert verified.status_code == 200 and verified.json()["verified"] is True
    assert [c["verified"] for c in api.get("/api/v1/me/channels", headers=ann).json()] == [True]
    # The channel now takes sign-in links: its address is Ann's.
    assert conn.execute("SELECT address FROM contact_channels").fetchone()[0] == "ann@example.com"


def test_five_wrong_codes_end_it_and_a_new_code_replaces_the_old(api, conn, ann, smtp):
    channel = api.post(
        "/api/v1/me/channels",
        json={"kind": "email", "url": smtp.url("ann@example.com")},
        headers=ann,
    ).json()["id"]
    first = waiting_code(conn, channel)
    wrong = "000000" if first != "000000" else "111111"
    answers = [
        api.post(f"/api/v1/me/channels/{channel}/verify", json={"code": wrong}, headers=ann)
        for _ in range(5)
    ]
    assert [a.status_code for a in answers] == [422, 422, 422, 422, 409]
    assert "too many wrong codes" in answers[-1].json()["detail"]
    late = api.post(f"/api/v1/me/channels/{channel}/verify", json={"code": first}, headers=ann)
    assert late.status_code == 409  # the right code, after the tries ran out

    resent = api.post(f"/api/v1/me/channels/{channel}/code", headers=ann)
    assert resent.status_code == 202 and resent.json()["expires_in_minutes"] == 15
    second = waiting_code(conn, channel)
    if second != first:  # one chance in a million they are equal
        old = api.post(f"/api/v1/me/channels/{channel}/verify", json={"code": first}, headers=ann)
        assert old.status_code == 422
    ok = api.post(f"/api/v1/me/channels/{channel}/verify", json={"code": second}, headers=ann)
    assert ok.status_code == 200 and ok.json()["verified"] is True
    again = api.post(f"/api/v1/me/channels/{channel}/code", headers=ann)
    assert again.status_code == 409  # verified: no more codes


def test_new_codes_are_limited_per_channel(api, conn, ann):
    channel = api.post(
        "/api/v1/me/channels",
        json={"kind": "webhook", "url": "json://93.184.216.34/hook"},
        headers=ann,
    ).json()["id"]
    # The first went with the channel; four more make the hour's five.
    statuses = [
        api.post(f"/api/v1/me/channels/{channel}/code", headers=ann).status_code for _ in range(5)
    ]
    assert statuses == [202, 202, 202, 202, 429]
    assert count(conn, "SELECT count(*) FROM notifications WHERE channel_id = %s", channel) == 5


def test_a_code_expires(conn, ann, make_settings):
    settings = make_settings()
    channel = add_channel(conn, "ann", "json://93.184.216.34/hook", kind="webhook", verified=False)
    with conn.transaction():
        issue_code(conn, channel_id=channel, customer_id="ann", settings=settings, now=T0)
    code = waiting_code(conn, channel)
    with conn.transaction():
        late = verify_code(
            conn, channel_id=channel, code=code, settings=settings, now=T0 + timedelta(minutes=15)
        )
    assert late.outcome == "expired"
    with conn.transaction():
        in_time = verify_code(
            conn, channel_id=channel, code=code, settings=settings, now=T0 + timedelta(minutes=14)
        )
    assert in_time.outcome == "verified"
    assert count(conn, "SELECT count(*) FROM contact_channels WHERE verified_at IS NULL") == 0


def test_a_new_url_is_unverified_again_and_gets_a_code(api, conn, ann):
    channel = add_channel(conn, "ann", "json://93.184.216.34/old", kind="webhook")
    renamed = api.patch(f"/api/v1/me/channels/{channel}", json={"label": "mine"}, headers=ann)
    assert renamed.json()["verified"] is True  # only a new place needs proving
    moved = api.patch(
        f"/api/v1/me/channels/{channel}", json={"url": "json://93.184.216.35/new"}, headers=ann
    )
    assert moved.status_code == 200 and moved.json()["verified"] is False
    assert waiting_code(conn, channel)
    tested = api.post(f"/api/v1/me/channels/{channel}/test", headers=ann)
    assert tested.status_code == 409


def test_channels_staff_add_are_verified(api, conn, keys, ann, smtp):
    made = api.post(
        "/api/v1/customers/ann/channels",
        json={"kind": "email", "url": smtp.url("ann@example.com")},
        headers=auth(keys.staff),
    )
    assert made.status_code == 201, made.text
    assert made.json()["verified"] is True
    assert count(conn, "SELECT count(*) FROM notifications") == 0  # no code: staff vouch


def test_the_router_sends_alerts_to_verified_channels_only(conn, tick, http_sink):
    make_device(conn, "dev-1", customer_id="cust-1")
    verified = add_channel(conn, "cust-1", http_sink.url("verified"), kind="webhook")
    add_channel(conn, "cust-1", http_sink.url("unverified"), kind="webhook", verified=False)
    now = datetime.now(UTC)
    make_overdue(conn, ["dev-1"], now)
    tick(now)
    rows = conn.execute("SELECT channel_id, template FROM notifications").fetchall()
    assert rows == [(verified, "device_offline")]


@pytest.mark.parametrize(
    ("url", "kind", "address"),
    [
        ("mailto://user:pass@example.com?to=Jane.Doe@Example.com", "email", "jane.doe@example.com"),
        ("mailtos://jane:pw@gmail.com", "email", "jane@gmail.com"),
        ("mailto://127.0.0.1:25?from=a@example.com&to=bob@example.com", "email", "bob@example.com"),
        ("sendgrid://apikey:from@example.com/To@Example.com", "email", "to@example.com"),
        (
            "twilio://AC1234567890123456789012345678901:abcdefabcdefabcdefabcdefabcdefab"
            "@15551234567/+49 151 2345678",
            "sms",
            "+491512345678",
        ),
        ("vonage://key:secret@15551234567/15557654321", "sms", "+15557654321"),
        ("ntfy://ntfy.sh/my-topic", "push", "my-topic"),
        ("pover://ukey@atoken", "push", None),  # Pushover names no person
        ("json://example.com/hook", "webhook", None),
        ("nosuch://x", "email", None),
    ],
)
def test_channel_address(url, kind, address):
    assert channel_address(url, kind) == address


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("  Jane@Example.COM ", "jane@example.com"),
        ("+49 151 234-5678", "+491512345678"),
        ("0049 (151) 2345678", "+491512345678"),
        ("my-topic", "my-topic"),
        ("   ", None),
    ],
)
def test_normalize_address(typed, stored):
    assert normalize_address(typed) == stored


def test_channels_saved_before_addresses_get_theirs(conn, api, ann):
    """The API fills in the addresses of channels saved before migration 022 when it starts
    (here: the `api` fixture's app started before this row, so it is called again)."""
    channel = add_channel(conn, "ann", "mailto://u:p@example.com?to=Ann@Example.com")
    conn.execute("UPDATE contact_channels SET address = NULL")
    assert fill_missing_addresses(conn, batch=1) == 1
    stored = conn.execute("SELECT address FROM contact_channels WHERE id = %s", (channel,))
    assert stored.fetchone()[0] == "ann@example.com"
    assert fill_missing_addresses(conn) == 0


def test_a_page_verifies_with_its_session(api, conn, ann):
    from support import sign_in

    channel = add_channel(conn, "ann", "json://93.184.216.34/x", kind="webhook", verified=False)
    with conn.transaction():
        issue_code(
            conn,
            channel_id=channel,
            customer_id="ann",
            settings=api.app.state.settings,
            now=datetime.now(UTC),
        )
    sign_in(conn, api, "ann")
    code = waiting_code(conn, channel)
    bare = api.post(f"/api/v1/me/channels/{channel}/verify", json={"code": code})
    assert bare.status_code == 403  # a change from a page needs its header
    done = api.post(f"/api/v1/me/channels/{channel}/verify", json={"code": code}, headers=PAGE)
    assert done.status_code == 200 and done.json()["verified"] is True
