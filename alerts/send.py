"""Sending one message through Apprise, turning its True/False into an error we can keep.

Every send is `guarded` (alerts/outbound.py): it reaches public addresses only, and the
networks the operator allows; a refused address is a permanent failure that says why,
and nothing is sent.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import apprise

from alerts.outbound import IPNetwork, guarded, instantiate, schemes_for
from alerts.redact import hiding_secrets_of, scrub
from alerts.render import Message
from alerts.tls_contexts import reuse_in_apprise_smtp

# Longest error text kept (notifications.last_error, delivery_attempts.error).
ERROR_LIMIT = 500


@dataclass(frozen=True, slots=True)
class SendResult:
    ok: bool
    duration_ms: int
    error: str | None = None
    # Retrying cannot help: the URL is invalid, names a service Apprise does not know, or
    # leads somewhere alerts may not go.
    permanent: bool = False


reuse_in_apprise_smtp()

# No redirects: a webhook's answer must not send our request elsewhere (a redirect to a
# refused address would be refused anyway, by the guard).
_ASSET = apprise.AppriseAsset(service_timeout=0, http_redirects=False)

# Where a service has a field of its own for a message's urgency or link, they go there too,
# set on Apprise's plugin as the URL's own arguments would set them (ntfy's `priority` and
# `click`, Gotify's `priority`, a JSON post's extra `link` key). A push service with no click
# field gets the link after its line.
URGENT_FIELDS: dict[str, tuple[str, object]] = {
    "ntfy": ("priority", "max"),
    "ntfys": ("priority", "max"),
    "gotify": ("priority", 10),
    "gotifys": ("priority", 10),
}
CLICK_FIELDS = {"ntfy": "click", "ntfys": "click"}
# Email: the headers mail programs read as "high priority".
URGENT_EMAIL_HEADERS = {"X-Priority": "1 (Highest)", "Importance": "high", "Priority": "urgent"}
EMAIL_SCHEMES = frozenset({"mailto", "mailtos"})
JSON_SCHEMES = frozenset({"json", "jsons"})
PUSH_SCHEMES = frozenset(schemes_for("push"))


def fit_to_service(server, scheme: str, message: Message) -> str:
    """Set the service's own fields for `message` on Apprise's plugin `server`; return the
    body to send."""
    body = message.body
    if message.urgent and scheme in URGENT_FIELDS:
        name, value = URGENT_FIELDS[scheme]
        setattr(server, name, value)
    if message.urgent and scheme in EMAIL_SCHEMES:
        server.headers = {**server.headers, **URGENT_EMAIL_HEADERS}
    if message.link and scheme in CLICK_FIELDS:
        setattr(server, CLICK_FIELDS[scheme], message.link)
    elif message.link and scheme in PUSH_SCHEMES and message.link not in body:
        body = f"{body} {message.link}"
    if message.link and scheme in JSON_SCHEMES:
        server.payload_extras = {**server.payload_extras, "link": message.link}
    return body


def error_text(lines: list[str], url: str) -> str:
    """Apprise's warnings and errors (all its lines if none), scrubbed of the URL's secrets,
    then cut to ERROR_LIMIT from the end: scrubbed first, so no piece of a secret survives
    the cut."""
    problems = [line for line in lines if not line.startswith(("DEBUG", "INFO"))] or lines
    return scrub("; ".join(problems) or "Apprise reported failure", url)[-ERROR_LIMIT:]


_FORMATS = {"text": apprise.NotifyFormat.TEXT, "html": apprise.NotifyFormat.HTML}


class AppriseSender:
    """Sends through Apprise to public addresses and `allowed_networks`; secrets of the URL
    never reach the returned error text or the log."""

    def __init__(
        self, timeout_s: float = 15.0, *, allowed_networks: Sequence[IPNetwork] = ()
    ) -> None:
        self.timeout_s = timeout_s
        self.allowed_networks = tuple(allowed_networks)

    def send(self, url: str, message: Message) -> SendResult:
        started = time.perf_counter()
        # One URL, one service: Apprise would read several from one string.
        server = instantiate(url, asset=_ASSET)
        if server is None:
            return SendResult(False, 0, "invalid or unsupported Apprise URL", permanent=True)
        # No Apprise deadline: with one (its default service_timeout of 60 s, or
        # notify(timeout=...)) Apprise hands every send to its process-wide pool of
        # min(32, cpu_count + 4) threads, whatever alerts_workers says. Without one it sends
        # in this thread; the socket timeouts (capped at timeout_s) bound a hung endpoint.
        server.socket_connect_timeout = min(server.socket_connect_timeout, self.timeout_s)
        server.socket_read_timeout = min(server.socket_read_timeout, self.timeout_s)
        server.redirects = False  # whatever the URL says
        body = fit_to_service(server, url.split("://", 1)[0].lower(), message)
        sender = apprise.Apprise(asset=_ASSET)
        sender.add(server)
        logs: list[str] = []
        with guarded(self.allowed_networks) as refusals, hiding_secrets_of(url):
            result = sender.notify(
                body=body,
                title=message.title,
                # Plain text keeps our paragraphs (Apprise would otherwise fold them into
                # HTML); an email's HTML goes as multipart/alternative, with a text part
                # Apprise makes from it (alerts/render.py).
                body_format=_FORMATS[message.body_format],
                log_callback=lambda entry, plugin: logs.append(f"{entry.level}: {entry.message}"),
            )
        elapsed = int((time.perf_counter() - started) * 1000)
        if result:
            return SendResult(True, elapsed)
        if refusals:
            # Only the host can hold a secret (an ntfy topic is no host): the rest is ours.
            said = dict.fromkeys(f"{scrub(r.host, url)} {r.why}" for r in refusals)
            reason = "refused: " + "; ".join(said)
            reason += " (alerts go to public addresses, and FLEETWATCH_ALERTS_ALLOWED_NETWORKS)"
            return SendResult(False, elapsed, reason[-ERROR_LIMIT:], permanent=True)
        return SendResult(False, elapsed, error_text(logs, url))
