"""Where alerts may go: the schemes each kind of channel takes, the arguments a customer's
URL may carry, and the addresses a send may reach (pure tables), then sends against a real
HTTP sink that a refused target never reaches.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from pydantic import ValidationError
from support import add_channel, count, make_device, make_overdue

from alerts.outbound import (
    FILE_ARGS,
    KINDS,
    SCHEMES,
    TEMPLATE_IDS,
    ChannelRefused,
    address_refusal,
    check_addresses,
    check_rules,
    guarded,
    schemes_for,
)
from alerts.ratelimit import next_test_message_at
from alerts.render import Message
from alerts.send import AppriseSender
from core.settings import Settings

NOW = datetime.now(UTC).replace(microsecond=0)
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)

# (kind, URL, the rule that refuses it; None: allowed)
RULES = [
    ("email", "mailto://user:pw@example.com?to=ann@example.com", None),
    ("email", "mailtos://user:pw@gmail.com", None),
    ("email", "sendgrid://apikey:noreply@example.com/ann@example.com", None),
    ("email", "json://hooks.example.com/x", "scheme"),
    ("sms", "twilio://ACsid:token@15551234567/15557654321", None),
    ("sms", "sns://AKIA/secret/us-east-1/15551234567", None),
    ("sms", "mailto://user:pw@example.com", "scheme"),
    ("push", "ntfy://my-topic", None),
    ("push", "gotifys://gotify.example.com/token", None),
    ("push", "pover://user@token", None),
    ("push", "tgram://123:abc/456", None),
    ("push", "json://hooks.example.com/x", "scheme"),
    ("webhook", "json://hooks.example.com/x", None),
    ("webhook", "forms://hooks.example.com/x", None),
    ("webhook", "xml://hooks.example.com/x", None),
    ("webhook", "slack://T1/B2/C3", None),
    # Apprise plugins that talk to our own infrastructure, or to no one outside.
    ("webhook", "mqtt://127.0.0.1/fleet/dev-1/cmd", "scheme"),
    ("webhook", "syslog://", "scheme"),
    ("webhook", "nosuch://x/y", "scheme"),
    ("webhook", "JSON://hooks.example.com/x", None),
    # Headers, another method, redirects, local files: never from a customer.
    ("webhook", "json://hooks.example.com/x?+X-Injected=yes", "headers"),
    ("webhook", "json://hooks.example.com/x?%2BX-Injected=yes", "headers"),
    ("webhook", "json://hooks.example.com/x?method=GET", "arguments"),
    ("webhook", "json://hooks.example.com/x?a=1;METHOD=GET", "arguments"),
    ("webhook", "json://hooks.example.com/x?redirect=yes", "arguments"),
    ("push", "tgram://123:abc/456?template=file:///etc/passwd", "arguments"),
    ("email", "mailto://u:p@example.com?pgppub=/etc/passwd", "arguments"),
    ("push", "ntfy://topic?attach=file:///etc/shadow", "arguments"),
    ("webhook", "json://hooks.example.com/x?-q=1&:field=2", None),
    # Staff channels (admin-made): chat and on-call tools too, and headers for their auth.
    ("staff", "mmost://mm.example.com/token", None),
    ("staff", "pagerduty://key@apikey", None),
    ("staff", "json://hooks.example.com/x?+Authorization=Bearer%20x", None),
    ("staff", "mqtt://127.0.0.1/fleet/x", "scheme"),
    ("email", "sendgrid://key:a@example.com/b@example.com?template=d-12", None),  # an id
    ("staff", "json://hooks.example.com/x?template=/etc/passwd", "arguments"),
]


@pytest.mark.parametrize(("kind", "url", "rule"), RULES)
def test_each_kind_takes_only_its_schemes_and_safe_arguments(kind, url, rule):
    if rule is None:
        check_rules(url, kind)
        return
    with pytest.raises(ChannelRefused) as refused:
        check_rules(url, kind)
    assert refused.value.rule == rule
    assert refused.value.reason  # says why, in words a customer can act on


def test_every_scheme_taken_is_a_plugin_apprise_has():
    from apprise.manager_plugins import NotificationManager

    plugins = NotificationManager()
    assert [s for s in SCHEMES if s not in plugins] == []
    for kind in KINDS:
        assert schemes_for(kind), kind


# String arguments of the plugins taken whose names speak of files and that were read and
# found harmless: a URL's path, a name for an attachment.
HARMLESS_FILE_WORDS = {"path", "fullpath", "workflow_path", "filename", "attach-as"}


def test_no_plugin_taken_has_a_file_argument_the_rules_let_through():
    """An Apprise upgrade that gives a plugin here an argument naming a local file fails
    this test until the argument is refused (FILE_ARGS) or found harmless (above)."""
    from apprise.manager_plugins import NotificationManager

    plugins = NotificationManager()
    unreviewed = set()
    for scheme in SCHEMES:
        files = FILE_ARGS - {"template"} if scheme in TEMPLATE_IDS else FILE_ARGS
        for name, spec in getattr(plugins[scheme], "template_args", {}).items():
            words = str(spec.get("name", "")).lower()
            if spec.get("type") != "string" or name in files | HARMLESS_FILE_WORDS:
                continue
            if any(w in words for w in ("path", "file", "attach")):
                unreviewed.add((scheme, name, words))
    assert unreviewed == set()
    assert "path" in str(plugins["tgram"].template_args["template"]["name"]).lower()
    assert "path" not in str(plugins["sendgrid"].template_args["template"]["name"]).lower()


def test_more_than_one_url_in_a_channel_is_refused():
    with pytest.raises(ChannelRefused) as refused:
        check_rules("json://hooks.example.com/x mqtt://127.0.0.1/fleet/x", "webhook")
    assert refused.value.rule == "url"


# (address, allowed networks, what refuses it; None: public, allowed)
ADDRESSES = [
    ("93.184.216.34", (), None),
    ("2606:2800:220:1:248:1893:25c8:1946", (), None),
    ("127.0.0.1", (), "loopback"),
    ("127.8.9.10", (), "loopback"),
    ("10.1.2.3", (), "private"),
    ("172.16.0.1", (), "private"),
    ("192.168.1.1", (), "private"),
    ("100.100.100.200", (), "private"),  # shared address space; Alibaba's metadata service
    ("169.254.169.254", (), "link-local"),  # the cloud metadata service
    ("0.0.0.0", (), "unspecified"),  # noqa: S104
    ("224.0.0.1", (), "multicast"),
    ("240.0.0.1", (), "reserved"),
    ("255.255.255.255", (), "reserved"),
    ("192.0.2.10", (), "private"),  # documentation range: not on the internet
    ("::1", (), "loopback"),
    ("::", (), "unspecified"),
    ("fe80::1", (), "link-local"),
    ("fc00::1", (), "private"),
    ("fd00:ec2::254", (), "private"),  # AWS's metadata service over IPv6
    ("ff02::1", (), "multicast"),
    ("::ffff:127.0.0.1", (), "loopback"),  # IPv4-mapped
    ("::ffff:169.254.169.254", (), "link-local"),
    ("64:ff9b::a9fe:a9fe", (), "link-local"),  # NAT64 of 169.254.169.254
    ("2002:7f00:1::1", (), "loopback"),  # 6to4 of 127.0.0.1
    ("127.0.0.1", LOOPBACK, None),
    ("::ffff:127.0.0.1", LOOPBACK, None),
    ("10.1.2.3", LOOPBACK, "private"),
    ("10.1.2.3", (ipaddress.ip_network("10.1.2.0/24"),), None),
]


@pytest.mark.parametrize(("address", "allowed", "refused"), ADDRESSES)
def test_only_public_addresses_unless_the_operator_allows_a_network(address, allowed, refused):
    assert address_refusal(address, allowed) == refused


def resolver(table: dict[str, list[str]]):
    return lambda host, port: table.get(host, [])


@pytest.mark.parametrize(
    ("url", "addresses", "refused"),
    [
        ("json://hooks.example.com/x", ["93.184.216.34"], False),
        ("json://hooks.example.com/x", ["93.184.216.34", "10.0.0.7"], True),  # any one
        ("json://hooks.example.com/x", ["127.0.0.1"], True),
        ("json://hooks.example.com/x", [], True),  # does not resolve: said the same way
        ("json://169.254.169.254/latest/meta-data", None, True),
        ("json://[::1]:8080/x", None, True),
        ("json://0x7f000001/x", None, True),  # 127.0.0.1, written another way
        ("json://2130706433/x", None, True),
        ("gotify://10.0.0.5/token", None, True),
        ("ntfy://192.168.1.20/topic", None, True),
        ("ntfy://my-topic", None, False),  # ntfy.sh: no host of the customer's
        ("mailto://u:p@example.com?smtp=10.0.0.1", None, True),  # the SMTP server counts
        ("mailto://u:p@gmail.com", None, False),
        ("pover://user@token", None, False),  # a token where the host would be
    ],
)
def test_saved_urls_are_checked_where_they_will_connect(url, addresses, refused):
    table = {"hooks.example.com": addresses or [], "gmail.com": ["142.250.1.1"]}
    table["smtp.gmail.com"] = ["142.250.1.2"]

    def resolve(host, port):
        if host in table:
            return table[host]
        return [i[4][0] for i in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]

    if not refused:
        check_addresses(url, allowed=(), resolve=resolve)
        return
    with pytest.raises(ChannelRefused) as caught:
        check_addresses(url, allowed=(), resolve=resolve)
    assert caught.value.rule == "address"
    assert "public address" in caught.value.reason
    assert "10.0.0.7" not in caught.value.reason  # what a name resolves to is not told


def test_allowed_networks_setting_is_checked_and_empty_by_default():
    assert Settings().alerts_allowed_networks == ""
    assert Settings().allowed_networks() == ()
    assert Settings(alerts_allowed_networks="127.0.0.0/8, ::1/128").allowed_networks() == (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )
    with pytest.raises(ValidationError, match="alerts_allowed_networks"):
        Settings(alerts_allowed_networks="127.0.0.0/8, not-a-network")


@pytest.mark.parametrize(
    ("sent_minutes_ago", "per_hour", "wait_minutes"),
    [
        ([], 3, None),
        ([1, 2], 3, None),
        ([1, 2, 3], 3, 57),  # the oldest of the last three frees its slot at 60
        ([1, 2, 59], 3, 1),
        ([1, 2, 61], 3, None),  # older than the hour: does not count
        ([5], 0, 60),  # none allowed: never, in practice
    ],
)
def test_test_messages_per_hour(sent_minutes_ago, per_hour, wait_minutes):
    sent = [NOW - timedelta(minutes=m) for m in sent_minutes_ago]
    at = next_test_message_at(sent, per_hour, NOW)
    assert at == (None if wait_minutes is None else NOW + timedelta(minutes=wait_minutes))


# -- sends against a real HTTP sink --------------------------------------------------------


def test_a_send_to_a_refused_address_reaches_nothing_and_says_why(http_sink):
    result = AppriseSender().send(http_sink.url("refused"), Message("t", "b"))
    assert not result.ok and result.permanent
    assert "refused" in result.error and "loopback" in result.error
    # A later marker, sent where the operator allows loopback, arrives alone.
    marker = AppriseSender(allowed_networks=LOOPBACK).send(
        http_sink.url("marker"), Message("t", "b")
    )
    assert marker.ok
    assert list(http_sink.by_path()) == ["/marker"]


def test_a_name_that_now_resolves_to_loopback_is_refused_at_send(http_sink):
    # Saved when the name pointed somewhere public; "localhost" is 127.0.0.1 today.
    url = f"json://localhost:{http_sink.port}/rebound"
    check_addresses(url, allowed=(), resolve=resolver({"localhost": ["93.184.216.34"]}))
    result = AppriseSender().send(url, Message("t", "b"))
    assert not result.ok and result.permanent and "localhost" in result.error
    assert (
        AppriseSender(allowed_networks=LOOPBACK).send(http_sink.url("marker"), Message("t", "b")).ok
    )
    assert list(http_sink.by_path()) == ["/marker"]


class _Recorder(ThreadingHTTPServer):
    daemon_threads = True


def _serve(host: str, handler: type[BaseHTTPRequestHandler]) -> _Recorder:
    server = _Recorder((host, 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_a_redirect_to_an_address_outside_the_allowed_ones_is_not_followed():
    """An allowed endpoint answers 307 to a refused one (as a hostile public webhook could
    answer with the metadata service): the refused one hears nothing."""
    seen: list[str] = []

    class Inner(BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(f"GET {self.path}")
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_POST = do_GET

        def log_message(self, *args):
            pass

    inner = _serve("127.0.0.2", Inner)

    class Redirecting(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            seen.append(f"POST {self.path}")
            if self.path == "/marker":
                self.send_response(200)
            else:
                self.send_response(307)
                self.send_header("Location", f"http://127.0.0.2:{inner.server_port}/latest")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    outer = _serve("127.0.0.1", Redirecting)
    try:
        only_outer = (ipaddress.ip_network("127.0.0.1/32"),)
        sender = AppriseSender(allowed_networks=only_outer)
        result = sender.send(f"json://127.0.0.1:{outer.server_port}/hook", Message("t", "b"))
        assert not result.ok
        # The marker: a post the outer server answers itself, after the redirect.
        assert sender.send(f"json://127.0.0.1:{outer.server_port}/marker", Message("t", "b")).ok
        assert seen == ["POST /hook", "POST /marker"]
    finally:
        outer.shutdown()
        inner.shutdown()


def test_dispatcher_records_a_refused_target_as_a_permanent_failure(
    conn, tick, make_dispatcher, http_sink
):
    for who in ("ann", "bob"):
        make_device(conn, f"dev-{who}", customer_id=who, name=f"{who}'s thing")
    add_channel(conn, "ann", http_sink.url("ann"), kind="webhook")
    make_overdue(conn, ["dev-ann"], NOW)
    tick(NOW)
    # The production default: no network allowed beyond the public ones.
    assert make_dispatcher(alerts_allowed_networks="").run_once(NOW) == 1
    status, error = conn.execute("SELECT status, last_error FROM notifications").fetchone()
    assert status == "failed" and "refused" in error and "loopback" in error
    detail = conn.execute(
        "SELECT detail FROM incident_events WHERE kind = 'notification_failed'"
    ).fetchone()[0]
    assert "loopback" in detail["error"]
    # Bob's channel, later, where loopback is allowed: his message arrives, Ann's never did.
    add_channel(conn, "bob", http_sink.url("bob"), kind="webhook")
    make_overdue(conn, ["dev-bob"], NOW)
    tick(NOW)
    assert make_dispatcher().run_once(NOW) == 1
    assert list(http_sink.by_path()) == ["/bob"]


def test_dispatcher_refuses_a_stored_url_its_kind_does_not_allow(
    conn, tick, make_dispatcher, http_sink
):
    """A channel stored before these rules (or by hand): checked again at every send."""
    for who in ("ann", "bob"):
        make_device(conn, f"dev-{who}", customer_id=who)
    add_channel(conn, "ann", http_sink.url("ann") + "?+X-Injected=yes", kind="webhook")
    make_overdue(conn, ["dev-ann"], NOW)
    tick(NOW)
    assert make_dispatcher().run_once(NOW) == 1
    error = conn.execute("SELECT last_error FROM notifications WHERE status = 'failed'")
    assert "header" in error.fetchone()[0]
    add_channel(conn, "bob", http_sink.url("bob"), kind="webhook")
    make_overdue(conn, ["dev-bob"], NOW)
    tick(NOW)
    assert make_dispatcher().run_once(NOW) == 1
    assert list(http_sink.by_path()) == ["/bob"]
    assert count(conn, "SELECT count(*) FROM delivery_attempts WHERE permanent") == 1


def test_guard_notes_refusals_only_in_its_own_block():
    with guarded(()) as refusals, pytest.raises(OSError, match="refused"):
        socket.getaddrinfo("127.0.0.1", 80, type=socket.SOCK_STREAM)
    assert refusals and "loopback" in str(refusals[0])
    # Outside a send, this process resolves as ever (the database, the broker).
    assert socket.getaddrinfo("127.0.0.1", 80, type=socket.SOCK_STREAM)
