"""One run of the fault drill: set up, connect the fleet, warm up, play the steps, settle,
wind down, check (`drill/__init__.py` says what each is).

    Drill
      |-- harness.bridges.BridgedBrokers  a core Mosquitto for the services and edges for the
      |                                 devices, bridged at QoS 1 on persistent sessions;
      |                                 persistence on: a restart keeps sessions and queues;
      |                                 one listener per simulator on its edge
      |   (or, with edges=0, one harness.mosquitto.Mosquitto for all)
      |-- harness.sinks.SinkProcess     HTTP receiver for every channel, in its own process
      |-- drill.processes.FleetProcess  `.venv/bin/fleetwatch ingest|monitor|alerts`
      '-- drill.simulators.SimulatorProcess   devices.simulator, recording every PUBACK

A listener per simulator process: every device has its own TCP connection, and one
(address, port) pair has only ~28,000 ephemeral ports towards it.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import psycopg
from psycopg import conninfo

from core import db
from devices.simulator.fleet import build_fleet
from drill.checks import Evidence, peek_session, run_checks
from drill.plan import (
    MIN_ALLOWANCE_S,
    ROLES,
    STEP_TITLES,
    DrillConfig,
    plan_silence,
    plan_timings,
)
from drill.processes import (
    FLEETWATCH,
    FleetProcess,
    cpu_busy_share,
    cpu_times,
    memory_used_kb,
)
from drill.simulators import SimulatorJob, SimulatorProcess
from harness.bridges import BridgedBrokers
from harness.fleet import model_timings, register_fleet
from harness.mosquitto import MOSQUITTO_PASSWD, SPARE_FDS, Mosquitto, connection_capacity
from harness.sinks import SinkProcess

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
# The edges' device rules, as deployed (their topic prefix replaced by the drill's).
EDGE_ACL = Path(__file__).resolve().parents[1] / "deploy" / "mosquitto" / "edge-acl"
# Every simulated device's password on the edges (the simulator gives all one password).
DEVICE_PASSWORD = "drill-device"  # noqa: S105 - private brokers on 127.0.0.1


def stamp() -> str:
    """Wall-clock time for the drill's step lines."""
    return datetime.now().strftime("%H:%M:%S.%f")[:-3]


# The bridges reconnect as deploy/mosquitto/bridge.conf.example's do (`restart_timeout 2 30`,
# held to it by tests/harness/test_bridges.py): each attempt while the core is down queues
# every retained status of the edge again (bench/bridge_replays.py), so the back-off sets
# how many of them a core restart sends the ingest.
BRIDGE_RESTART_TIMEOUT = (2, 30)


class MachineLimit(RuntimeError):
    """The machine cannot hold the drill asked for; nothing was checked."""


class Drill:
    """One run: set up, connect the fleet, warm up, play the steps, settle, check."""

    def __init__(self, config: DrillConfig, *, echo=print) -> None:
        self.config = config
        self.echo = echo
        self.started = time.monotonic()
        self.workdir = Path(tempfile.mkdtemp(prefix="fw-drill-"))
        self.broker: Mosquitto | None = None  # the one the services use: the core
        self.edges: list[Mosquitto] = []
        self.topology: BridgedBrokers | None = None
        self.edge_restart: dict = {}
        self.sink: SinkProcess | None = None
        self.server = ""
        self.dsn = ""
        self.dbname = ""
        self.procs: dict[str, list[FleetProcess]] = {role: [] for role in ROLES}
        self.sims: list[SimulatorProcess] = []
        self.env: dict[str, str] = {}
        self.events: list[dict] = []  # what the drill did, when (epoch seconds)
        self.monitor_gaps: list[tuple[float, float]] = []
        self._lock = threading.Lock()
        self._sampling = threading.Event()
        # The machine's memory in use, sampled with the processes' (kB), and its total.
        self._memory_used: list[int] = []
        self._memory_total = 0
        self._sampler: threading.Thread | None = None
        self._last_progress = 0.0
        self._cpu_start: list[int] = []
        self.failed_setup: str | None = None

    # -- printing ------------------------------------------------------------------------------

    def say(self, text: str) -> None:
        self.echo(f"[{time.monotonic() - self.started:7.1f} s {stamp()}] {text}", flush=True)

    def event(self, kind: str, **detail) -> None:
        self.events.append({"kind": kind, "at": time.time(), **detail})

    # -- the run -------------------------------------------------------------------------------

    def run(self) -> dict:
        self.keep_logs = True  # unless the drill gets to a verdict of all passed
        try:
            self._setup()
            self._connect_fleet()
            self._warm_up()
            self._play_steps()
            self._settle()
            evidence = self._wind_down()
            report = run_checks(evidence)
            report["topology"] = self._topology_figures()
            report["lines"].append(f"topology: {report['topology']}")
            self.keep_logs = self.config.keep or not report["ok"]
        except MachineLimit:
            self.keep_logs = False
            raise
        except BaseException:
            self.say(f"drill aborted; logs kept in {self.workdir}")
            raise
        finally:
            self._cleanup()
        report["logs"] = str(self.workdir) if self.keep_logs else None
        return report

    def _setup(self) -> None:
        c = self.config
        self.fleet = build_fleet(c.devices, seed=c.seed, fault_share=0.0, id_prefix="drill")
        self._start_brokers()
        self.sink = SinkProcess("http", delay_s=c.sink_delay_s).start()
        self.say(
            f"sink: http://127.0.0.1:{self.sink.port}/<customer id> ({c.sink_delay_s} s replies)"
        )

        self.server = (
            c.database_server or os.environ.get("FLEETWATCH_BENCH_DATABASE_URL") or DEFAULT_SERVER
        )
        self.dbname = f"fleetwatch_drill_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(self.server, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{self.dbname}"')
        self.dsn = conninfo.make_conninfo(self.server, dbname=self.dbname)
        db.migrate(self.dsn)

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            self.timings = plan_timings(model_timings(conn), c.time_scale)
            self.run_s = c.minutes * 60
            self.warm_s = min(60.0, max(8.0, self.run_s * 0.08))
            self.slot_s = (self.run_s - self.warm_s) / (len(c.steps) + 1)
            self.silent = plan_silence(
                self.fleet,
                self.timings,
                steps=c.steps,
                count=c.silent_count,
                warm_s=self.warm_s,
                run_s=self.run_s,
                seed=c.seed,
            )
            # The same deadlines as the plan's: both are harness.fleet.scaled_deadlines.
            register_fleet(
                conn,
                self.fleet,
                time_scale=c.time_scale,
                at_least_s=MIN_ALLOWANCE_S,
                labels={device_id: ["drill:silent"] for device_id in self.silent.due_at},
                # Homes as sites: a broker restart silences them all at once, and must not
                # look like a home losing its internet.
                sites=True,
            )
            conn.execute(
                # Verified at creation, as the operator's channels are (alerts reach
                # verified channels only).
                "INSERT INTO contact_channels (customer_id, kind, apprise_url, label, "
                "verified_at) SELECT id, 'webhook', %s || id, 'drill sink', now() FROM customers",
                (self.sink.url_for(""),),
            )
            conn.execute(
                "INSERT INTO staff_channels (apprise_url, label) VALUES (%s, 'drill staff')",
                (self.sink.url_for("staff"),),
            )
        t = self.timings
        self.say(
            f"database {self.dbname}: {c.devices} devices, {len(self.silent.due_at)} to fall "
            f"silent; deadlines {min(t.offline_after_s.values())}-"
            f"{max(t.offline_after_s.values())} s at time scale {c.time_scale}; blind spot "
            f"after {t.blind_after_s} s, resume grace {t.resume_grace_s} s, lease {t.lease_s} s"
        )
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETWATCH_")}
        self.env.update(
            FLEETWATCH_DATABASE_URL=self.dsn,
            FLEETWATCH_MQTT_URL=self.broker.url(0),
            FLEETWATCH_MQTT_PROTOCOL="5",
            FLEETWATCH_TOPIC_PREFIX="drill",
            FLEETWATCH_INGEST_SHARED_GROUP=c.shared_group,
            FLEETWATCH_MONITOR_BLIND_AFTER_S=str(t.blind_after_s),
            FLEETWATCH_MONITOR_RESUME_GRACE_S=str(t.resume_grace_s),
            # Cohorts of silent devices are no fleet outage: they are to be alerted one by one.
            FLEETWATCH_FLEET_MIN_PCT="50",
            FLEETWATCH_ALERTS_LEASE_S=str(t.lease_s),
            FLEETWATCH_LOG_LEVEL="INFO",
            # The sink listens on 127.0.0.1, where alerts may not go by default: the drill
            # allows loopback, as an operator allows a network of their own.
            FLEETWATCH_ALERTS_ALLOWED_NETWORKS="127.0.0.0/8",
        )
        self._add_process("ingest")
        self._start("ingest", 0)

    def _start_brokers(self) -> None:
        """One broker, or a core and its edges; the edges' share of devices must fit the
        descriptors one process may open here."""
        c = self.config
        per_broker = math.ceil(c.devices / max(1, c.edge_count)) + 10
        capacity = connection_capacity(per_broker)
        if per_broker > capacity:
            where = f"each of {c.edge_count} edge brokers" if c.edge_count else "one broker"
            raise MachineLimit(
                f"{c.devices} devices need {per_broker} connections to {where}, but a "
                f"process here may open at most {capacity + SPARE_FDS} files (ulimit -Hn; "
                f"raising it needs CAP_SYS_RESOURCE): at most {capacity - 10} devices per "
                "broker; add edges (--edges)"
            )
        # As in deploy/mosquitto/mosquitto.conf: big queues for the ingest's session (and,
        # on an edge, for its bridge's session while the core is down).
        queues = {"max_queued_messages": 10_000_000, "max_inflight_messages": 10_000}
        if c.edge_count == 0:
            self.broker = Mosquitto(
                self.workdir / "mosquitto",
                listeners=1 + c.simulator_count,
                persistence=True,
                extra=["persistent_client_expiration 1d"],
                raise_fd_limit=True,
                **queues,
            ).start()
            self.sim_urls = [self.broker.url(1 + i) for i in range(c.simulator_count)]
            self.say(
                f"broker: mosquitto on 127.0.0.1:{self.broker.ports[0]} for the services and "
                f"{c.simulator_count} listener(s) for the simulators; persistence in "
                f"{self.broker.dir}"
            )
            return
        sims_per_edge = math.ceil(c.simulator_count / c.edge_count)
        self.topology = BridgedBrokers(
            self.workdir / "brokers",
            edges=c.edge_count,
            prefix="drill",
            edge_listeners=sims_per_edge,
            core_extra=["persistent_client_expiration 1d"],
            edge_extra=["persistent_client_expiration 1d", *self._edge_security()],
            edge_anonymous=None,
            raise_fd_limit=True,
            restart_timeout=BRIDGE_RESTART_TIMEOUT,
            **queues,
        ).start()
        self.broker, self.edges = self.topology.core, self.topology.edges
        # Each device logs in as its id (the simulator's username), with the drill's password.
        # Each simulator connects from an address of its own (127.0.0.2, ...): paho binds
        # every device's socket, so one address's ~28,000 ephemeral ports would be all the
        # devices the machine could connect (core/settings.py MqttTarget.source).
        self.sim_urls = [
            f"mqtt://device:{DEVICE_PASSWORD}@127.0.0.1:"
            f"{self.edges[c.edge_of(i)].ports[i // c.edge_count]}?source=127.0.0.{2 + i}"
            for i in range(c.simulator_count)
        ]
        self.say(
            f"brokers: core mosquitto on 127.0.0.1:{self.broker.port} for the services; "
            f"{c.edge_count} edge(s) bridged to it at QoS 1 (persistent sessions) on ports "
            f"{', '.join(str(e.port) for e in self.edges)}, {c.simulator_count} simulator(s) "
            f"dealt over them; persistence in {self.topology.workdir}"
        )

    def _edge_security(self) -> list[str]:
        """The edges' logins and ACL as deploy/mosquitto/edge.conf has them: every device
        logs in as its id (one password for the drill's devices, hashed by mosquitto_passwd),
        its session is its login's, and deploy/mosquitto/edge-acl (its prefix the drill's)
        holds it to its own topics."""
        if MOSQUITTO_PASSWD is None:
            raise RuntimeError("the drill's edges need mosquitto_passwd (package mosquitto)")
        passwd = self.workdir / "edge-passwd"
        passwd.write_text("".join(f"{d.device_id}:{DEVICE_PASSWORD}\n" for d in self.fleet))
        subprocess.run([MOSQUITTO_PASSWD, "-U", str(passwd)], check=True, capture_output=True)
        acl = self.workdir / "edge-acl"
        acl.write_text(EDGE_ACL.read_text().replace(" fleet/", " drill/"))
        return [
            "allow_anonymous false",
            "use_username_as_clientid true",
            f"password_file {passwd}",
            f"acl_file {acl}",
        ]

    def _add_process(self, role: str) -> FleetProcess:
        number = len(self.procs[role]) + 1
        env = dict(self.env)
        if role == "ingest":
            env["FLEETWATCH_INGEST_CLIENT_ID"] = f"drill-ingest-{number}"
        proc = FleetProcess(f"{role}-{number}", role, env, self.workdir)
        self.procs[role].append(proc)
        return proc

    def _start(self, role: str, index: int) -> None:
        proc = self.procs[role][index]
        with self._lock:
            proc.start()
        if role == "ingest" and not proc.wait_for_log("subscribed to", 60):
            raise RuntimeError(f"{proc.name} did not subscribe; see {proc.log_path}")
        self.event("start", process=proc.name)
        self.say(f"{proc.name} started (pid {proc.proc.pid})")

    def _connect_fleet(self) -> None:
        c = self.config
        specs = [d.spec for d in self.fleet]
        share = math.ceil(len(specs) / c.simulator_count)
        for i in range(c.simulator_count):
            job = SimulatorJob(
                index=i,
                url=self.sim_urls[i],
                prefix="drill",
                specs=specs[i * share : (i + 1) * share],
                time_scale=c.time_scale,
                ack_path=str(self.workdir / f"acked-{i}.tsv"),
            )
            self.sims.append(SimulatorProcess(job).start())
        self._sampling.set()
        self._sampler = threading.Thread(target=self._sample_loop, daemon=True)
        self._sampler.start()
        longest = max(self.timings.interval_s.values())
        deadline = time.monotonic() + 120 + c.devices / 200 + longest
        self.say(f"{c.simulator_count} simulator process(es) connecting {c.devices} devices")
        connecting = time.monotonic()
        online = 0
        while time.monotonic() < deadline:
            self._housekeeping(progress=False)
            online = self._count("SELECT count(*) FROM device_state WHERE status = 'online'")
            if online == c.devices:
                break
            time.sleep(1)
        else:
            raise RuntimeError(f"only {online} of {c.devices} devices came online")
        connected = sum(s.latest.get("connected", 0) for s in self.sims)
        self.say(f"fleet online: {connected} connected, every device's first heartbeat stored")
        self._cover_reconnect(time.monotonic() - connecting)

    def _cover_reconnect(self, connect_s: float) -> None:
        """Devices come back to a restarted broker no faster than they first connected, and
        that speed does not follow the time scale: the monitor's grace after a broker
        outage must cover it, as an operator sets FLEETWATCH_MONITOR_RESUME_GRACE_S above
        their fleet's reconnect time. (With edges, a core restart disconnects no device and
        an edge's restart one edge's share: covering that share only was tried at 100,000
        devices, and the settle time, which this grace sets, was then shorter than the
        ingest's lag on these 2 cores: the whole fleet's time is kept.)"""
        edges = self.config.edge_count
        needed = math.ceil(1.5 * connect_s)
        if needed <= self.timings.resume_grace_s:
            return
        self.timings = replace(self.timings, resume_grace_s=needed)
        self.env["FLEETWATCH_MONITOR_RESUME_GRACE_S"] = str(needed)
        what = f"the {connect_s:.0f} s to connect" + (f", over {edges} edges" if edges else "")
        self.say(f"resume grace raised to {needed} s: 1.5 x {what}")

    def _warm_up(self) -> None:
        self._add_process("monitor")
        self._add_process("alerts")
        self._start("monitor", 0)
        self._start("alerts", 0)
        self.warm_start = time.time()
        self.warm_end = self.warm_start + self.warm_s
        self._cpu_start = cpu_times()
        silence: list[dict[str, float]] = [{} for _ in self.sims]
        by_sim = {spec.device_id: s.job.index for s in self.sims for spec in s.job.specs}
        self.silent_at = {}
        for device_id, due in self.silent.due_at.items():
            model = self.fleet_by_id[device_id].spec.profile.model_id
            at = (
                self.warm_start
                + due
                - self.timings.offline_after_s[model]
                + self.timings.interval_s[model] / 2
            )
            self.silent_at[device_id] = at
            silence[by_sim[device_id]][device_id] = at
        for sim, plan in zip(self.sims, silence, strict=True):
            sim.silence(plan)
        self.say(
            f"warm-up {self.warm_s:.0f} s; the run is {self.run_s:.0f} s, a step every "
            f"{self.slot_s:.0f} s"
        )
        self._sleep_until(self.warm_end)
        self.say("warm-up over: memory of each process noted")

    @property
    def fleet_by_id(self):
        if not hasattr(self, "_fleet_by_id"):
            self._fleet_by_id = {d.device_id: d for d in self.fleet}
        return self._fleet_by_id

    def _play_steps(self) -> None:
        steps = self.config.steps
        for i, step in enumerate(steps):
            at = self.warm_end + self.slot_s * (i + 0.5)
            self._sleep_until(at)
            late = time.time() - at
            self.say(
                f"step {i + 1}/{len(steps)}: {STEP_TITLES[step]}"
                + (f" ({late:.1f} s late: the step before ran long)" if late > 1 else "")
            )
            self.event("step", step=step)
            getattr(self, f"_step_{step}")()
        self.schedule_end = self.warm_start + self.run_s
        self._sleep_until(self.schedule_end)
        self.say("run over: settling")

    def _step_broker(self) -> None:
        down = self.timings.broker_down_s
        self.broker.stop()
        self.event("broker_down")
        which = "core broker" if self.edges else "broker"
        self.say(f"  {which} stopped (SIGTERM: it saved its sessions); starting it in {down:.0f} s")
        self._sleep_until(time.time() + down)
        self.event("broker_up")  # before start(): devices are accepted as soon as it listens
        self.broker.start()
        self.say(f"  {which} started again on the same ports (start #{self.broker.starts})")

    def _step_edge(self) -> None:
        """Restart the last edge; its devices reconnect to it (each device knows one
        address). Measured: how long until they are all connected again, and how many
        heartbeats they dropped meanwhile (a device does not keep what it cannot send)."""
        c = self.config
        index = c.edge_count - 1
        edge = self.edges[index]
        sims = [s for s in self.sims if c.edge_of(s.job.index) == index]
        devices = sum(len(s.job.specs) for s in sims)
        dropped_before = sum(s.latest.get("heartbeats_dropped", 0) for s in sims)
        down = min(c.restart_gap_s, self.timings.blind_after_s)
        edge.stop()
        stopped = time.time()
        self.event("edge_down", edge=index + 1)
        self.say(
            f"  edge-{index + 1} stopped (SIGTERM), {devices} devices on it; start in {down:.0f} s"
        )
        self._sleep_until(stopped + down)
        edge.start()
        started = time.time()
        self.event("edge_up", edge=index + 1)
        back = None
        while time.time() - started < 60:
            self._housekeeping()
            # Reports come every REPORT_EVERY_S: a reading is at most that late.
            if all(s.latest.get("reported_at", 0) >= started for s in sims) and (
                sum(s.latest.get("connected", 0) for s in sims) == devices
            ):
                back = time.time()
                break
            time.sleep(0.2)
        self.edge_restart = {
            "edge": index + 1,
            "devices": devices,
            "down_s": round(started - stopped, 1),
            "all_reconnected_s": None if back is None else round(back - started, 1),
            "heartbeats_dropped": sum(s.latest.get("heartbeats_dropped", 0) for s in sims)
            - dropped_before,
        }
        self.say(f"  edge-{index + 1} started again: {self.edge_restart}")

    def _step_database(self) -> None:
        for attempt in (1, 2):
            with psycopg.connect(self.server, autocommit=True) as admin:
                cut = admin.execute(
                    "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) "
                    "FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                    (self.dbname,),
                ).fetchone()[0]
            self.say(f"  cut {cut} connection(s) to {self.dbname} (pass {attempt})")
            self._sleep_until(time.time() + 1.0)

    def _kill_and_restart(self, role: str) -> None:
        proc = self.procs[role][0]
        with self._lock:
            proc.kill9()
        self.event("kill", process=proc.name)
        self.say(
            f"  {proc.name} killed (SIGKILL); starting it in {self.config.restart_gap_s:.0f} s"
        )
        self._sleep_until(time.time() + self.config.restart_gap_s)
        self._start(role, 0)

    def _step_ingest(self) -> None:
        self._kill_and_restart("ingest")

    def _step_monitor(self) -> None:
        down = time.time()
        self._kill_and_restart("monitor")
        # A fresh monitor reads its first tick after start-up (imports, migrate check).
        self.monitor_gaps.append((down, time.time() + 5))

    def _step_alerts(self) -> None:
        self._kill_and_restart("alerts")

    def _step_double(self) -> None:
        for role in ROLES:
            self._add_process(role)
            self._start(role, 1)

    def _step_single(self) -> None:
        for role in ROLES:
            proc = self.procs[role][1]
            self.event("stop", process=proc.name)  # SIGTERM: what it gets from now on is left
            with self._lock:
                proc.stop()
            self.say(f"  {proc.name} stopped (SIGTERM)")
            if role == "ingest":
                self._retire_ingest(proc)

    def _retire_ingest(self, proc: FleetProcess) -> None:
        """Scale down as the README says: the stopped ingest's session is emptied and ended."""
        client_id = proc.env["FLEETWATCH_INGEST_CLIENT_ID"]
        done = subprocess.run(
            [FLEETWATCH, "retire-ingest", "--client-id", client_id],
            env=proc.env,
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=120,
        )
        (self.workdir / f"retire-{client_id}.log").write_text(done.stdout + done.stderr)
        if done.returncode:
            raise RuntimeError(f"retire-ingest {client_id} failed: {done.stderr[-500:]}")
        self.event("retire", process=proc.name)
        said = (done.stdout + done.stderr).strip().splitlines()
        self.say(f"  {proc.name} retired: {said[-1] if said else ''}")

    def _settle(self) -> None:
        t = self.timings
        limit = time.time() + t.resume_grace_s + t.lease_s + 60
        wanted = list(self.silent.due_at)
        while time.time() < limit:
            self._housekeeping()
            state = self._settled(wanted)
            if state is True:
                break
            time.sleep(0.5)
        else:
            self.say(f"  not settled within the settle time: {state}")
        self._sleep_until(time.time() + 2)  # the sink's last posts
        if state is True:
            self.say("settled: every silent device found, outbox empty")
        with self._lock:
            for role in ROLES:
                for proc in self.procs[role]:
                    proc.sample()
        self.end_at = time.time()

    def _settled(self, wanted: list[str]) -> bool | str:
        try:
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                found = conn.execute(
                    "SELECT count(DISTINCT device_id) FROM incidents WHERE scope = 'device' "
                    "AND kind = 'offline' AND device_id = ANY(%s)",
                    (wanted,),
                ).fetchone()[0]
                waiting = conn.execute(
                    "SELECT count(*) FROM notifications "
                    "WHERE status IN ('pending', 'sending', 'held')"
                ).fetchone()[0]
                unrouted = conn.execute(
                    "SELECT count(*) FROM notices WHERE routed_at IS NULL"
                ).fetchone()[0]
        except psycopg.OperationalError as exc:
            return f"database: {exc}"
        if found == len(wanted) and waiting == 0 and unrouted == 0:
            return True
        return (
            f"{found}/{len(wanted)} silent devices found, {waiting} in the outbox, "
            f"{unrouted} events to route"
        )

    def _wind_down(self) -> Evidence:
        self._sampling.clear()
        with self._lock:
            for role in ("monitor", "alerts"):
                for proc in self.procs[role]:
                    proc.stop()
        self.say("monitor and dispatcher stopped; stopping the simulators")
        finals = [sim.stop() for sim in self.sims]
        self.say("simulators stopped; waiting for the ingest to store what it was sent")
        self._wait_ingest_drained()
        stranded = self._stranded_in_retired_sessions()
        with self._lock:
            for proc in self.procs["ingest"]:
                proc.stop()
        self.sink.drain()
        posts = list(self.sink.arrived)
        return Evidence(
            config=self.config,
            timings=self.timings,
            dsn=self.dsn,
            ack_files=[Path(s.job.ack_path) for s in self.sims],
            simulators=finals,
            posts=posts,
            silent=self.silent,
            silent_at=self.silent_at,
            offline_after={
                d.device_id: self.timings.offline_after_s[d.spec.profile.model_id]
                for d in self.fleet
                if d.device_id in self.silent.due_at
            },
            instances={proc.name: proc.instances for role in ROLES for proc in self.procs[role]},
            warm_end=self.warm_end,
            proc_warm_s=min(self.warm_s, self.slot_s / 2),
            events=self.events,
            monitor_gaps=self.monitor_gaps,
            cpu_busy=cpu_busy_share(self._cpu_start, cpu_times()),
            memory_used_kb=self._memory_used,
            memory_total_kb=self._memory_total,
            run_window=(self.warm_start, self.end_at),
            stranded=stranded,
            warnings={
                proc.name: proc.log_count(" ERROR ") for role in ROLES for proc in self.procs[role]
            },
        )

    def _wait_ingest_drained(self, quiet_s: float = 3.0, limit_s: float = 120.0) -> None:
        last, since = None, time.monotonic()
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            total = self._count("SELECT coalesce(sum(messages_total), 0) FROM ingest_status")
            if total != last:
                last, since = total, time.monotonic()
            elif time.monotonic() - since >= quiet_s:
                return
            time.sleep(0.5)

    def _stranded_in_retired_sessions(self) -> dict[str, int]:
        """Messages waiting in the sessions of ingest processes stopped for good (counted, not
        acknowledged: a peek as the same client id, leaving the session as it was)."""
        retired = [p for p in self.procs["ingest"][1:] if not p.alive]
        return {
            p.env["FLEETWATCH_INGEST_CLIENT_ID"]: peek_session(
                self.broker.port, p.env["FLEETWATCH_INGEST_CLIENT_ID"]
            )
            for p in retired
        }

    def _topology_figures(self) -> dict:
        c = self.config
        return {
            "edges": c.edge_count,
            "devices_per_edge": [
                sum(len(s.job.specs) for s in self.sims if c.edge_of(s.job.index) == e)
                for e in range(c.edge_count)
            ],
            "edge_restart": self.edge_restart or None,
        }

    # -- while it runs -------------------------------------------------------------------------

    def _sample_loop(self) -> None:
        while self._sampling.is_set():
            with self._lock:
                for role in ROLES:
                    for proc in self.procs[role]:
                        proc.sample()
            used, self._memory_total = memory_used_kb()
            self._memory_used.append(used)
            time.sleep(1.0)

    def _sleep_until(self, moment: float) -> None:
        while (left := moment - time.time()) > 0:
            time.sleep(min(0.5, left))
            self._housekeeping()

    def _housekeeping(self, progress: bool = True) -> None:
        self.sink.drain()
        for sim in self.sims:
            sim.poll()
            failure = sim.latest.get("failure")
            if failure:
                raise RuntimeError(f"simulator {sim.job.index} failed: {failure}")
        every = self.config.progress_every_s or max(10.0, self.run_s / 20)
        if progress and time.monotonic() - self._last_progress >= every:
            self._last_progress = time.monotonic()
            self._progress()

    def _progress(self) -> None:
        s = [sim.latest for sim in self.sims]
        total = {
            k: sum(x.get(k, 0) for x in s)
            for k in ("connected", "acked", "heartbeats_dropped", "connections_lost", "unacked")
        }
        skipped = sum(x.get("lateness", {}).get("skipped", 0) for x in s)
        try:
            with psycopg.connect(self.dsn, autocommit=True, connect_timeout=3) as conn:
                stored, offline, outbox, blind = conn.execute(
                    "SELECT (SELECT coalesce(sum(stored_total), 0) FROM ingest_status), "
                    "(SELECT count(*) FROM incidents WHERE scope = 'device' AND kind = 'offline'),"
                    " (SELECT count(*) FROM notifications WHERE status IN ('pending', 'sending')),"
                    " (SELECT count(*) FROM incidents WHERE kind = 'blind_spot' "
                    "AND status <> 'resolved')"
                ).fetchone()
            db_part = f"stored {stored}, offline incidents {offline}, outbox {outbox}" + (
                ", BLIND SPOT open" if blind else ""
            )
        except psycopg.OperationalError:
            db_part = "database unreachable"
        self.say(
            f"  fleet: {total['connected']} connected, {total['acked']} heartbeats acked "
            f"({total['unacked']} awaiting PUBACK, {total['heartbeats_dropped']} dropped "
            f"offline, {skipped} beat slots skipped by late simulators); {db_part}; "
            f"sink {len(self.sink.arrived)} posts"
        )

    def _count(self, sql: str) -> int:
        try:
            with psycopg.connect(self.dsn, autocommit=True, connect_timeout=3) as conn:
                return conn.execute(sql).fetchone()[0]
        except psycopg.OperationalError:
            return -1

    def _cleanup(self) -> None:
        self._sampling.clear()
        for role in ROLES:
            for proc in self.procs[role]:
                proc.stop(10)
        for sim in self.sims:
            if sim.proc.is_alive():
                sim.stop(10)
        if self.sink is not None:
            self.sink.stop()
        if self.topology is not None:
            self.topology.stop()
        elif self.broker is not None:
            self.broker.stop()
        if self.dbname and not self.config.keep:
            with psycopg.connect(self.server, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)')
        elif self.dbname:
            self.say(f"database kept: {self.dsn}")
        if not self.keep_logs:
            shutil.rmtree(self.workdir, ignore_errors=True)


def run_drill(config: DrillConfig, *, echo=print) -> dict:
    """Run the drill; return its report (the JSON line's content, plus `lines` and `details`
    for a person). Raises MachineLimit when this machine cannot hold the fleet asked for."""
    return Drill(config, echo=echo).run()


def print_report(report: dict, echo=print) -> None:
    """Figures for a person, then the one line of JSON."""
    for line in report["lines"]:
        echo(line)
    figures = {k: v for k, v in report.items() if k not in ("lines", "details")}
    echo(json.dumps(figures, separators=(",", ":")))
