"""Fixtures for alert tests: real SMTP and HTTP receivers, and a dispatcher factory."""

import pytest
from sinks import HttpSink, SmtpSink

from alerts.dispatcher import Dispatcher


@pytest.fixture
def smtp():
    sink = SmtpSink().start()
    yield sink
    sink.stop()


@pytest.fixture
def http_sink():
    sink = HttpSink().start()
    yield sink
    sink.stop()


@pytest.fixture
def make_dispatcher(make_settings, dsn):
    made = []

    def build(**overrides) -> Dispatcher:
        dispatcher = Dispatcher(make_settings(**overrides), dsn)
        made.append(dispatcher)
        return dispatcher

    yield build
    for dispatcher in made:
        dispatcher.close()
