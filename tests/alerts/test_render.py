"""Messages that fit their channel (alerts/render.py): pure, plain data."""

import re
import string

import pytest
from apprise import NotifyFormat
from apprise.conversion import convert_between

from alerts.render import (
    PUSH_LINE_LIMIT,
    SMS_LIMIT,
    URGENT_NOTE,
    channel_form,
    email_html,
    render,
    render_digest,
)
from alerts.routing import is_urgent
from alerts.templates import TEMPLATES

LINK = "https://fleet.example.com/my/#link=Tok3n-abc_123"
ACK = "https://fleet.example.com/recall/Rec4ll-tok3n-abc_1234567890"

# Every field any template uses, with realistic (and rather long) values.
SAMPLE = {
    "device_id": "ap-000042",
    "device_name": "Hallway panel",
    "device_kind": "alarm panel",
    "model_name": "Alarm panel v3",
    "identity": "serial SN-7700412",
    "customer_name": "Ann Example",
    "since_local": "23:30 on 25 Nov 2026 (Europe/Berlin)",
    "back_local": "01:05 on 26 Nov 2026 (Europe/Berlin)",
    "notified_local": "09:00 on 20 Nov 2026 (Europe/Berlin)",
    "since_utc": "2026-11-25 22:30 UTC",
    "back_utc": "2026-11-25 22:41 UTC",
    "downtime": "1 h 35 min",
    "duration": "11 min",
    "grace": "2 min",
    "expected_per_min": 4200,
    "what_to_do": "Your home may not be protected. Check the panel's power and internet "
    "connection now, and call your alarm provider if it stays offline.",
    "outage": "312 devices in region north went offline at once",
    "spells": 5,
    "window": "1 h",
    "value": 12,
    "limit": 15,
    "held": "30 min",
    "empty_in": "6 h",
    "rate_per_h": 3.5,
    "resets": 7,
    "received": 41,
    "expected": 60,
    "side": "above",
    "down": 312,
    "size": 2400,
    "group": "region north",
    "summary": "312 of 2400 devices in region north offline",
    "opened": "22:30 UTC",
    "still": 12,
    "affected": 312,
    "for": "2 d 3 h",
    "incident_id": 123456,
    "waited": "15 min",
    "signin_url": "https://fleet.example.com/my/#signin=Tok3n-abc_123",
    "minutes": 15,
    "code": "123456",
    "expected_local": "07:00 on 26 Nov 2026 (Europe/Berlin)",
    "metric": "temperature",
    "silent": "2 h",
    "devices_title": "your alarm panel Hallway panel",
    "devices_text": "your alarm panel Hallway panel (Alarm panel v3, serial SN-7700412)",
    "device_names": "Hallway panel, Living room thermostat, Garden camera, Garage charger",
    "site_name": "Home at 12 Oak Street",
    "site_address": "12 Oak Street, 10115 Berlin",
    "hub_name": "Zigbee hub in the hallway",
    "update_text": "We know; engineers are on it.",
    "next_update_text": "Next update by 15:00 on 6 Dec 2026 (Europe/Berlin).",
    "latest_text": "Latest from our team (14:00): we know; engineers are on it.",
    "promised_utc": "15:00 UTC on 6 Dec 2026",
    "last_update_utc": "14:00 UTC on 6 Dec 2026",
    "campaign_id": 77,
    "campaign_name": "Battery pack recall 2026-11",
    "target_version": "3.14.2",
    "when_text": "between 02:00 and 04:00 your local time, in the next days",
    "failure_text": "it restarted to install the update and has not come back since",
    "next_steps": "unplug it for ten seconds and plug it back in.",
    "safety_text": "Stop using it until this is done.",
    "instructions": "Unplug the battery pack and book a free replacement.",
    "ack_url": ACK,
    "safety_short": "Stop using it until this is done.",
    "remedy_text": "a free software update to version 3.14.2, installed over the air between "
    "02:00 and 04:00 your local time (Europe/Berlin), from 07 Dec 2026. Keep it connected.",
    "remedy_short": "software 3.14.2 over the air, 02:00-04:00 your time, from 07 Dec 2026",
    "installed_version": "3.14.2",
    "follow_up_number": 2,
    "reason": "failure rate 12% above the 5% limit",
    "failures": "never_came_back: 3",
    "succeeded": 940,
    "failed": 12,
    "skipped": 48,
    "waves": 4,
    "wave": 2,
    "week_of": "23 Nov - 29 Nov 2026",
    "release_summary": "2 vitals worse, 1 better, 14 unclear",
    "release_report": "camera-v1 2.5.0 vs 2.4.1 (41230 device-days): unexpected reboots "
    "per device-day x2.01 (1.85-2.16) worse",
}
FORMS = ("email", "sms", "push", "webhook")
# GSM 03.38's basic characters that ASCII shares (no [ ] { } ^ ~ \\ | `, which cost two).
GSM_BASIC = set(string.ascii_letters + string.digits + " \n@$!\"#%&'()*+,-./:;<=>?_")


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_every_template_has_its_short_forms():
    for name, spec in TEMPLATES.items():
        assert spec.sms and spec.line, name
        assert "\n" not in spec.sms and "\n" not in spec.line, name
        # No greeting: an SMS starts with what happened.
        assert not spec.sms.startswith("Hello"), name
        # The SMS's own words are GSM characters: one other character makes it UCS-2,
        # 70 characters a segment.
        words = re.sub(r"\{[^}]*\}", "", spec.sms)
        assert set(words) <= GSM_BASIC, (name, set(words) - GSM_BASIC)
        # A device's message names the device.
        if "device_name" in _fields(spec.title):
            assert "device_name" in _fields(spec.sms), name


@pytest.mark.parametrize("urgent", [False, True])
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_every_template_renders_for_every_channel_kind(name, form, urgent):
    context = {**SAMPLE, "link": LINK, **({"urgent": True} if urgent else {})}
    message = render(name, context, form)
    link = {"link": LINK, "ack_url": ACK, "signin_url": SAMPLE.get("signin_url")}.get(
        TEMPLATES[name].link_field
    )
    assert message.link == link and message.urgent is urgent
    if link is None:  # a code to type: nothing to follow
        assert LINK not in message.body
        return
    if form == "sms":
        assert message.title == ""
        text, _, tail = message.body.rpartition(" ")
        assert tail == link and "\n" not in message.body
        assert len(text) <= SMS_LIMIT
        assert not text.endswith("...")  # fits without being cut
        assert text.startswith("URGENT") is urgent
    elif form == "push":
        assert "\n" not in message.body and 0 < len(message.body) <= PUSH_LINE_LIMIT
        assert not message.body.endswith("...")
        assert message.title.startswith("Urgent: ") is urgent
        assert (URGENT_NOTE in message.body) is urgent
    else:
        assert message.title.startswith("Urgent: ") is urgent
        assert (URGENT_NOTE in message.text) is urgent
        assert link in message.text
    if form == "email":
        assert message.body_format == "html" and message.body.startswith("<!DOCTYPE html>")
        assert f'href="{link}"' in message.body
    else:
        assert message.body_format == "text"


def test_the_short_forms_of_a_device_offline():
    context = {**SAMPLE, "link": LINK}
    sms = render("device_offline", context, "sms")
    assert sms.body == (
        "Fleetwatch: your alarm panel Hallway panel went offline at 23:30 on 25 Nov 2026 "
        f"(Europe/Berlin). {LINK}"
    )
    push = render("device_offline", context, "push")
    assert push.title == "Your alarm panel Hallway panel went offline"
    assert push.body.startswith("Offline since 23:30 on 25 Nov 2026 (Europe/Berlin). Your home")


def test_without_a_link_each_form_leaves_it_out():
    for form in FORMS:
        message = render("device_offline", SAMPLE, form)
        assert message.link is None and "http" not in message.body, form
    assert render("device_offline", SAMPLE, "sms").body.endswith("(Europe/Berlin).")


def test_a_link_of_another_scheme_is_never_offered():
    message = render("device_offline", {**SAMPLE, "link": "javascript:alert(1)"}, "email")
    assert message.link is None and "javascript" not in message.body


def test_a_long_device_name_is_cut_but_the_link_survives():
    message = render("device_offline", {**SAMPLE, "device_name": "x" * 300, "link": LINK}, "sms")
    text, _, tail = message.body.rpartition(" ")
    assert tail == LINK and len(text) == SMS_LIMIT and text.endswith("...")


def test_email_escapes_every_value_and_links_only_its_own_link():
    context = {
        **SAMPLE,
        "device_name": '<script>alert("x")</script>',
        "customer_name": "Ann & <b>Bob</b>",
        "what_to_do": "Visit https://evil.example/ now",
        "link": LINK,
    }
    message = render("device_offline", context, "email")
    assert "<script>" not in message.body and "<b>" not in message.body
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in message.body
    assert "Ann &amp; &lt;b&gt;Bob&lt;/b&gt;" in message.body
    assert 'href="https://evil.example' not in message.body
    assert message.body.count(f'href="{LINK}"') == 2  # the button and the address spelled out
    # The subject is plain text: the name as it is.
    assert message.title == 'Your alarm panel <script>alert("x")</script> went offline'


def test_the_email_text_part_apprise_makes_reads_like_the_text_form():
    message = render("device_offline", {**SAMPLE, "link": LINK, "urgent": True}, "email")
    text = convert_between(NotifyFormat.HTML, NotifyFormat.TEXT, message.body)
    paragraphs = [p.strip() for p in text.split("\n\n")]
    assert paragraphs[0] == "Hello Ann Example,"
    assert paragraphs[-1] == f"Or open this address: {LINK}"
    assert URGENT_NOTE in paragraphs
    assert all(p in text for p in message.text.split("\n\n")[:-1])


def test_email_html_turns_digest_lines_into_a_list():
    html = email_html("Hello,\n\n- one <1>\n- two\n\nWhat to do:\n- fix it", None, "x")
    assert "<ul><li>one &lt;1&gt;</li><li>two</li></ul>" in html
    assert "<p>What to do:</p>\n\n<ul><li>fix it</li></ul>" in html


def test_a_recall_links_its_confirmation_once():
    for form in FORMS:
        message = render("recall_notice", {**SAMPLE, "link": LINK, "urgent": True}, form)
        assert message.link == ACK, form
        assert message.body.count(ACK) <= (2 if form == "email" else 1), form
    email = render("recall_notice", {**SAMPLE, "urgent": True}, "email")
    assert f'<a href="{ACK}">{ACK}</a>' in email.body
    assert "Read and confirm" not in email.body  # in the text already: no second button


@pytest.mark.parametrize("form", FORMS)
def test_digests_render_per_channel_kind(form):
    other = {**SAMPLE, "device_name": "Garage camera", "device_kind": "camera", "urgent": True}
    items = [("device_offline", {**SAMPLE, "link": LINK}), ("device_offline", other)]
    message = render_digest(items, form)
    assert message.urgent and message.link == LINK
    if form == "sms":
        assert message.body == (
            "URGENT, sent even in quiet hours: Fleetwatch: 2 of your devices are offline: "
            f"Hallway panel, Garage camera. {LINK}"
        )
    elif form == "push":
        assert message.title == "Urgent: 2 of your devices are offline"
        assert message.body.startswith("Hallway panel, Garage camera.")
    else:
        assert message.title == "Urgent: 2 of your devices are offline"
        assert "- Hallway panel" in message.text and LINK in message.text
    if form == "email":
        assert "<li>Hallway panel (Alarm panel v3" in message.body


@pytest.mark.parametrize(
    ("kind", "url", "form"),
    [
        ("sms", "twilio://a:b@+1555/+1666", "sms"),
        ("push", "ntfy://ntfy.example.com/topic", "push"),
        # Staff channels: by scheme; team chat and the like get the long form.
        ("staff", "mailtos://user:pw@mail.example.com", "email"),
        ("staff", "ntfys://ntfy.example.com/ops", "push"),
        ("staff", "json://hooks.example.com/ops", "webhook"),
        ("staff", "slack://T1/B2/C3", "webhook"),
        ("staff", "pagerduty://key@svc", "webhook"),
        ("staff", "nonsense://x", "webhook"),
    ],
)
def test_channel_form(kind, url, form):
    assert channel_form(kind, url) == form


@pytest.mark.parametrize(
    ("severity", "critical_device", "campaign_notice", "urgent"),
    [
        ("critical", True, False, True),  # an alarm panel offline
        ("critical", False, True, True),  # a safety recall
        ("critical", False, False, False),
        ("warning", True, False, False),
        ("warning", False, True, False),  # a failed update
        ("info", False, True, False),
    ],
)
def test_what_is_urgent(severity, critical_device, campaign_notice, urgent):
    assert (
        is_urgent(
            severity=severity, critical_device=critical_device, campaign_notice=campaign_notice
        )
        is urgent
    )
