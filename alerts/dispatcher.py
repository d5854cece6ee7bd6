"""The dispatcher: claim due notifications, send them, record every attempt.

    claim (FOR UPDATE SKIP LOCKED, a lease)  -> commit
    record each attempt as started           -> commit
    send through Apprise (thread pool)
    record each result: sent, or back to pending with backoff, or failed -> commit

A dispatcher killed anywhere loses nothing: its claims lapse with their lease and another
dispatcher takes them. Only a message delivered just before the kill, whose result was not
recorded, is sent again, and the delivery log shows that attempt as never finished.
Several due notifications for one channel go out as one digest message. Each message to a
customer carries a link of its own to their page (portal/links.py), minted at the claim:
a retry is a new message with a new link, and the earlier link simply expires.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import psycopg

from alerts import render
from alerts.outbound import STAFF, ChannelRefused, check_rules
from alerts.ratelimit import WINDOW as RATE_WINDOW
from alerts.ratelimit import ChannelUse, deferred_until
from alerts.redact import redact_url, scrub
from alerts.send import AppriseSender, SendResult
from alerts.templates import CREDENTIAL_FIELDS, PERSONAL_TEMPLATES, TEMPLATES
from core import db
from core.settings import Settings
from incidents import record_events
from portal.links import mint_for_messages

log = logging.getLogger(__name__)

_CLAIM = """
WITH due AS (
    SELECT id FROM notifications
    WHERE {where}
    ORDER BY {order} LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE notifications n
SET status = 'sending', claimed_until = %(lease)s, claim_token = %(token)s,
    attempts = n.attempts + 1
FROM due
WHERE n.id = due.id
RETURNING n.id, n.incident_id, n.device_id, n.template, n.severity, n.context, n.attempts,
          n.channel_id, n.staff_channel_id
"""
# New work first, then claims whose dispatcher died (their lease ran out).
_CLAIM_DUE = _CLAIM.format(where="status = 'pending' AND due_at <= %(now)s", order="due_at")
_CLAIM_LAPSED = _CLAIM.format(
    where="status = 'sending' AND claimed_until < %(now)s", order="claimed_until"
)

# Messages each channel was sent within the window. A digest's notifications share one
# sent_at, so distinct sent_at values count messages, not notifications. What the customer
# asked for (a sign-in link, a code) does not count: it has limits of its own (portal/).
_CHANNEL_USE = """
SELECT ch.id, count(DISTINCT n.sent_at), min(n.sent_at),
       coalesce(c.max_messages_per_hour, %(default)s)
FROM contact_channels ch
JOIN customers c ON c.id = ch.customer_id
LEFT JOIN notifications n
       ON n.channel_id = ch.id AND n.status = 'sent' AND n.sent_at > %(since)s
      AND n.template <> ALL(%(personal)s)
WHERE ch.id = ANY(%(ids)s)
GROUP BY ch.id, c.max_messages_per_hour
"""

# Not an attempt: back to the queue until the window frees a slot.
_DEFER = """
UPDATE notifications
SET status = 'pending', due_at = %s, claimed_until = NULL, attempts = attempts - 1,
    last_error = 'rate limited'
WHERE id = %s AND claim_token = %s AND status = 'sending'
"""

_URLS = """
SELECT 'c' || id, apprise_url, label, kind FROM contact_channels WHERE id = ANY(%(customer)s)
UNION ALL
SELECT 's' || id, apprise_url, label, %(staff_kind)s FROM staff_channels WHERE id = ANY(%(staff)s)
"""

_START_ATTEMPT = """
INSERT INTO delivery_attempts (notification_id, started_at, message_id)
VALUES (%s, %s, %s) RETURNING id
"""

_FINISH_ATTEMPT = """
UPDATE delivery_attempts
SET finished_at = %s, ok = %s, permanent = %s, error = %s, duration_ms = %s
WHERE id = %s
"""

# Guarded by the claim token: if our lease lapsed and another dispatcher took the row,
# its outcome is the one that counts.
_SENT = """
UPDATE notifications SET status = 'sent', sent_at = %s, claimed_until = NULL, last_error = NULL
WHERE id = %s AND claim_token = %s AND status = 'sending'
"""
_RETRY = """
UPDATE notifications SET status = 'pending', due_at = %s, claimed_until = NULL, last_error = %s
WHERE id = %s AND claim_token = %s AND status = 'sending'
"""
_FAILED = """
UPDATE notifications SET status = 'failed', claimed_until = NULL, last_error = %s
WHERE id = %s AND claim_token = %s AND status = 'sending'
"""
# A credential sent (or given up on) is not kept: the row keeps what it was, not the link.
_SCRUB = """
UPDATE notifications SET context = context - %(fields)s::text[]
WHERE id = ANY(%(ids)s) AND status IN ('sent', 'failed')
"""


@dataclass(frozen=True, slots=True)
class Claimed:
    id: int
    incident_id: int | None
    device_id: str | None
    template: str
    severity: str
    context: dict
    attempts: int
    channel_key: str  # 'c<id>' customer channel, 's<id>' staff channel


@dataclass
class Message:
    """One send: a notification alone, or a digest of several to the same channel."""

    channel_key: str
    url: str
    label: str | None
    items: list[Claimed]
    token: uuid.UUID
    kind: str = STAFF  # the channel's kind: which schemes its URL may use
    message_id: uuid.UUID = field(default_factory=uuid.uuid4)
    attempt_ids: list[int] = field(default_factory=list)

    def render(self) -> render.Message:
        """The message as this channel's kind receives it (alerts/render.py)."""
        form = render.channel_form(self.kind, self.url)
        if len(self.items) == 1:
            return render.render(self.items[0].template, self.items[0].context, form)
        return render.render_digest([(c.template, c.context) for c in self.items], form)


@dataclass
class DispatchCounters:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    messages: int = 0
    digests: int = 0
    rate_limited: int = 0


def backoff(attempts: int, base_s: float, max_s: float) -> timedelta:
    """Exponential backoff after the given number of attempts."""
    return timedelta(seconds=min(max_s, base_s * 2 ** max(0, attempts - 1)))


def group_messages(
    claimed: list[Claimed], urls: dict[str, tuple[str, str | None, str]], token: uuid.UUID
) -> list[Message]:
    """Messages to send: one per channel, a digest where a channel has several notifications;
    a message that goes alone never is a digest's line: a personal one (a sign-in link, a
    code), or a safety recall's (its own link to confirm, its vehicle named in every form).
    `urls`: each channel's (URL, label, kind)."""
    by_channel: dict[str, list[Claimed]] = defaultdict(list)
    alone: list[Claimed] = []
    for item in claimed:
        goes_alone = item.template in PERSONAL_TEMPLATES or TEMPLATES[item.template].alone
        (alone if goes_alone else by_channel[item.channel_key]).append(item)
    groups = [(key, sorted(items, key=lambda c: c.id)) for key, items in by_channel.items()]
    groups += [(item.channel_key, [item]) for item in alone]
    return [
        Message(key, urls[key][0], urls[key][1], items, token, urls[key][2])
        for key, items in groups
        if key in urls
    ]


class Dispatcher:
    """Claims and sends; any number may run against one database."""

    def __init__(self, settings: Settings, dsn: str, sender=None) -> None:
        self.settings = settings
        self.dsn = dsn
        self.sender = sender or AppriseSender(allowed_networks=settings.allowed_networks())
        self.counters = DispatchCounters()
        self._pool = ThreadPoolExecutor(settings.alerts_workers, thread_name_prefix="dispatch")
        self._conn: psycopg.Connection | None = None

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = db.connect(self.dsn, autocommit=True)
        return self._conn

    def claim(self, now: datetime) -> list[Message]:
        """Claim due work under a lease and record each attempt as started."""
        conn = self._connection()
        token = uuid.uuid4()
        params = {
            "now": now,
            "limit": self.settings.alerts_batch_size,
            "token": token,
            "lease": now + timedelta(seconds=self.settings.alerts_lease_s),
        }
        with conn.transaction():
            rows = conn.execute(_CLAIM_DUE, params).fetchall()
            rows += conn.execute(_CLAIM_LAPSED, params).fetchall()
            rows = self._rate_limit(conn, rows, now, token)
        if not rows:
            return []
        claimed = [
            Claimed(
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                r[5],
                r[6],
                f"c{r[7]}" if r[7] is not None else f"s{r[8]}",
            )
            for r in rows
        ]
        urls = {
            key: (url, label, kind)
            for key, url, label, kind in conn.execute(
                _URLS,
                {
                    "customer": [r[7] for r in rows if r[7] is not None],
                    "staff": [r[8] for r in rows if r[8] is not None],
                    "staff_kind": STAFF,
                },
            )
        }
        messages = group_messages(claimed, urls, token)
        # One pipelined round trip for the whole batch, not one per notification.
        starts = [(item.id, now, m.message_id) for m in messages for item in m.items]
        with conn.transaction(), conn.cursor() as cur:
            # Each customer message's link, committed with its attempt, before any send.
            mint_for_messages(
                conn,
                messages,
                now,
                public_url=self.settings.public_url,
                link_days=self.settings.portal_link_days,
            )
            cur.executemany(_START_ATTEMPT, starts, returning=True)
            attempt_ids = []
            while True:
                attempt_ids.append(cur.fetchone()[0])
                if not cur.nextset():
                    break
        ids = iter(attempt_ids)
        for message in messages:
            message.attempt_ids = [next(ids) for _ in message.items]
        return messages

    def _rate_limit(self, conn, rows: list[tuple], now: datetime, token: uuid.UUID) -> list[tuple]:
        """Send back what would break a channel's hourly limit; return the rest."""
        by_channel: dict[int, list[tuple]] = defaultdict(list)
        for row in rows:
            if row[7] is not None and row[3] not in PERSONAL_TEMPLATES:
                by_channel[row[7]].append(row)
        if not by_channel:
            return rows
        use = {
            channel: ChannelUse(sent, oldest, limit)
            for channel, sent, oldest, limit in conn.execute(
                _CHANNEL_USE,
                {
                    "ids": list(by_channel),
                    "since": now - RATE_WINDOW,
                    "default": self.settings.alerts_rate_limit_per_hour,
                    "personal": list(PERSONAL_TEMPLATES),
                },
            )
        }
        deferred, events = [], []
        for channel, items in by_channel.items():
            if channel not in use:
                continue
            until = deferred_until(use[channel], [r[4] for r in items], now)
            if until is None:
                continue
            for row in items:
                deferred.append((until, row[0], token))
                if row[1] is not None:
                    detail = {"channel_id": channel, "until": until.isoformat()}
                    events.append((row[1], "rate_limited", detail))
            log.info(
                "rate limit: %d notifications for device %s wait until %s",
                len(items),
                ", ".join(sorted({r[2] or "-" for r in items})),
                until.isoformat(),
            )
        if not deferred:
            return rows
        with conn.cursor() as cur:
            cur.executemany(_DEFER, deferred)
        record_events(conn, events, now)
        self.counters.rate_limited += len(deferred)
        held = {d[1] for d in deferred}
        return [r for r in rows if r[0] not in held]

    def run_once(self, now: datetime | None = None) -> int:
        """Claim, send and record one batch; return how many notifications it handled.

        One clock: a `now` passed in (a test) times the claim and the record alike;
        otherwise the database's, read at the claim and again after the sends.
        """
        messages = self.claim(now or db.db_now(self._connection()))
        if not messages:
            return 0
        results = list(self._pool.map(self._send, messages))
        self._record(messages, results, now)
        return sum(len(m.items) for m in messages)

    def _send(self, message: Message) -> SendResult:
        try:
            # Checked at every send: a channel may be older than the rules, or written by hand.
            check_rules(message.url, message.kind)
        except ChannelRefused as refused:
            log.warning(
                "send to %s refused for device %s: %s",
                message.label or redact_url(message.url),
                ", ".join(sorted({c.device_id or "-" for c in message.items})),
                refused,
            )
            return SendResult(False, 0, str(refused)[:500], permanent=True)
        try:
            result = self.sender.send(message.url, message.render())
        except Exception as exc:  # one message's failure must not stop the others
            log.exception(
                "send to %s raised for device %s",
                message.label or redact_url(message.url),
                ", ".join(sorted({c.device_id or "-" for c in message.items})),
            )
            error = scrub(f"internal error: {type(exc).__name__}: {exc}", message.url)[:500]
            return SendResult(False, 0, error)
        who = ", ".join(sorted({c.device_id or "-" for c in message.items}))
        if result.ok:
            log.info(
                "sent %s to %s for device %s in %d ms",
                message.items[0].template,
                message.label or redact_url(message.url),
                who,
                result.duration_ms,
            )
        else:
            log.warning(
                "send to %s failed for device %s: %s", redact_url(message.url), who, result.error
            )
        return result

    def _record(
        self, messages: list[Message], results: list[SendResult], now: datetime | None = None
    ) -> None:
        conn = self._connection()
        now = now or db.db_now(conn)
        s = self.settings
        finished, sent, failed, retried, events, credentials = [], [], [], [], [], []
        for message, result in zip(messages, results, strict=True):
            self.counters.messages += 1
            self.counters.digests += len(message.items) > 1
            for item, attempt_id in zip(message.items, message.attempt_ids, strict=True):
                finished.append(
                    (now, result.ok, result.permanent, result.error, result.duration_ms, attempt_id)
                )
                detail = {
                    "channel": message.label or redact_url(message.url),
                    "attempt": item.attempts,
                    "message_id": str(message.message_id),
                }
                if message.channel_key.startswith("c"):
                    # A customer's channel: its owner may read this line (incidents/visibility.py).
                    detail["channel_id"] = int(message.channel_key[1:])
                if result.ok:
                    sent.append((now, item.id, message.token))
                    self.counters.sent += 1
                    kind = "notified"
                elif result.permanent or item.attempts >= s.alerts_max_attempts:
                    failed.append((result.error, item.id, message.token))
                    self.counters.failed += 1
                    kind = "notification_failed"
                    detail["error"] = result.error
                else:
                    due = now + backoff(item.attempts, s.alerts_backoff_s, s.alerts_backoff_max_s)
                    retried.append((due, result.error, item.id, message.token))
                    self.counters.retried += 1
                    continue
                if item.template in PERSONAL_TEMPLATES:
                    credentials.append(item.id)
                if item.incident_id is not None:
                    events.append((item.incident_id, kind, detail))
        # One pipelined round trip per statement, not one per notification.
        with conn.transaction(), conn.cursor() as cur:
            for statement, rows in (
                (_FINISH_ATTEMPT, finished),
                (_SENT, sent),
                (_FAILED, failed),
                (_RETRY, retried),
            ):
                if rows:
                    cur.executemany(statement, rows)
            if credentials:
                cur.execute(_SCRUB, {"fields": list(CREDENTIAL_FIELDS), "ids": credentials})
            record_events(conn, events, now)

    def drop_connection(self) -> None:
        """Forget a connection that may be broken (after a failed run)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        if self._conn is not None:
            self._conn.close()
