"""Keeping secrets of Apprise URLs out of logs, API answers and error messages."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

# Path segments and query values this long are treated as tokens.
_TOKEN_LEN = 6


def redact_url(url: str) -> str:
    """`scheme://host/…` with credentials, tokens and query values replaced by `***`."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    try:
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        user = "***@" if parts.username or parts.password else ""
    except ValueError:
        # Not host:port: services like tgram:// put a token where a port would be.
        host, user = "***", ""
    path = "/".join("***" if len(seg) >= _TOKEN_LEN else seg for seg in parts.path.split("/"))
    query = "&".join(
        f"{kv.split('=', 1)[0]}=***" if "=" in kv else kv for kv in parts.query.split("&") if kv
    )
    return f"{parts.scheme}://{user}{host}{path}" + (f"?{query}" if query else "")


def secrets_of(url: str) -> list[str]:
    """The pieces of a URL that must never be shown: password, user, tokens, query values."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return [url]
    # The whole authority, in pieces: some services keep tokens where host and port would be.
    found = [piece for piece in re.split(r"[:@]", parts.netloc) if not _is_plain_host(piece)]
    found += [parts.password or "", parts.username or ""]
    found += [seg for seg in parts.path.split("/") if len(seg) >= _TOKEN_LEN]
    found += [kv.split("=", 1)[1] for kv in parts.query.split("&") if "=" in kv]
    return sorted({s for s in found if len(s) >= 3}, key=len, reverse=True)


def _is_plain_host(piece: str) -> bool:
    """A host name or address, or a port: safe to show."""
    return (piece.isdigit() and len(piece) <= 5) or "." in piece or piece == "localhost"


def scrub(text: str, url: str) -> str:
    """`text` with every secret of `url` replaced by `***`."""
    text = text.replace(url, redact_url(url))
    for secret in secrets_of(url):
        text = re.sub(re.escape(secret), "***", text)
    return text
