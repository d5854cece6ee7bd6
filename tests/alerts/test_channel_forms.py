"""What each kind of channel receives, at real receivers: a push through Apprise's own ntfy
plugin to a local ntfy publish API, an email with text and HTML parts at a real SMTP server.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from support import add_channel, make_device, make_overdue

from alerts.render import URGENT_NOTE

NOW = datetime.now(UTC).replace(microsecond=0)


def _minted(conn, link: str, customer_id: str, device_id: str) -> None:
    """The link the dispatcher minted for the message leads to the owner's page and opens
    that device, for that customer (portal/links.py)."""
    from portal.links import find_link

    page, _, token = link.partition("#link=")
    assert page == "http://127.0.0.1:8080/my/"
    found = find_link(conn, token, NOW)
    assert found is not None and found.customer_id == customer_id
    assert found.subject(device_id) is not None


def test_an_offline_devices_owner_gets_a_push_with_title_line_and_click_link(
    conn, tick, route, make_dispatcher, ntfy
):
    make_device(conn, "th-1", name="Living room", serial="TH-1", customer_id="ann")
    add_channel(conn, "ann", ntfy.url("fw-ann"), kind="push")
    make_overdue(conn, ["th-1"], NOW)
    tick(NOW)
    route(NOW)
    assert make_dispatcher().run_once(NOW) == 1

    [pushed] = ntfy.pushes
    assert pushed.topic == "fw-ann"
    assert pushed.title == "Your thermostat Living room went offline"
    assert pushed.message.startswith("Offline since ") and "\n" not in pushed.message
    assert "Hello" not in pushed.message  # a push is no letter
    assert pushed.priority == 3  # ntfy's default: a thermostat is not urgent
    _minted(conn, pushed.click, "ann", "th-1")
    assert pushed.click not in pushed.message  # the click action carries it


def test_an_alarm_panels_push_is_urgent_and_says_so(conn, tick, make_dispatcher, ntfy):
    make_device(
        conn, "panel-1", model_id="alarm-panel-v3", name="Hall", serial="AP-1", customer_id="bo"
    )
    # Quiet hours all day long: an urgent message goes all the same.
    conn.execute(
        "UPDATE customers SET quiet_hours_start = '00:00', quiet_hours_end = '23:59' "
        "WHERE id = 'bo'"
    )
    add_channel(conn, "bo", ntfy.url("fw-bo"), kind="push")
    make_overdue(conn, ["panel-1"], NOW)
    tick(NOW)
    assert make_dispatcher().run_once(NOW) == 1

    [pushed] = ntfy.pushes
    assert pushed.priority == 5  # ntfy's max ("urgent")
    assert pushed.title == "Urgent: Your alarm panel Hall went offline"
    assert pushed.message.endswith(URGENT_NOTE)
    _minted(conn, pushed.click, "bo", "panel-1")  # an urgent message leads there too
    urgent = conn.execute("SELECT context ->> 'urgent' FROM notifications").fetchone()[0]
    assert urgent == "true"


def test_an_email_has_a_text_and_an_html_part_with_the_link_in_both(
    conn, tick, route, make_dispatcher, smtp
):
    make_device(
        conn,
        "panel-2",
        model_id="alarm-panel-v3",
        name="<b>Hall</b> & stairs",
        serial="AP-2",
        customer_id="cy",
        customer_name="Cy",
    )
    add_channel(conn, "cy", smtp.url("cy@example.com"), kind="email")
    make_overdue(conn, ["panel-2"], NOW)
    tick(NOW)
    route(NOW)
    assert make_dispatcher().run_once(NOW) == 1

    [(_, mail)] = smtp.messages
    assert mail.get_content_type() == "multipart/alternative"
    assert str(mail["subject"]) == "Urgent: Your alarm panel <b>Hall</b> & stairs went offline"
    assert mail["X-Priority"].startswith("1") and mail["Importance"] == "high"
    text = mail.get_body(("plain",)).get_content()
    html = mail.get_body(("html",)).get_content()
    [link] = re.findall(r"http://\S+#link=[\w-]+", text)
    _minted(conn, link, "cy", "panel-2")
    assert f'href="{link}"' in html
    assert "Hello Cy," in text and "<b>Hall</b> & stairs" in text
    # The device's name is text in the HTML part, never markup.
    assert "<b>Hall</b>" not in html and "&lt;b&gt;Hall&lt;/b&gt; &amp; stairs" in html
    assert URGENT_NOTE in text and URGENT_NOTE in html
