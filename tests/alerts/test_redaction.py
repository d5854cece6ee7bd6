"""No secret of a channel's Apprise URL in an API answer, a log line, a timeline or a recorded
error: a table of Apprise URL forms, each with the parts that are secret.

Apprise keeps tokens in every part of a URL: the user and password, the host (Pushover's
application token, Pushbullet's access token, Slack's first token, an ntfy.sh topic), the
path, the query, a header. Each row names what must never be seen again, whatever the case
(host names are lowercased by URL parsers) and however it is quoted.
"""

from __future__ import annotations

import logging
import socket
from datetime import UTC, datetime
from urllib.parse import quote, unquote

import pytest
from support import add_channel, auth, make_device, make_overdue

from alerts.redact import redact_url, scrub

NOW = datetime.now(UTC).replace(microsecond=0)

# (Apprise URL, channel kind, the parts that are secret)
SECRET_URLS = [
    (
        "pover://usr4p9qz7vw2lx8rt5yb3nc6md1ab2@app8k2jh5gf3ds7aq9wz4xc1vb6nm0",
        "push",
        ["usr4p9qz7vw2lx8rt5yb3nc6md1ab2", "app8k2jh5gf3ds7aq9wz4xc1vb6nm0"],
    ),
    ("pbul://o.Pb7Kd93LmQx2Vt8Rz5Nw1Yc4Hs6Ja0Fe", "push", ["o.Pb7Kd93LmQx2Vt8Rz5Nw1Yc4Hs6Ja0Fe"]),
    (
        "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ",
        "webhook",
        ["T1JJ3T3L2", "A1BRTD4JD", "TIiajkdnlazkcOXrIdevi7FQ"],
    ),
    ("ifttt://WebHookIdSecret4711@device_offline", "push", ["WebHookIdSecret4711"]),
    (
        "prowl://prowlapikey00000000000000000000000000001",
        "push",
        ["prowlapikey00000000000000000000000000001"],
    ),
    ("ntfy://SecretTopicQ7x2", "push", ["SecretTopicQ7x2"]),
    ("ntfys://ntfy.example.com/PrivateTopic9Zk", "push", ["PrivateTopic9Zk"]),
    ("ntfys://alice:NtfyPass5521@ntfy.example.com/alerts", "push", ["NtfyPass5521"]),
    # An ntfy access token (Apprise's ntfy plugin marks it private).
    (
        "ntfys://tk_AccessTok3nSecret99@ntfy.example.com/alerts?auth=token",
        "push",
        ["tk_AccessTok3nSecret99"],
    ),
    (
        "tgram://123456789:AAHnBotTokenSecretValue0123456789abc/987654321",
        "push",
        ["AAHnBotTokenSecretValue0123456789abc"],
    ),
    ("gotifys://gotify.example.com/GotifyAppTok3n", "push", ["GotifyAppTok3n"]),
    (
        "json://hookuser:HookPassw0rd@hooks.example.com/hooks/PathSecret77",
        "webhook",
        ["HookPassw0rd", "PathSecret77"],
    ),
    ("jsons://hooks.example.com/in?+X-Api-Key=HeaderSecret55", "webhook", ["HeaderSecret55"]),
    ("form://forms.example.com/submit/FormPathSecret", "webhook", ["FormPathSecret"]),
    ("xmls://user:XmlPassw0rd@xml.example.com/feed", "webhook", ["XmlPassw0rd"]),
    ("mailtos://alice:MailPassw0rd@gmail.com?to=owner%40example.com", "email", ["MailPassw0rd"]),
    (
        "mailto://bob:Sm%2Fp%40ss99@mail.example.com?smtp=smtp.example.com",
        "email",
        ["Sm/p@ss99", "Sm%2Fp%40ss99"],
    ),
    (
        "twilio://AC0123456789abcdef0123456789abcdef:TwilioAuthToken0123456789abcdef"
        "@15551234567/15557654321",
        "sms",
        ["AC0123456789abcdef0123456789abcdef", "TwilioAuthToken0123456789abcdef"],
    ),
    (
        "sns://AKIAIOSFODNN7EXAMPLE/wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY/us-east-1/15551234567",
        "sms",
        ["AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY"],
    ),
    (
        "vonage://VonageKey1:VonageSecret1234@15551234567/15557654321",
        "sms",
        ["VonageKey1", "VonageSecret1234"],
    ),
    ("clicksend://carol:ClickSendKey9@15551234567", "sms", ["ClickSendKey9"]),
    ("d7sms://D7TokenSecret123@15551234567", "sms", ["D7TokenSecret123"]),
    (
        "discord://4711471147114711/DiscordWebhookTokenSecret",
        "webhook",
        ["DiscordWebhookTokenSecret"],
    ),
    ("pushed://PushedAppKey1/PushedAppSecret99", "push", ["PushedAppKey1", "PushedAppSecret99"]),
    ("spush://SimplePushKey7", "push", ["SimplePushKey7"]),
    ("psafer://PushsaferPrivKey42", "push", ["PushsaferPrivKey42"]),
    (
        "sendgrid://SendGridApiKey000:noreply@example.com/owner@example.com",
        "email",
        ["SendGridApiKey000"],
    ),
    # Not a scheme a customer's webhook may use: refused before any send, and the refusal
    # names no secret either.
    ("mmost://mm.example.com/MattermostTok3n", "webhook", ["MattermostTok3n"]),
]


def hidden(text: str, secrets: list[str]) -> list[str]:
    """The secrets still in `text`, in any case, raw or decoded or percent-encoded."""
    text = text.lower()
    forms = {f.lower() for s in secrets for f in (s, unquote(s), quote(unquote(s), safe=""))}
    return sorted(f for f in forms if f in text)


@pytest.mark.parametrize(("url", "kind", "secrets"), SECRET_URLS)
def test_redacted_url_and_scrubbed_text_keep_no_secret(url, kind, secrets):
    shown = redact_url(url)
    assert shown.startswith(url.split("://")[0] + "://")
    assert hidden(shown, secrets) == [], shown
    # What a log line or an error may hold: the URL whole and decoded, each secret alone,
    # percent-encoded, in capitals (a host name lowercased by a URL parser, say).
    text = " | ".join(
        [f"sending to {url} failed", unquote(url)]
        + [f"token {s} / {quote(s, safe='')} / {s.lower()} / {s.upper()}" for s in secrets]
    )
    scrubbed = scrub(text, url)
    assert hidden(scrubbed, secrets) == [], scrubbed


def test_an_error_cut_to_length_keeps_no_piece_of_a_secret():
    from alerts.send import error_text

    url, _, [secret] = SECRET_URLS[1]  # pbul://<access token>
    # Apprise's lines, the secret straddling the point where the text is cut to 500.
    lines = ["WARNING: " + "x" * 480 + " token " + secret + " refused", "ERROR: giving up"]
    error = error_text(lines, url)
    assert len(error) <= 500
    for start in range(len(secret) - 8):  # no 8 characters of it in a row
        assert secret[start : start + 8].lower() not in error.lower(), error


def _no_dns(real):
    """getaddrinfo as on a machine without DNS: nothing leaves it; local names still work."""

    def resolve(host, *args, **kwargs):
        if host in ("127.0.0.1", "localhost", "::1"):
            return real(host, *args, **kwargs)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    return resolve


def test_no_secret_in_api_answers_logs_timelines_or_recorded_errors(
    conn, api, keys, tick, make_dispatcher, caplog, monkeypatch
):
    every_secret = [s for _, _, secrets in SECRET_URLS for s in secrets]
    devices = []
    for i, (url, kind, _) in enumerate(SECRET_URLS):
        make_device(conn, f"dev-{i:02d}", customer_id=f"c{i:02d}", name=f"Thing {i}")
        add_channel(conn, f"c{i:02d}", url, kind=kind)
        conn.execute("INSERT INTO staff_channels (apprise_url) VALUES (%s)", (url,))
        devices.append(f"dev-{i:02d}")
    make_overdue(conn, devices, NOW)
    tick(NOW)

    # Every send fails (no DNS here, and nothing may reach the real services), and with one
    # attempt allowed each failure is final: recorded on the notification, the attempt and
    # the incident's timeline.
    monkeypatch.setattr(socket, "getaddrinfo", _no_dns(socket.getaddrinfo))
    caplog.set_level(logging.DEBUG)  # what an operator sees with FLEETWATCH_LOG_LEVEL=DEBUG
    assert make_dispatcher(alerts_max_attempts=1).run_once(NOW) == len(SECRET_URLS)
    monkeypatch.undo()

    errors = conn.execute("SELECT last_error FROM notifications WHERE status = 'failed'")
    errors = [e for (e,) in errors]
    assert len(errors) == len(SECRET_URLS) and all(errors)
    attempts = [e for (e,) in conn.execute("SELECT error FROM delivery_attempts")]
    timeline = [
        str(d)
        for (d,) in conn.execute(
            "SELECT detail FROM incident_events WHERE kind = 'notification_failed'"
        )
    ]
    assert len(timeline) == len(SECRET_URLS)

    staff = auth(keys.staff)
    answers = [api.get("/api/v1/staff-channels", headers=staff).text]
    for i in range(len(SECRET_URLS)):
        customer = auth(keys.customer(f"c{i:02d}"))
        incident = conn.execute(
            "SELECT id FROM incidents WHERE device_id = %s", (f"dev-{i:02d}",)
        ).fetchone()[0]
        for path, headers in (
            (f"/api/v1/customers/c{i:02d}/channels", staff),
            ("/api/v1/me/channels", customer),
            ("/api/v1/me/notifications", customer),
            (f"/api/v1/incidents/{incident}", customer),
            (f"/api/v1/incidents/{incident}", staff),
        ):
            answer = api.get(path, headers=headers)
            assert answer.status_code == 200, (path, answer.text)
            answers.append(answer.text)
    assert "***" in answers[0]  # the answers show the channels, redacted

    for where, texts in (
        ("recorded error", errors),
        ("attempt", attempts),
        ("timeline", timeline),
        ("answer", answers),
        ("log", [caplog.text]),
    ):
        for text in texts:
            assert hidden(text, every_secret) == [], (where, text[:2000])
