"""Message links: one per customer message (one per digest), kept as hashes, expiring."""

from __future__ import annotations

from datetime import timedelta

import pytest
from portal_support import NOW, later, token_of
from support import add_channel, count, make_device, make_overdue

from portal.links import Subject, find_link, link_valid, merge_subjects, token_hash


@pytest.mark.parametrize(
    ("now", "valid"),
    [
        (NOW, True),
        (NOW + timedelta(days=30) - timedelta(microseconds=1), True),
        (NOW + timedelta(days=30), False),
        (NOW + timedelta(days=31), False),
    ],
)
def test_a_link_works_until_it_expires(now, valid):
    assert link_valid(NOW + timedelta(days=30), now) is valid


def test_a_digest_names_each_device_once_with_its_latest_incident():
    rows = [("a", 1, None), ("b", None, 7), ("a", 2, None)]
    assert merge_subjects(rows) == (Subject("a", 2, None), Subject("b", None, 7))


def test_each_customer_message_carries_its_own_link_kept_as_a_hash(conn, home):
    token = home["token"]
    rows = conn.execute(
        "SELECT token_hash, customer_id, created_at, expires_at, message_id FROM message_links"
    ).fetchall()
    assert len(rows) == 1
    digest, customer, created, expires, message_id = rows[0]
    assert (bytes(digest), customer) == (token_hash(token), "ann")
    assert (created, expires) == (NOW, NOW + timedelta(days=30))  # FLEETWATCH_PORTAL_LINK_DAYS
    # The link names the message it went out in, and that message's notification.
    sent = conn.execute(
        "SELECT notification_id FROM delivery_attempts WHERE message_id = %s", (message_id,)
    ).fetchall()
    subjects = conn.execute(
        "SELECT notification_id, device_id, incident_id FROM message_link_subjects"
    ).fetchall()
    assert subjects == [(sent[0][0], "thermo-1", home["incident"])]
    url = home["dispatcher"].claimed[0].items[0].context["link"]
    assert url == f"http://127.0.0.1:8080/my/#link={token}"  # FLEETWATCH_PUBLIC_URL


def test_staff_messages_carry_no_link(conn, http_sink, tick, dispatcher, make_alerts):
    make_device(conn, "panel-1", model_id="alarm-panel-v3", customer_id="bob")
    add_channel(conn, "bob", http_sink.url("bob"))
    conn.execute("INSERT INTO staff_channels (apprise_url) VALUES (%s)", (http_sink.url("s"),))
    make_overdue(conn, ["panel-1"], NOW)
    tick(NOW)
    assert make_alerts().review(later(minutes=15)).escalated == 1  # to staff
    d = dispatcher()
    assert d.run_once(later(minutes=15)) == 2
    by_kind = {m.channel_key[0]: m.items[0].context for m in d.claimed}
    assert "link" in by_kind["c"] and "link" not in by_kind["s"]
    assert count(conn, "SELECT count(*) FROM message_links") == 1


def test_a_digest_gets_one_link_covering_each_of_its_devices(conn, http_sink, tick, dispatcher):
    for device, name in (("thermo-1", "Kitchen"), ("thermo-2", "Hall")):
        make_device(conn, device, name=name, customer_id="ann")
    add_channel(conn, "ann", http_sink.url("ann"))
    make_overdue(conn, ["thermo-1", "thermo-2"], NOW)
    tick(NOW)
    d = dispatcher()
    assert d.run_once(NOW) == 2
    assert len(d.claimed) == 1 and len(d.claimed[0].items) == 2  # one message: a digest
    link = find_link(conn, token_of(d.claimed[0]), later(minutes=1))
    assert [s.device_id for s in link.subjects] == ["thermo-1", "thermo-2"]
    assert all(s.incident_id is not None for s in link.subjects)
    assert count(conn, "SELECT count(*) FROM message_links") == 1


def test_a_retry_is_a_new_message_with_a_new_link(conn, tick, dispatcher):
    make_device(conn, "thermo-1", customer_id="ann")
    add_channel(conn, "ann", "json://127.0.0.1:9/closed")  # nothing listens: it fails
    make_overdue(conn, ["thermo-1"], NOW)
    tick(NOW)
    d = dispatcher(alerts_backoff_s=1)
    d.run_once(NOW)
    d.run_once(later(seconds=5))
    tokens = [token_of(m) for m in d.claimed]
    assert len(tokens) == 2 and tokens[0] != tokens[1]
    # Both open the page until they expire; the first is not withdrawn.
    assert all(find_link(conn, t, later(days=1)) is not None for t in tokens)
    assert all(find_link(conn, t, later(days=30, seconds=6)) is None for t in tokens)


@pytest.mark.parametrize("token", ["", "short", "x" * 43 + "!", "A" * 43, "é" * 43, "A" * 44])
def test_malformed_or_unknown_tokens_open_nothing(conn, home, token):
    assert find_link(conn, token, later(minutes=1)) is None


def test_an_expired_link_opens_nothing(conn, home):
    assert find_link(conn, home["token"], later(days=29)) is not None
    assert find_link(conn, home["token"], later(days=30)) is None
