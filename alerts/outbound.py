"""Where alerts may go: the Apprise schemes each kind of channel takes, what a customer's
URL may carry, and the addresses a send may reach.

A channel's URL comes from a customer (or staff on their behalf), and the server sends to
it: without these rules it is a way into the operator's network. The same rules hold twice:

    saving a channel (API)     check_channel: the rules (check_rules), then every host the
                               URL names, resolved now (check_addresses) -> ChannelRefused,
                               a 422 naming its rule
    every send (dispatcher,    check_rules again (a channel may be older than the rules);
    test messages)             then Apprise sends under `guarded`: each address any of the
                               send's connections resolves to is checked as it is resolved,
                               so a name that now points elsewhere, an SMTP server or a
                               redirect meets the same rule, and a refused address is never
                               connected to

Why at resolution: Apprise makes its own `requests` and `smtplib` calls and takes no
resolver, and every one of them asks `socket.getaddrinfo`, once per connection (Healthchecks
refuses private addresses the same way, in pycurl's open-socket callback). The wrapper
installed here refuses only inside `guarded`, in that send's context; everywhere else (the
database, the broker) it is the system's own.

Behind an egress proxy (HTTPS_PROXY), the proxy resolves the names and the guard sees only
its address: the proxy must hold the same rule.

Public addresses only, unless the operator names a network in
FLEETWATCH_ALERTS_ALLOWED_NETWORKS (an SMTP relay of their own; the demo's and the tests'
sinks on 127.0.0.1).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import apprise
from apprise.utils.parse import parse_url, parse_urls

from alerts.redact import hiding_secrets_of, scrub

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

STAFF = "staff"  # staff channels: admin-made, for fleet incidents and escalations


@dataclass(frozen=True, slots=True)
class Scheme:
    """An Apprise scheme a channel may use, and the plugin attributes holding a host the
    URL's author chose (checked when saved; a service's own fixed host is checked at send,
    like every address)."""

    kinds: frozenset[str]
    hosts: tuple[str, ...] = ()


def _schemes(kinds: set[str], names: str, hosts: tuple[str, ...] = ()) -> dict[str, Scheme]:
    return {name: Scheme(frozenset(kinds | {STAFF}), hosts) for name in names.split()}


# Each kind takes the services of that kind, over HTTP(S) or SMTP only (the connections
# `guarded` sees): no MQTT (our own broker), syslog, desktop or other local plugins.
SCHEMES: dict[str, Scheme] = {
    # Email: SMTP to a server of the URL's choosing, or the mail APIs at their own hosts.
    **_schemes({"email"}, "mailto mailtos", hosts=("smtp_host",)),
    **_schemes({"email"}, "sendgrid mailgun ses postmark sparkpost resend smtp2go brevo"),
    # SMS: gateways at their own hosts only (no self-hosted SMS gateways or Signal servers).
    **_schemes(
        {"sms"},
        "twilio sns vonage nexmo sinch plivo clicksend msg91 d7sms bulksms bulkvs kavenegar "
        "httpsms seven msgbird clickatell 46elks elks",
    ),
    # Push: phone notification services; ntfy and Gotify may be self-hosted.
    **_schemes({"push"}, "ntfy ntfys gotify gotifys", hosts=("host",)),
    **_schemes(
        {"push"}, "pover pbul prowl join pushed psafer psafers spush simplepush tgram ifttt"
    ),
    # Webhooks: a JSON, form or XML post to a host of the URL's choosing, or a chat hook.
    **_schemes({"webhook"}, "json jsons form forms xml xmls", hosts=("host",)),
    **_schemes({"webhook"}, "slack discord"),
    # Staff only: team chat and on-call tools.
    **_schemes(
        set(),
        "mmost mmosts rocket rockets matrix matrixs workflow workflows apprise apprises",
        hosts=("host",),
    ),
    **_schemes(
        set(),
        "gchat zulip pagerduty opsgenie splunk victorops signl4 ilert pagertree squadcast",
    ),
}
KINDS = ("email", "sms", "push", "webhook", STAFF)

# URL arguments that make Apprise read a local file (a message template, PGP keys, an
# attachment): never, from anyone, since the file would go out in the message. An Apprise
# upgrade that gives a plugin here another is caught by tests/alerts/test_outbound.py.
FILE_ARGS = frozenset({"template", "pgppub", "pgpprv", "attach"})
# ... except where `template` is the id of a template the service keeps, not a file.
TEMPLATE_IDS = frozenset({"sendgrid"})
# What a customer's URL may not choose either: another HTTP method, following redirects.
CUSTOMER_ARGS = frozenset({"method", "redirect"})


class ChannelRefused(ValueError):
    """A channel URL these rules refuse: `rule` names the rule, `reason` says why (never a
    secret of the URL: fit for an answer or a log)."""

    def __init__(self, rule: str, reason: str) -> None:
        super().__init__(f"url refused ({rule}): {reason}")
        self.rule = rule
        self.reason = reason


def schemes_for(kind: str) -> list[str]:
    return sorted(name for name, scheme in SCHEMES.items() if kind in scheme.kinds)


def check_rules(url: str, kind: str) -> None:
    """Refuse a URL its channel's kind does not take, or that carries what a customer may
    not choose (headers, method, redirects) or that reads local files. No network."""
    scheme = url.split("://", 1)[0].lower()
    if kind not in SCHEMES.get(scheme, Scheme(frozenset())).kinds:
        raise ChannelRefused(
            "scheme",
            f"{scheme}:// is not taken for {kind} channels; these are: "
            + ", ".join(f"{s}://" for s in schemes_for(kind)),
        )
    if len(parse_urls(url)) != 1:
        raise ChannelRefused("url", "one Apprise URL per channel")
    parsed = parse_url(url, verify_host=False)
    if not parsed:
        raise ChannelRefused("url", "not an Apprise URL")
    if kind != STAFF and parsed["qsd+"]:
        raise ChannelRefused("headers", "custom headers (+Name=value) are not taken")
    files = FILE_ARGS - {"template"} if scheme in TEMPLATE_IDS else FILE_ARGS
    refused = set(parsed["qsd"]) & (files if kind == STAFF else files | CUSTOMER_ARGS)
    if refused:
        raise ChannelRefused(
            "arguments", ", ".join(f"{a}=" for a in sorted(refused)) + " is not taken"
        )


Resolver = Callable[[str, int], list[str]]


def system_resolve(host: str, port: int) -> list[str]:
    """The addresses the system resolver gives `host` (none if it does not resolve)."""
    try:
        found = _system_getaddrinfo(host, port or None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return []
    return [info[4][0] for info in found if info[0] in (socket.AF_INET, socket.AF_INET6)]


def check_addresses(
    url: str, *, allowed: Sequence[IPNetwork], resolve: Resolver = system_resolve
) -> None:
    """Refuse a URL whose hosts resolve to anything but public addresses (or `allowed`).

    A name refused says only that: whether it does not resolve or resolves inside is not
    told, so the check cannot map the operator's internal names.
    """
    plugin = instantiate(url)
    if plugin is None:
        raise ChannelRefused("url", "Apprise cannot use this URL")
    scheme = SCHEMES.get(url.split("://", 1)[0].lower(), Scheme(frozenset(), ("host",)))
    for attribute in scheme.hosts:
        host = str(getattr(plugin, attribute, "") or "").strip("[]")
        if not host:
            continue  # a cloud service's own host: ntfy.sh for an ntfy topic, say
        shown = scrub(host, url)
        literal = _literal(host)
        if literal is not None:
            refusal = address_refusal(str(literal), allowed)
            if refusal:
                raise ChannelRefused(
                    "address", f"{shown} is a {refusal} address; alerts go to public addresses"
                )
            continue
        addresses = resolve(host, plugin.port or 0)
        if not addresses or any(address_refusal(a, allowed) for a in addresses):
            raise ChannelRefused(
                "address", f"{shown} does not resolve to public addresses only, as alerts need"
            )


def check_channel(
    url: str, kind: str, *, allowed: Sequence[IPNetwork], resolve: Resolver = system_resolve
) -> None:
    """Everything a channel's URL must pass to be saved."""
    check_rules(url, kind)
    check_addresses(url, allowed=allowed, resolve=resolve)


def instantiate(url: str, asset: apprise.AppriseAsset | None = None):
    """Apprise's plugin for `url`, or None; Apprise's log lines about it keep no secret."""
    with hiding_secrets_of(url):
        return apprise.Apprise.instantiate(url, asset=asset)


# -- addresses ----------------------------------------------------------------------------

_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, NAT64): where it really goes."""
    if ip.version == 4:
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_refusal(address: str, allowed: Sequence[IPNetwork]) -> str | None:
    """Why alerts may not go to `address` ("loopback", "private", ...), or None: a public
    address, or one inside a network the operator allows."""
    ip = _literal(address)
    if ip is None:
        return "unknown"
    embedded = _embedded_ipv4(ip)
    for candidate in (ip, embedded):
        if candidate is not None and any(candidate in network for network in allowed):
            return None
    if embedded is not None:
        ip = embedded
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if ip.is_reserved:
        return "reserved"
    if ip.is_private or not ip.is_global:
        return "private"
    return None


# -- the guard: every address a send resolves to ------------------------------------------

# The system's own, even if this module is imported again.
_system_getaddrinfo = getattr(socket.getaddrinfo, "system", socket.getaddrinfo)
_ALLOWED: ContextVar[tuple[IPNetwork, ...] | None] = ContextVar("alerts_allowed", default=None)
_REFUSALS: ContextVar[list[Refusal] | None] = ContextVar("alerts_refusals", default=None)


@dataclass(frozen=True, slots=True)
class Refusal:
    """One address a send was refused: the host asked for, and why ("is a loopback
    address", "resolves to a private address")."""

    host: str
    why: str

    def __str__(self) -> str:
        return f"{self.host} {self.why}"


class AddressRefused(socket.gaierror):
    """A send tried to reach an address the rules refuse: as if the name did not resolve, so
    every client library gives up on it without connecting."""


def _guarded_getaddrinfo(host, port, *args, **kwargs):
    found = _system_getaddrinfo(host, port, *args, **kwargs)
    allowed = _ALLOWED.get()
    if allowed is None:
        return found
    name = host.decode() if isinstance(host, bytes) else str(host)
    for family, _, _, _, sockaddr in found:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        refusal = address_refusal(sockaddr[0], allowed)
        if refusal:
            verb = "is" if _literal(name) is not None else "resolves to"
            reason = Refusal(name, f"{verb} a {refusal} address")
            refusals = _REFUSALS.get()
            if refusals is not None:
                refusals.append(reason)
            raise AddressRefused(socket.EAI_FAIL, f"refused: {reason}")
    return found


_guarded_getaddrinfo.system = _system_getaddrinfo
socket.getaddrinfo = _guarded_getaddrinfo


@contextmanager
def guarded(allowed: Sequence[IPNetwork]) -> Iterator[list[Refusal]]:
    """Within the block, in this context only, a connection may reach public addresses and
    `allowed` networks; yields the list of the refusals made."""
    refusals: list[Refusal] = []
    allowed_token = _ALLOWED.set(tuple(allowed))
    refusals_token = _REFUSALS.set(refusals)
    try:
        yield refusals
    finally:
        _ALLOWED.reset(allowed_token)
        _REFUSALS.reset(refusals_token)
