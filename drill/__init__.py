"""The fault drill, a system test: a simulated fleet, faults injected one after
another, then checks. `python -m drill` runs it; tests/test_drill.py runs a small one in the
default test run.

Everything runs on 127.0.0.1: private Mosquittos as production runs them for a large fleet,
edge brokers that the devices connect to (each simulator process to one edge, an even share
of the fleet on each; by default one edge per 19,000 devices and at least two) bridged at
QoS 1 on persistent sessions to a core broker that the services read (harness/bridges.py;
`--edges 0`: one broker for all), persistence on, restarted on the same ports; on each edge
the deploy's device security (a login per device, use_username_as_clientid,
deploy/mosquitto/edge-acl); a fresh
database on FLEETWATCH_BENCH_DATABASE_URL (default the local server), an HTTP
sink for every customer's json:// channel, simulator processes (~10,000 devices each), and
the processes under test as production runs them: `.venv/bin/fleetwatch ingest`, `monitor`
and `alerts`, configured by FLEETWATCH_* variables.

    setup ─ fleet online ─ warm-up ─┬─ 1 core broker restart (down long enough for a blind
                                    │    spot; the edges queue what their devices send)
                                    ├─ 2 edge broker restart (its devices wait and reconnect)
                                    ├─ 3 database connections cut (pg_terminate_backend)
                                    ├─ 4 kill -9 ingest, start it again
                                    ├─ 5 kill -9 monitor, start it again
                                    ├─ 6 kill -9 dispatcher, start it again
                                    ├─ 7 two of each process
                                    └─ 8 back to one (SIGTERM the second ones)
                                    ─ settle ─ stop ─ checks ─ one line of JSON

A known set of devices falls silent at moments the drill picks: half spread over the run,
half in cohorts whose deadlines fall on the steps (the dispatcher's cohort is being sent
when it is killed). Devices' offline deadlines are scaled with the fleet's time, as in the
demo, and the monitor's timings follow from them (`plan_timings`).

Checks, from the simulators' record of what the broker acknowledged (PUBACK), the sink's
record of what arrived, and the database:
- every heartbeat the broker acknowledged at QoS 1 is stored exactly once;
- every silent device got exactly one offline incident and its owner exactly one offline
  message; no device that kept beating was declared offline; none at all during a blind spot,
  and the broker outage did open one;
- the outbox ends empty, every notification sent, each received once (a second copy only
  where the delivery log shows an attempt cut before its record, as the README allows);
- each process's memory at its end is within 20% of its own after warm-up (for a dispatcher
  or monitor, warm means after its first send or health run as well).

The machine is part of the result: the report says how late the simulators were to send
(`machine`), and a fleet one broker process cannot hold here (one descriptor per device,
`ulimit -Hn`) is refused before anything starts (exit 2). `topology` says how the devices
were spread over the edges and what an edge's restart cost: how long until its devices were
all connected again, and how many heartbeats they did not send meanwhile (a device does not
keep a heartbeat it could not send; what the edge had acknowledged is checked like every
other acknowledged heartbeat).

    __main__.py    the command line
    plan.py        configuration, scaled timings, which devices fall silent when (pure)
    run.py         the run: setup, fleet, warm-up, the steps, settle, wind down
    processes.py   the processes under test, killed and restarted; their memory and CPU
    simulators.py  simulator processes recording every heartbeat the broker acknowledged
    checks.py      the verdicts, from that evidence and the database

The broker, the sink and the fleet's registration come from the harness (harness/).
"""
