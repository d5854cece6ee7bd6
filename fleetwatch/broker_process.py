"""The embedded broker's own process: `python -m fleetwatch.broker_process PORT`.

amqtt is pure Python; in the process that also runs the ingest, a simulated fleet and the
monitor it shares one GIL and falls behind at a thousand devices. Alone it keeps up.
It exits when its parent does, so it is never left behind.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

from core.logs import setup_logging
from fleetwatch.embedded import EmbeddedBroker


def main() -> None:
    port = int(sys.argv[1])
    parent = os.getppid()
    setup_logging("WARNING")
    broker = EmbeddedBroker(port).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print("ready", flush=True)
    # Re-parented (to init) means the parent died without stopping us.
    while not stop.wait(1.0) and os.getppid() == parent:
        pass
    broker.stop()


if __name__ == "__main__":
    main()
