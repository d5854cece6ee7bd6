"""The MQTT contract between devices and the service, version 1.1: what both sides must agree on.

    device ── heartbeat, status, ota ──> broker ──> ingest
    device <───────────── cmd ────────── broker <── campaign runner

    topics.py     every topic: a device's four, the ingest's own, its subscriptions; a parser
    messages.py   heartbeats, statuses, update reports: the records the ingest parses them
                  into (rejection reasons included), and the encoders devices build them with
    commands.py   the update command: built by the runner, read by a device
    ids.py        the device-id pattern, the one copy Python has
    deadline.py   when a silent device is overdue: the `overdue_at` the ingest stores,
                  with an announced sleep and the model's active hours

The ingest, the campaign runner, the API, the registry, the simulator and the tests use it.
The SQL keeps two copies of its rules, held to these by tests/contract: the device-id CHECK
of the migrations, and the deadline computed in ingest/writer.py. Everything here is pure.

Version 1.1 (additive: a version 1 device keeps working unchanged) adds the heartbeat's
optional `next_checkin_s`, the sleep a device announces (1 s to 7 days).
"""

VERSION = "1.1"
