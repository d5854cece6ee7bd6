"""What each kind of channel receives: one notification (or a digest) made fit for it.

    email    the long form as HTML (paragraphs, a button to the message's link), which
             Apprise's email plugin sends as multipart/alternative with a plain-text part
             made from it; every value from the context is escaped
    sms      one line and the link, no greeting, cut to SMS_LIMIT before the link
    push     the title and one line; the link goes in the push's click action where the
             service has one (alerts/send.py), else after the line
    webhook  the long form as before (a JSON title and message), the link as a last line

Staff channels have no kind: it is read from the URL's scheme (a staff mailto:// gets the
email form); a scheme of several kinds or none (team chat) gets the long form.

An urgent message (alerts/routing.py `is_urgent`: an alarm panel's critical alert, a safety
recall) is marked in its title and says that it is sent even during quiet hours and snoozes.
Templates stay data (alerts/templates.py); this only arranges them. Pure: no I/O.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from alerts.outbound import SCHEMES, STAFF
from alerts.templates import TEMPLATES, _Strict
from alerts.templates import render as render_long
from alerts.templates import render_digest as render_long_digest

EMAIL, SMS, PUSH, WEBHOOK = "email", "sms", "push", "webhook"
# The kind a channel's messages take the form of (the long form: webhook's).
FORMS = (EMAIL, SMS, PUSH, WEBHOOK)

# One GSM-7 segment: the SMS text before its link (a link makes it two segments at most).
SMS_LIMIT = 160
# A push's line: what a phone shows without expanding it, and a bit more.
PUSH_LINE_LIMIT = 300

URGENT_TITLE = "Urgent: "
URGENT_NOTE = "Sent even during quiet hours and snoozes, because it is urgent."
URGENT_SMS = "URGENT, sent even in quiet hours: "


@dataclass(frozen=True, slots=True)
class Message:
    """One message as its channel receives it."""

    title: str
    body: str
    body_format: str = "text"  # "text" or "html" (email)
    urgent: bool = False
    link: str | None = None
    # The plain-text form (an email's text alternative; the body itself for the others).
    text: str = ""


def channel_form(kind: str, url: str) -> str:
    """The form a channel's messages take: its kind; for a staff channel, the kind its URL's
    scheme belongs to, or the long form when that is not one kind."""
    if kind in FORMS:
        return kind
    scheme = url.split("://", 1)[0].lower()
    kinds = SCHEMES[scheme].kinds - {STAFF} if scheme in SCHEMES else frozenset()
    return next(iter(kinds)) if len(kinds) == 1 else WEBHOOK


def message_link(template: str, context: dict) -> str | None:
    """The message's link (its template's `link_field`): an http(s) URL, or None. A link of
    another scheme is never offered to be clicked."""
    value = context.get(TEMPLATES[template].link_field)
    if isinstance(value, str) and urlsplit(value).scheme in ("http", "https"):
        return value
    return None


def render(template: str, context: dict, form: str) -> Message:
    """One notification as a channel of `form` (channel_form) receives it."""
    spec = TEMPLATES[template]
    urgent = bool(context.get("urgent"))
    link = message_link(template, context)
    ctx = _Strict(context)
    if form == SMS:
        return _sms(spec.sms.format_map(ctx), link, urgent)
    if form == PUSH:
        return _push(spec.title.format_map(ctx), spec.line.format_map(ctx), link, urgent)
    title, body = render_long(template, context)
    return _long(title, body, link, urgent, form, spec.link_label)


def render_digest(items: list[tuple[str, dict]], form: str) -> Message:
    """Several notifications to one channel as one message of `form`."""
    urgent = any(ctx.get("urgent") for _, ctx in items)
    link = next((x for x in (message_link(t, ctx) for t, ctx in items) if x), None)
    title, body = render_long_digest(items)
    if form in (SMS, PUSH):
        # Names are what tells one device from another; staff digests have none: their lines.
        names = ", ".join(
            ctx.get("device_name") or TEMPLATES[t].digest_line.format_map(_Strict(ctx))
            for t, ctx in items
        )
        if form == SMS:
            return _sms(f"Fleetwatch: {title}: {names}.", link, urgent)
        return _push(title, names + ".", link, urgent)
    labels = {TEMPLATES[t].link_label for t, _ in items}
    label = labels.pop() if len(labels) == 1 else TEMPLATES["device_offline"].link_label
    return _long(title, body, link, urgent, form, label)


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def _sms(line: str, link: str | None, urgent: bool) -> Message:
    text = _clip((URGENT_SMS if urgent else "") + _one_line(line), SMS_LIMIT)
    if link:
        text += " " + link
    # No title: SMS services would put it before the text.
    return Message("", text, urgent=urgent, link=link, text=text)


def _push(title: str, line: str, link: str | None, urgent: bool) -> Message:
    title = (URGENT_TITLE if urgent else "") + _one_line(title)
    if urgent:  # cut before the note, which must stay
        line = _clip(_one_line(line), PUSH_LINE_LIMIT - len(URGENT_NOTE) - 1) + " " + URGENT_NOTE
    else:
        line = _clip(_one_line(line), PUSH_LINE_LIMIT)
    return Message(title, line, urgent=urgent, link=link, text=line)


def _long(title: str, body: str, link: str | None, urgent: bool, form: str, label: str):
    if urgent:
        title = URGENT_TITLE + title
        body += "\n\n" + URGENT_NOTE
    text = body if not link or link in body else f"{body}\n\n{label}: {link}"
    if form != EMAIL:
        return Message(title, text, urgent=urgent, link=link, text=text)
    return Message(title, email_html(body, link, label), "html", urgent, link, text)


_BUTTON = (
    '<p><a href="{href}" style="display:inline-block;padding:10px 18px;background:#1a56db;'
    'color:#ffffff;text-decoration:none;border-radius:4px;font-weight:bold">{label}</a></p>'
)


def email_html(body: str, link: str | None, label: str) -> str:
    """The long form as an HTML document: each paragraph a <p> (a run of "- " lines a list),
    every character of it escaped (a device named `<script>` stays text), the link a button
    and spelled out, so that the plain-text part Apprise makes from this keeps it."""
    parts = []
    for paragraph in body.split("\n\n"):
        lines = paragraph.split("\n")
        items = [line[2:] for line in lines if line.startswith("- ")]
        heads = [line for line in lines if not line.startswith("- ")]
        if heads:
            parts.append("<p>" + "<br>".join(_linked(h, link) for h in heads) + "</p>")
        if items:
            parts.append("<ul>" + "".join(f"<li>{_linked(i, link)}</li>" for i in items) + "</ul>")
    if link and link not in body:
        href = html.escape(link, quote=True)
        parts.append(_BUTTON.format(href=href, label=html.escape(label)))
        parts.append(f"<p>Or open this address: {_linked(link, link)}</p>")
    # Blank lines between blocks: Apprise's text part keeps them as paragraph breaks.
    content = "\n\n".join(parts)
    return (
        '<!DOCTYPE html>\n<html><body style="font-family:sans-serif;line-height:1.5;'
        f'max-width:40em">\n{content}\n</body></html>'
    )


def _linked(text: str, link: str | None) -> str:
    """`text` escaped, with the message's own link (only it: a URL from elsewhere in the
    context, say a device's name, is never made clickable) as an anchor."""
    escaped = html.escape(text, quote=True)
    if not link:
        return escaped
    href = html.escape(link, quote=True)
    return escaped.replace(href, f'<a href="{href}">{href}</a>')
