"""A safety recall to a large fleet: from the campaign's start to its last message at a sink.

    .venv/bin/python bench/recall.py [--owners 100000] [--workers 16] [--dispatchers 1]
        [--processes] [--baseline 30000] [--timeout 1800]

Registers `--owners` owners, each with one car (a VIN of its own) and three channels:
email to a real SMTP server, push to a local ntfy server and a webhook to an HTTP sink
(harness/sinks.py, each in its own process). SMS is left out: SMS goes only to providers at
their own hosts (alerts/outbound.py), which no local sink can stand in for.

Then creates a safety-critical recall of every car (remedy: a service visit, so that the
figures are the notices' alone, with no update commands beside them), starts the real
campaign runner and the real alerts process (router and dispatcher), and waits until every
owner's notice has reached all three sinks, each named by its VIN. Figures: time from the
start to the runner's notices recorded, to the last message at a sink, and messages per
second over that; beside them, in the same run, a bare Apprise sender (alerts/send.py's
AppriseSender, no database) sending `--baseline` of the same messages to the same sinks from
a thread pool of the same size. Prints figures, then one line of JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg

from alerts.context import DeviceInfo, device_context
from alerts.render import render
from alerts.send import AppriseSender
from bench.alerts import SINK_NETWORK, Dispatchers
from bench.common import bench_database, code_version
from campaigns.readings import CAMPAIGN_BY_ID, campaign_from_row
from campaigns.recall import recall_context
from campaigns.runner import CampaignRunner
from campaigns.store import CampaignCreate, create_campaign
from core.settings import Settings
from harness.sinks import SinkProcess

VIN = re.compile(r"\bBENCH\d{12}\b")
# Each owner's channels, and the sink each goes to.
KINDS = (("email", "smtp"), ("push", "ntfy"), ("webhook", "http"))
STALL_S = 120

_REGISTER = [
    """
INSERT INTO customers (id, name, timezone)
SELECT 'own-' || lpad(i::text, 6, '0'), 'Owner ' || i,
       (ARRAY['Europe/Berlin', 'America/New_York', 'Asia/Tokyo', 'UTC'])[1 + i %% 4]
FROM generate_series(0, %(owners)s - 1) AS i
""",
    """
INSERT INTO contact_channels (customer_id, kind, apprise_url, label, verified_at)
SELECT c.id, k.kind, k.url, 'bench ' || k.kind, now()
FROM customers c
CROSS JOIN unnest(%(kinds)s::text[], %(urls)s::text[]) AS k(kind, url)
""",
    """
INSERT INTO devices (id, model_id, name, vin, firmware, customer_id, timezone, region)
SELECT 'car-' || lpad(i::text, 6, '0'), 'car-telematics-v1', 'Family car',
       'BENCH' || lpad(i::text, 12, '0'), '2.4.1', 'own-' || lpad(i::text, 6, '0'),
       (ARRAY['Europe/Berlin', 'America/New_York', 'Asia/Tokyo', 'UTC'])[1 + i %% 4],
       (ARRAY['eu-west', 'us-east', 'ap-north', 'eu-north'])[1 + i %% 4]
FROM generate_series(0, %(owners)s - 1) AS i
""",
    """
INSERT INTO device_state (device_id, status, status_changed_at, last_seen_at,
                          last_received_at, overdue_at, firmware)
SELECT id, 'online', now() - interval '1 hour', now(), now(), now() + interval '1 day',
       firmware
FROM devices
""",
]

RECALL = {
    "name": "Recall 26V-101: brake assist software",
    "kind": "safety_recall",
    "remedy": "service_visit",
    "fixed_in": ">=5.1.0",
    "target": {"models": ["car-telematics-v1"]},
    "safe_to_use": False,
    "safety_critical": True,
    "avoid": "driving until it is fixed",
    "instructions": "Book a free visit at your dealer: example.com/recall.",
    "waves": [100],
}


class TimedRunner(CampaignRunner):
    """The real campaign runner, remembering when each tick that recorded notices ended."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.notices_done_at: float | None = None

    def tick(self, now=None):
        report = super().tick(now)
        if report.notices and self.notices_done_at is None:
            self.notices_done_at = time.time()
        return report


def register(dsn: str, owners: int, urls: dict[str, str]) -> None:
    """Owners, each with a car and one channel per URL (by kind)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        with conn.transaction():
            params = {
                "owners": owners,
                "kinds": list(urls),
                "urls": list(urls.values()),
            }
            for statement in _REGISTER:
                conn.execute(statement, params)
        conn.execute("VACUUM ANALYZE")


def wait_all(sinks: dict[str, SinkProcess], owners: int, timeout_s: float) -> dict[str, float]:
    """Wait until every VIN reached every sink; the last arrival at each sink."""
    seen = {kind: set() for kind in sinks}
    last = dict.fromkeys(sinks, 0.0)
    deadline = time.monotonic() + timeout_s
    progress = time.monotonic()
    while any(len(s) < owners for s in seen.values()):
        now = time.monotonic()
        # Nothing for two minutes: the run is broken (no verified channel, a dead
        # dispatcher), not slow; say so rather than wait out the timeout.
        if now > deadline or now - progress > STALL_S:
            missing = {k: owners - len(s) for k, s in seen.items()}
            why = "timed out" if now > deadline else f"nothing arrived for {STALL_S} s"
            raise SystemExit(f"messages never arrived ({why}): {missing}")
        for kind, sink in sinks.items():
            for arrival in sink.drain(wait_s=0.05):
                found = VIN.findall(f"{arrival.title}\n{arrival.message}")
                seen[kind].update(found)
                if found:
                    last[kind] = max(last[kind], arrival.at)
                    progress = time.monotonic()
            sink.arrived.clear()  # what drain keeps: 100,000s of messages add up
    return last


def baseline(dsn: str, campaign_id: int, sinks, urls, count: int, workers: int) -> dict:
    """The same notices (as the dispatcher renders them) straight from Apprise to the same
    sinks from a thread pool of the same size: messages per second."""
    with psycopg.connect(dsn) as conn:
        campaign = campaign_from_row(conn.execute(CAMPAIGN_BY_ID, (campaign_id,)).fetchone())
    per_kind = max(1, count // len(urls))
    messages = []
    for i in range(per_kind):
        info = DeviceInfo(
            f"car-{i:06d}", "Family car", None, f"BENCH{10**11 + i:012d}", "car",
            "Car telematics unit v1", False, f"own-{i:06d}", f"Owner {i}", "UTC",
        )  # fmt: skip
        context = {
            **device_context(info, since=datetime.now(UTC)),
            **recall_context(campaign, "UTC", "bench-token-0123456789", "https://fleet.example"),
            "urgent": True,
        }
        for kind in urls:
            messages.append((kind, render("safety_recall", context, kind)))
    sender = AppriseSender(
        allowed_networks=Settings(alerts_allowed_networks=SINK_NETWORK).allowed_networks()
    )
    for kind, message in messages[: len(urls)]:
        sender.send(urls[kind], message)  # loads Apprise's plugins, as a running sender has
    time.sleep(1)
    for sink in sinks.values():
        sink.drain(wait_s=1)
        sink.arrived.clear()
    with ThreadPoolExecutor(workers) as pool:
        started = time.time()
        results = list(pool.map(lambda km: sender.send(urls[km[0]], km[1]), messages))
    failed = [r.error for r in results if not r.ok]
    assert not failed, failed[:3]
    last = started
    want = dict.fromkeys(urls, per_kind)
    got = dict.fromkeys(want, 0)
    deadline = time.monotonic() + 120
    while got != want and time.monotonic() < deadline:
        for kind, sink in sinks.items():
            for arrival in sink.drain(wait_s=0.05):
                if VIN.search(f"{arrival.title}\n{arrival.message}"):
                    got[kind] += 1
                    last = max(last, arrival.at)
            sink.arrived.clear()
    took = last - started
    return {"messages": len(messages), "seconds": round(took, 2), "per_s": len(messages) / took}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--owners", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--dispatchers", type=int, default=1)
    parser.add_argument("--processes", action="store_true", help="each dispatcher a process")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--tick", type=float, default=0.5)
    parser.add_argument("--baseline", type=int, default=30_000)
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument(
        "--channels",
        default="email,push,webhook",
        help="which of each owner's channels (email is the slowest: one SMTP session per message)",
    )
    args = parser.parse_args()
    chosen = set(args.channels.split(","))
    kinds = tuple((kind, sink) for kind, sink in KINDS if kind in chosen)
    if not kinds or chosen - {kind for kind, _ in KINDS}:
        parser.error("--channels takes email, push and webhook")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")

    dsn = bench_database("fleetwatch_bench_recall")
    sinks = {kind: SinkProcess(sink).start() for kind, sink in kinds}
    paths = {"email": "owner@example.com", "push": "recall", "webhook": "recall"}
    urls = {kind: sinks[kind].url_for(paths[kind]) for kind in sinks}
    try:
        t = time.monotonic()
        register(dsn, args.owners, urls)
        registered_s = time.monotonic() - t
        overrides = {
            "database_url": dsn,
            "campaigns_tick_s": args.tick,
            "alerts_workers": args.workers,
            "alerts_batch_size": args.batch_size,
            "alerts_allowed_networks": SINK_NETWORK,
            # One message per channel here; the hourly cap is not what is measured.
            "alerts_rate_limit_per_hour": 1000,
        }
        settings = Settings(**overrides)
        with psycopg.connect(dsn, autocommit=True) as conn:
            campaign_id, targeted = create_campaign(
                conn,
                CampaignCreate.model_validate(RECALL),
                created_by="bench",
                now=datetime.now(UTC),
            )
        assert targeted == args.owners, targeted
        senders = Dispatchers(overrides, dsn, args.dispatchers, processes=args.processes)
        senders.start()
        started = time.time()
        runner = TimedRunner(settings, dsn, None, publish=lambda topic, payload: None).start()
        try:
            last = wait_all(sinks, args.owners, args.timeout)
        finally:
            runner.stop()
            senders.stop()
        with psycopg.connect(dsn) as conn:
            # The router stamps its batches with the database's clock, on this machine.
            routed_at = conn.execute(
                "SELECT extract(epoch FROM max(routed_at)) FROM notices WHERE campaign_id = %s",
                (campaign_id,),
            ).fetchone()[0]
        messages = args.owners * len(kinds)
        end = max(last.values())
        base = baseline(dsn, campaign_id, sinks, urls, args.baseline, args.workers)
    finally:
        for sink in sinks.values():
            sink.stop()
    result = {
        "bench": "recall",
        "owners": args.owners,
        "channels": list(urls),
        "messages": messages,
        "workers": args.workers,
        "dispatchers": args.dispatchers,
        "dispatcher_processes": args.processes,
        "registered_s": round(registered_s, 1),
        "notices_recorded_s": round(runner.notices_done_at - started, 2),
        "all_routed_s": round(float(routed_at) - started, 2),
        "last_message_s": round(end - started, 2),
        "last_by_channel_s": {k: round(v - started, 2) for k, v in last.items()},
        "messages_per_s": round(messages / (end - started), 1),
        "bare_apprise": {k: round(v, 2) if isinstance(v, float) else v for k, v in base.items()},
        "code": code_version("campaigns", "alerts"),
    }
    print(f"{args.owners} owners x {len(kinds)} channels ({args.channels}) = {messages} messages")
    print(f"  notices recorded by the runner's first tick: +{result['notices_recorded_s']} s")
    print(f"  all routed to the outbox:                   +{result['all_routed_s']} s")
    print(f"  last message at a sink:                     +{result['last_message_s']} s")
    print(f"  through the product: {result['messages_per_s']} messages/s")
    print(f"  bare Apprise, same sinks and pool: {base['per_s']:.1f} messages/s")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
