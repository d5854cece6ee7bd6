"""Keeping secrets of Apprise URLs out of logs, API answers, timelines and recorded errors.

What is secret in a URL is known two ways, and both count:

- Apprise's own knowledge: its plugins mark their private fields and render the URL with
  them hidden (`url(privacy=True)`); whatever that rendering hides, compared with the plain
  one, is a secret (Pushover's tokens, Pushbullet's, Slack's, a Telegram bot's).
- the URL's shape, for what Apprise does not mark (an ntfy.sh topic, a webhook's path, a
  header's value) and for URLs Apprise cannot read: user and password, a host that is no
  host name, path segments of six characters or more, every query value.

Every secret is hidden raw, percent-decoded and percent-encoded, in any case (URL parsers
lowercase host names). Apprise's own log lines, and urllib3's, written while a URL is being
sent or read (`hiding_secrets_of`), are scrubbed of that URL's secrets before any handler
sees them.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from urllib.parse import quote, unquote, unquote_plus, urlsplit

import apprise

# Path segments this long are treated as tokens.
_TOKEN_LEN = 6
# Shorter pieces cannot be hidden without hiding ordinary words.
_MIN_SECRET_LEN = 3
_SEPARATORS = re.compile(r"[/@:?&=;]")


def redact_url(url: str) -> str:
    """`scheme://host/…` with credentials, tokens and query values replaced by `***`."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    secrets = secrets_of(url)
    lowered = {s.lower() for s in secrets}
    try:
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        # Not host:port: services like tgram:// put a token where a port would be.
        host, port = "***", ""
    if host and (host.lower() in lowered or not _is_plain_host(host)):
        host = "***"
    user = "***@" if "@" in parts.netloc else ""
    path = "/".join(
        "***" if seg and (len(seg) >= _TOKEN_LEN or seg.lower() in lowered) else seg
        for seg in parts.path.split("/")
    )
    query = "&".join(
        f"{kv.split('=', 1)[0]}=***" if "=" in kv else "***"
        for kv in re.split("[&;]", parts.query)
        if kv
    )
    shown = f"{parts.scheme}://{user}{host}{port}{path}" + (f"?{query}" if query else "")
    return _hider(url).sub("***", shown)  # what the shape missed, Apprise knew


def secrets_of(url: str) -> list[str]:
    """Every form of every secret of `url`, longest first."""
    return list(_secrets(url))


def scrub(text: str, url: str) -> str:
    """`text` with every secret of `url` replaced by `***` (scrub before cutting to length:
    a secret cut in two is no longer found)."""
    text = text.replace(url, redact_url(url))
    return _hider(url).sub("***", text)


@functools.lru_cache(maxsize=4096)
def _secrets(url: str) -> tuple[str, ...]:
    found = _marked_by_apprise(url) | _by_shape(url)
    forms = set()
    for secret in found:
        plain = unquote(secret)
        forms.update((secret, plain, unquote_plus(secret), quote(plain, safe=""), quote(plain)))
    return tuple(sorted((f for f in forms if len(f) >= _MIN_SECRET_LEN), key=len, reverse=True))


@functools.lru_cache(maxsize=4096)
def _hider(url: str) -> re.Pattern[str]:
    secrets = _secrets(url)
    if not secrets:
        return re.compile(r"(?!)")  # matches nothing
    return re.compile("|".join(re.escape(s) for s in secrets), re.IGNORECASE)


def _marked_by_apprise(url: str) -> set[str]:
    """What Apprise's rendering with privacy hides: the values its plugin marks private."""
    with _quiet():
        try:
            plugin = apprise.Apprise.instantiate(url)
            if plugin is None:
                return set()
            plain = _SEPARATORS.split(plugin.url(privacy=False))
            private = _SEPARATORS.split(plugin.url(privacy=True))
        except Exception:  # a plugin that cannot render itself: the shape still counts
            return set()
    if len(plain) != len(private):
        return set()
    given = {url.lower(), unquote(url).lower()}
    found = set()
    for value, shown in zip(plain, private, strict=True):
        if value == shown:
            continue
        for form in (value, unquote(value)):
            if form and any(form.lower() in g for g in given):
                found.add(form)
    return found


def _by_shape(url: str) -> set[str]:
    """The user, password, tokens and query values of a URL, by where they stand."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return {url}
    netloc = parts.netloc
    userinfo, _, hostport = netloc.rpartition("@")
    # The whole authority, in pieces: some services keep tokens where host and port would be.
    found = set(re.split(r"[:@]", userinfo)) if userinfo else set()
    found |= {piece for piece in hostport.split(":") if not _is_plain_host(piece)}
    found |= {seg for seg in parts.path.split("/") if len(seg) >= _TOKEN_LEN}
    found |= {kv.split("=", 1)[1] for kv in re.split("[&;]", parts.query) if "=" in kv}
    return {s for s in found if s}


def _is_plain_host(piece: str) -> bool:
    """A host name or address, or a port: safe to show."""
    return (piece.isdigit() and len(piece) <= 5) or "." in piece or piece == "localhost"


# -- Apprise's and urllib3's own log lines ------------------------------------------------

_HIDING: ContextVar[str | None] = ContextVar("redact_hiding", default=None)
_QUIET: ContextVar[bool] = ContextVar("redact_quiet", default=False)


@contextmanager
def hiding_secrets_of(url: str) -> Iterator[None]:
    """Within the block, in this context, log lines of Apprise and urllib3 keep no secret
    of `url`."""
    token = _HIDING.set(url)
    try:
        yield
    finally:
        _HIDING.reset(token)


@contextmanager
def _quiet() -> Iterator[None]:
    token = _QUIET.set(True)
    try:
        yield
    finally:
        _QUIET.reset(token)


class _HideSecrets(logging.Filter):
    """Drops Apprise's lines while it is only asked what is secret; scrubs the others."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _QUIET.get():
            return False
        url = _HIDING.get()
        if url is not None:
            try:
                message = record.getMessage()
            except Exception:  # a line that cannot be formatted: shown as its bare template
                message = str(record.msg)
            record.msg = scrub(message, url)
            record.args = None
        return True


for _name in (apprise.LOGGER_NAME, "urllib3.connectionpool", "urllib3.connection"):
    logging.getLogger(_name).addFilter(_HideSecrets())
