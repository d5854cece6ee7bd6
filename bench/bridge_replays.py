"""How many times a Mosquitto bridge sends its retained statuses again after a core outage.

    .venv/bin/python bench/bridge_replays.py [--statuses 1000] [--down 20]
                                             [--restart-timeouts "1,5 2,30 10,10"]

One edge bridged to a core (harness/bridges.py), `--statuses` devices' retained `online`
on the edge, a persistent MQTT 5 subscriber on the core as the ingest subscribes (retain
handling 1, Retain As Published). The core is stopped for `--down` seconds and started
again; the subscriber counts the statuses that arrive once the bridge is back. Mosquitto
queues every retained message of the bridge's topics again on each connection attempt
(eclipse-mosquitto/mosquitto#2248), so the count is the retained set times the attempts
made during the outage, which the bridge's `restart_timeout` sets. Prints figures, then
one line of JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from harness.bridges import BridgedBrokers
from harness.mosquitto import MOSQUITTO

# After the core is back: long enough for every queued copy to cross (a few thousand
# messages take well under a second); the figure is a count, not a rate.
SETTLE_S = 15


def _client(client_id: str) -> mqtt.Client:
    return mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=5)


def replays(restart_timeout: tuple[int, int], down_s: float, statuses: int) -> dict:
    with (
        tempfile.TemporaryDirectory() as workdir,
        BridgedBrokers(
            Path(workdir), edges=1, prefix="bench", restart_timeout=restart_timeout
        ) as brokers,
    ):
        got: list[bool] = []
        ingest = _client("bench-ingest")
        ingest.on_message = lambda _c, _u, m: got.append(m.retain)
        subscribed = threading.Event()
        ingest.on_subscribe = lambda *_a: subscribed.set()
        options = SubscribeOptions(qos=1, retainHandling=1, retainAsPublished=True)
        ingest.on_connect = lambda c, *_a: c.subscribe("bench/+/status", options=options)
        ingest.reconnect_delay_set(0.2, 1)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        ingest.connect("127.0.0.1", brokers.core.port, clean_start=False, properties=props)
        ingest.loop_start()
        if not subscribed.wait(10):
            raise SystemExit("the subscriber on the core got no SUBACK")
        device = _client("bench-devices")
        device.connect("127.0.0.1", brokers.edges[0].port)
        device.loop_start()
        for n in range(statuses):
            device.publish(f"bench/dev-{n}/status", b"online", qos=1, retain=True)
        device.publish("bench/last/status", b"online", qos=1, retain=True).wait_for_publish(30)
        deadline = time.monotonic() + 30
        while len(got) < statuses + 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        before = len(got)
        brokers.core.stop()
        time.sleep(down_s)
        brokers.core.start()
        time.sleep(SETTLE_S)
        after = len(got) - before
        device.loop_stop()
        ingest.loop_stop()
    retained_set = statuses + 1
    return {
        "restart_timeout": list(restart_timeout),
        "down_s": down_s,
        "retained_set": retained_set,
        "arrived_before": before,
        "arrived_after_restart": after,
        "times_the_retained_set": round(after / retained_set, 1),
        "all_marked_retained": all(got),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--statuses", type=int, default=1000)
    parser.add_argument("--down", type=float, default=20.0, help="seconds the core is down")
    parser.add_argument(
        "--restart-timeouts",
        default="1,5 2,30 10,10",
        help="the bridge's restart_timeout (base,cap) to try, space-separated",
    )
    args = parser.parse_args()
    if MOSQUITTO is None:
        raise SystemExit("needs mosquitto (Debian package: mosquitto)")
    rows = []
    for text in args.restart_timeouts.split():
        base, cap = (int(x) for x in text.split(","))
        row = replays((base, cap), args.down, args.statuses)
        rows.append(row)
        print(
            f"restart_timeout {base} {cap}, core down {args.down:.0f} s: "
            f"{row['arrived_after_restart']:,} statuses arrived after the restart = "
            f"{row['times_the_retained_set']} x the {row['retained_set']:,} retained "
            f"(all marked retained: {row['all_marked_retained']})",
            flush=True,
        )
    print(json.dumps({"bench": "bridge_replays", "statuses": args.statuses, "runs": rows}))


if __name__ == "__main__":
    main()
