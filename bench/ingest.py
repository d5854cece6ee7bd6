"""Ingest throughput against a bare paho subscriber, drained from the same kind of backlog.

    .venv/bin/python bench/ingest.py [--messages 200000] [--devices 10000]

Then, unless --scale-out 0, several ingest processes drain one more backlog together
through their shared subscription: the way to go past one Python process.

Both runs drain a backlog that was queued on a private Mosquitto while they were away, so
the (slow, Python) publishers are not what is measured: first a bare MQTT 5 subscriber
(Receive Maximum 65,535, acknowledging at once), then the real ingest, acknowledging each
message only after its batch is committed. Prints figures, then one line of JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import paho.mqtt.client as mqtt
import psycopg

from bench.common import bench_database, publish_backlog
from core.mqtt import connect_client, make_client
from core.settings import Settings
from devices.registry import import_devices
from harness.mosquitto import Mosquitto
from ingest.service import Ingest

PREFIX = "bench"
# Separate groups: Mosquitto keeps routing shares to an offline member of a group.
BARE_GROUP, INGEST_GROUP, SCALE_GROUP = "bench-bare", "bench-ingest", "bench-scale"


def bare_drain(broker: Mosquitto, total: int, devices: int, publishers: int) -> float:
    """Messages per second a bare paho subscriber drains from a queued backlog."""
    target = Settings(mqtt_url=broker.url(user="bench")).mqtt_target()
    topic = f"$share/{BARE_GROUP}/{PREFIX}/+/heartbeat"
    received = 0
    done = threading.Event()

    def on_message(client, userdata, msg):
        nonlocal received
        client.ack(msg.mid, msg.qos)
        received += 1
        if received >= total:
            done.set()

    def session(subscribe: bool, persistent: bool = True) -> mqtt.Client:
        client = make_client(target, "bench-bare", persistent=persistent, manual_ack=True)
        client.on_message = on_message
        connected = threading.Event()
        client.on_connect = lambda c, u, f, rc, p: (
            subscribe and c.subscribe(topic, 1),
            connected.set(),
        )
        connect_client(client, target, persistent=persistent)
        client.loop_start()
        connected.wait(10)
        return client

    client = session(subscribe=True)
    time.sleep(0.5)
    client.disconnect()
    client.loop_stop()
    took = publish_backlog(broker.port, PREFIX, devices, total, publishers)
    print(f"backlog for the bare subscriber published in {took:.1f} s", flush=True)
    started = time.perf_counter()
    client = session(subscribe=False)
    if not done.wait(600):
        raise SystemExit(f"bare subscriber got only {received} of {total}")
    elapsed = time.perf_counter() - started
    client.disconnect()
    client.loop_stop()
    forget = session(subscribe=False, persistent=False)  # ends the persistent session
    forget.disconnect()
    forget.loop_stop()
    return total / elapsed


def ingest_drain(
    broker: Mosquitto, dsn: str, total: int, devices: int, publishers: int
) -> tuple[float, Ingest]:
    """Heartbeats per second the ingest commits from the same kind of backlog."""
    settings = Settings(
        database_url=dsn,
        mqtt_url=broker.url(user="bench"),
        topic_prefix=PREFIX,
        ingest_client_id="bench-ingest",
        ingest_shared_group=INGEST_GROUP,
    )
    Ingest(settings, dsn, settings.mqtt_target()).start().stop()
    took = publish_backlog(broker.port, PREFIX, devices, total, publishers)
    print(f"backlog for the ingest published in {took:.1f} s", flush=True)
    started = time.perf_counter()
    ingest = Ingest(settings, dsn, settings.mqtt_target()).start()
    deadline = started + 600
    while ingest.counters.stored + ingest.counters.duplicates < total:
        if time.perf_counter() > deadline:
            raise SystemExit(f"ingest stored only {ingest.counters.stored} of {total}")
        time.sleep(0.01)
    elapsed = time.perf_counter() - started
    ingest.stop()
    return total / elapsed, ingest


def _ingest_process(dsn: str, url: str, client_id: str, go, done) -> None:
    settings = Settings(
        database_url=dsn,
        mqtt_url=url,
        topic_prefix=PREFIX,
        ingest_client_id=client_id,
        ingest_shared_group=SCALE_GROUP,
    )
    if go is None:  # only leave a persistent session in the group
        Ingest(settings, dsn, settings.mqtt_target()).start().stop()
        return
    go.wait()
    ingest = Ingest(settings, dsn, settings.mqtt_target()).start()
    done.wait()
    ingest.stop()


def scale_out_drain(
    broker: Mosquitto, dsn: str, total: int, devices: int, publishers: int, processes: int
) -> float:
    """Heartbeats per second committed by several ingest processes sharing one subscription."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE heartbeats")
        for i in range(processes):
            _ingest_process(dsn, broker.url(user="bench"), f"bench-scale-{i}", None, None)
        took = publish_backlog(broker.port, PREFIX, devices, total, publishers)
        print(f"backlog for {processes} ingest processes published in {took:.1f} s", flush=True)
        go, done = multiprocessing.Event(), multiprocessing.Event()
        procs = [
            multiprocessing.Process(
                target=_ingest_process,
                args=(dsn, broker.url(user="bench"), f"bench-scale-{i}", go, done),
            )
            for i in range(processes)
        ]
        for proc in procs:
            proc.start()
        time.sleep(1.0)  # let them import and settle; the clock starts at the signal
        started = time.perf_counter()
        go.set()
        while conn.execute("SELECT count(*) FROM heartbeats").fetchone()[0] < total:
            if time.perf_counter() - started > 600:
                raise SystemExit("scale-out ingest did not finish in 600 s")
            time.sleep(0.1)
        elapsed = time.perf_counter() - started
        done.set()
        for proc in procs:
            proc.join(60)
    return total / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--publishers", type=int, default=2)
    parser.add_argument(
        "--scale-out",
        type=int,
        default=2,
        help="also drain with this many ingest processes on one shared subscription (0: skip)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    dsn = bench_database("fleetwatch_bench_ingest")
    with psycopg.connect(dsn, autocommit=True) as conn:
        report = import_devices(
            conn, [{"id": f"dev-{i:05d}", "model_id": "thermostat-v2"} for i in range(args.devices)]
        )
        assert report.ok, report.errors[:3]
    # In memory, no queue limits: a backlog of any size waits for the ingest.
    broker = Mosquitto(max_queued_messages=0, max_inflight_messages=0).start()
    try:
        bare = bare_drain(broker, args.messages, args.devices, args.publishers)
        print(f"bare paho subscriber: {bare:,.0f} messages/s", flush=True)
        rate, ingest = ingest_drain(broker, dsn, args.messages, args.devices, args.publishers)
        print(
            f"ingest (acks held until commit): {rate:,.0f} heartbeats/s committed "
            f"({ingest.counters.batches} batches, slowest {ingest.counters.max_batch_ms:.0f} ms, "
            f"at most {ingest.counters.backlog_peak:,} messages held)"
        )
        with psycopg.connect(dsn) as conn:
            stored = conn.execute("SELECT count(*) FROM heartbeats").fetchone()[0]
        scaled = 0.0
        if args.scale_out:
            scaled = scale_out_drain(
                broker, dsn, args.messages, args.devices, args.publishers, args.scale_out
            )
            print(f"{args.scale_out} ingest processes: {scaled:,.0f} heartbeats/s committed")
    finally:
        broker.close()
    print(f"stored {stored} of {args.messages}; ratio ingest/bare {rate / bare:.2f}")
    print(
        json.dumps(
            {
                "bench": "ingest",
                "messages": args.messages,
                "devices": args.devices,
                "bare_subscriber_per_s": round(bare),
                "ingest_committed_per_s": round(rate),
                "ratio": round(rate / bare, 3),
                "stored": stored,
                # Most messages the ingest held at once (FLEETWATCH_INGEST_RECEIVE_MAXIMUM).
                "ingest_backlog_peak": ingest.counters.backlog_peak,
                "scale_out_processes": args.scale_out,
                "scale_out_committed_per_s": round(scaled),
                "beside": "mosquitto and postgresql on the same 2 cores; publishers idle",
            }
        )
    )


if __name__ == "__main__":
    main()
