"""Portal test helpers (their fixtures are used by tests/portal/conftest.py): a dispatcher
that keeps the messages it claimed (their links), and a home whose device went offline and
whose owner was messaged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from support import add_channel, make_device, make_overdue

from alerts.dispatcher import Dispatcher
from alerts.router import route_notices

NOW = datetime.now(UTC).replace(microsecond=0)


class KeepingDispatcher(Dispatcher):
    """Routes what waits (as the alerts process does), then claims and sends as ever,
    keeping each message it claimed: the tests read the links the renderer was given."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.claimed = []

    def run_once(self, now=None):
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while route_notices(conn, now or datetime.now(UTC), limit=5000).notices:
                pass
        return super().run_once(now)

    def claim(self, now):
        messages = super().claim(now)
        self.claimed += messages
        return messages


@pytest.fixture
def dispatcher(make_settings, dsn):
    made = []

    def build(**overrides) -> KeepingDispatcher:
        made.append(KeepingDispatcher(make_settings(**overrides), dsn))
        return made[-1]

    yield build
    for d in made:
        d.close()


def token_of(message) -> str:
    """The token in a message's link (`.../my/#link=TOKEN`)."""
    links = {item.context["link"] for item in message.items}
    assert len(links) == 1, links  # a digest's items share one link
    url = links.pop()
    assert "/my/#link=" in url
    return url.split("#link=", 1)[1]


@pytest.fixture
def home(conn, http_sink, tick, dispatcher):
    """Ann's thermostat went offline at NOW and she was told; returns the facts and the
    token of the message's link."""
    make_device(conn, "thermo-1", name="Kitchen", customer_id="ann", customer_name="Ann Example")
    channel = add_channel(conn, "ann", http_sink.url("ann"))
    make_overdue(conn, ["thermo-1"], NOW)
    tick(NOW)
    d = dispatcher()
    assert d.run_once(NOW) == 1
    incident = conn.execute(
        "SELECT id FROM incidents WHERE device_id = 'thermo-1' AND kind = 'offline'"
    ).fetchone()[0]
    return {
        "token": token_of(d.claimed[0]),
        "incident": incident,
        "channel": channel,
        "dispatcher": d,
    }


def later(**kwargs) -> datetime:
    return NOW + timedelta(**kwargs)
