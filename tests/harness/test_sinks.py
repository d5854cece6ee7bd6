"""harness.sinks: what Apprise sends arrives, in a thread and in a child process."""

from __future__ import annotations

import time

import apprise
import pytest
from support import wait_until

from harness.sinks import HttpSink, SinkProcess, SmtpSink


def send(url: str, title: str, body: str) -> bool:
    """One notification through Apprise, as Fleetwatch sends it; whether it was accepted."""
    notifier = apprise.Apprise()
    assert notifier.add(url), url
    return notifier.notify(title=title, body=body)


def test_http_sink_keeps_each_post_by_path_until_told_to_fail():
    with HttpSink() as sink:
        assert send(sink.url("ann"), "Hallway offline", "since 10:02")
        sink.fail_next = 1
        assert not send(sink.url("bob"), "Garage offline", "since 10:03")
        assert send(sink.url("bob"), "Garage back", "at 10:09")

        assert sink.by_path() == {
            "/ann": [("Hallway offline", "since 10:02")],
            "/bob": [("Garage back", "at 10:09")],
        }
        assert sink.received() == [("Hallway offline", "since 10:02"), ("Garage back", "at 10:09")]
        assert sink.total == 2


def test_http_sink_keeping_the_latest_counts_every_post():
    with HttpSink(keep=2) as sink:
        for n in range(4):
            assert send(sink.url(f"c{n}"), f"message {n}", "body")

        assert sink.total == 4
        assert [(r.path, r.title) for r in sink.latest(5)] == [
            ("/c3", "message 3"),
            ("/c2", "message 2"),
        ]


def test_http_sink_takes_the_arrival_time_before_its_slow_reply():
    arrivals = []
    with HttpSink(delay_s=0.5, on_receive=arrivals.append) as sink:
        started = time.time()
        assert send(sink.url(), "slow", "reply")
        replied = time.time()

    [arrival] = arrivals
    assert started <= arrival.at <= replied - 0.4


def test_smtp_sink_keeps_subject_body_and_headers():
    with SmtpSink() as sink:
        assert send(sink.url("ann@example.com"), "Hallway offline", "since 10:02")

        assert sink.received() == [("Hallway offline", "since 10:02")]
        [(_, message)] = sink.messages
        assert message["to"] == "ann@example.com"
        assert sink.by_path() == {"ann@example.com": [("Hallway offline", "since 10:02")]}


@pytest.mark.parametrize("kind", ["http", "smtp"])
def test_sink_process_reports_arrivals_with_the_device_ids_they_name(kind):
    sink = SinkProcess(kind).start()
    try:
        assert send(sink.url, "dev-000001 offline", "and dev-000002, dev-000001")
        assert send(sink.url_for("bob@example.com" if kind == "smtp" else "bob"), "t", "x")

        got = []
        wait_until(lambda: got.extend(sink.drain()) or len(got) >= 2, timeout=10)
        assert [a.device_ids for a in got] == [("dev-000001", "dev-000002"), ()]
        assert got[1].path == ("bob@example.com" if kind == "smtp" else "/bob")
        assert sink.drain() == []  # each arrival is drained once
        assert sink.arrived == got
    finally:
        sink.stop()
