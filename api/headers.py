"""Security headers on the pages a browser shows: the staff dashboard, the customer's page
and the recall page.

    /dashboard/...  scripts, styles and requests only from here, no inline code, never
                    framed, no referrer (its links carry a key in the fragment)
    /my/...         the customer's page: the dashboard's policy (its sign-in links carry a
                    token in the fragment)
    /recall/...     nothing but its own inline style and a form posting back here, never
                    framed, no referrer (the token is in the address), never cached

The rest of the API answers JSON and gets `nosniff` only. A pure ASGI middleware, so that
it adds to every answer on those paths, errors included, whoever made it.
"""

from __future__ import annotations

DASHBOARD_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# The recall page is one server-made document with an inline style attribute and no script.
RECALL_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
_PAGE = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",  # frame-ancestors, for browsers that predate it
}
# Path prefix: headers every answer under it gets (replacing any the app set).
HEADERS: tuple[tuple[str, dict[str, str]], ...] = (
    ("/dashboard", {**_PAGE, "content-security-policy": DASHBOARD_POLICY}),
    ("/my", {**_PAGE, "content-security-policy": DASHBOARD_POLICY}),
    ("/recall/", {**_PAGE, "content-security-policy": RECALL_POLICY, "cache-control": "no-store"}),
    ("/", {"x-content-type-options": "nosniff"}),
)


def headers_for(path: str) -> dict[str, str]:
    """The security headers an answer to `path` carries."""
    return next(headers for prefix, headers in HEADERS if path.startswith(prefix))


class SecurityHeaders:
    """ASGI middleware adding `headers_for(path)` to every HTTP answer."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = headers_for(scope["path"])
        names = {name.encode() for name in extra}
        added = [(name.encode(), value.encode()) for name, value in extra.items()]

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                kept = [(n, v) for n, v in message.get("headers", []) if n.lower() not in names]
                message = {**message, "headers": kept + added}
            await send(message)

        await self.app(scope, receive, send_with_headers)
