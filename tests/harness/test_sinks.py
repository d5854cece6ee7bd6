"""harness.sinks: what Apprise sends arrives, in a thread and in a child process."""

from __future__ import annotations

import time

import apprise
import pytest
import requests
from support import wait_until

from harness.sinks import HttpSink, NtfySink, SinkProcess, SmtpSink


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


def test_ntfy_sink_publishes_what_apprises_ntfy_plugin_posts():
    with NtfySink() as sink:
        url = sink.url("fw-ann") + "&priority=high&click=https://fleet.example.com/my/"
        assert send(url, "Hallway offline", "since 10:02")
        pushed = sink.latest_push()
        assert (pushed.topic, pushed.title, pushed.message) == (
            "fw-ann",
            "Hallway offline",
            "since 10:02",
        )
        assert pushed.priority == 4 and pushed.click == "https://fleet.example.com/my/"
        assert sink.by_path() == {"/fw-ann": [("Hallway offline", "since 10:02")]}


def test_ntfy_sink_takes_a_put_to_the_topic_with_headers_and_answers_as_ntfy():
    with NtfySink() as sink:
        base = f"http://127.0.0.1:{sink.port}"
        answer = requests.put(
            f"{base}/fw-bob", data=b"since 10:03", headers={"Title": "Garage", "p": "5"}, timeout=5
        )
        assert answer.status_code == 200
        assert answer.json() | {"id": "", "time": 0} == {
            "id": "",
            "time": 0,
            "event": "message",
            "topic": "fw-bob",
            "title": "Garage",
            "message": "since 10:03",
            "priority": 5,
        }
        # ntfy's own refusals, and nothing published for them.
        bad = requests.post(f"{base}/fw-bob", data=b"x", headers={"X-Priority": "9"}, timeout=5)
        assert (bad.status_code, bad.json()["error"]) == (400, "invalid priority")
        assert requests.post(f"{base}/", data=b"{not json", timeout=5).status_code == 400
        assert sink.total == 1


def test_ntfy_sink_with_a_token_refuses_a_publish_without_it():
    with NtfySink(token="tk_sinktoken0123456789") as sink:
        assert not send(sink.url("fw").replace("tk_sinktoken0123456789", "tk_wrong"), "t", "b")
        assert send(sink.url("fw"), "t", "b")
        assert sink.total == 1
        assert sink.latest_push().authorization == "Bearer tk_sinktoken0123456789"
