"""The ingest process: subscribe, parse, batch, commit, and only then acknowledge.

    broker --QoS 1--> on_message (paho thread): parse -> buffer
                                                          |
      "flush" job: a full batch or ~200 ms, batch after batch -> write_batch (one transaction)
                                                          |
                                      commit -> PUBACK each message of the batch

The jobs (flush, tick, maintenance) run on the one worker shape (core/worker.py): a run that
fails unexpectedly is logged, counted in /metrics and tried again, its batch kept.

A message is acknowledged only after its batch is committed, so whatever the broker
handed over survives an ingest crash: unacknowledged messages are redelivered to the
persistent session and de-duplicated on write.

Every second the ingest also publishes a tick to itself. The broker queues a session's
messages in order, so once a tick's batch is committed, everything the broker accepted
before the tick was sent is stored: `caught_up_at`, the watermark the monitor judges
deadlines against (a heartbeat queued for a restarting ingest is not silence). Which ticks
it believes is ingest.watermark's decision; how many rejections it stores, ingest.rejections'.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import psycopg
import tenacity
from paho.mqtt.client import topic_matches_sub as mqtt_topic_matches

from contract.messages import (
    OFFLINE,
    ONLINE,
    Heartbeat,
    Limits,
    OtaReport,
    Rejection,
    StatusReport,
    parse_message,
    status_payload,
)
from contract.topics import (
    bridge_states,
    ingest_subscriptions,
    service_status_topic,
    service_tick_topic,
)
from core import db
from core.mqtt import connect_client, end_session, make_client, subscribe_options
from core.settings import MqttTarget, Settings
from core.worker import Job, Worker
from ingest.rejections import RejectionsKept, ration_rejections
from ingest.replays import LastStatuses, ReplayedStatus, stored_statuses
from ingest.upkeep import upkeep
from ingest.watermark import SUSPICIOUS, RefusedTick, Tick, accept_tick, tick_payload
from ingest.writer import (
    WriteResult,
    drop_old_rejections,
    forget_ingest,
    record_progress,
    write_batch,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BridgeState:
    """An edge's bridge connecting (`1`) or its edge going away (`0`): acknowledged in its
    turn, not stored; it moves the ingest's broker_back_at (see _on_bridge_state)."""

    topic: str
    payload: bytes


# What the buffer holds between a message's arrival and its batch's commit.
Record = (
    Heartbeat
    | StatusReport
    | OtaReport
    | Rejection
    | Tick
    | RefusedTick
    | ReplayedStatus
    | BridgeState
)

# How often the upkeep runs (ingest/upkeep.py): partitions, retention, and TimescaleDB jobs
# overdue. Cheap (a few catalog reads), and a job overdue is then run within minutes.
MAINTENANCE_EVERY_S = 300
# One summary line in the log this often; enough to see the rate without flooding.
STATS_LOG_EVERY_S = 30
# Longest wait between database reconnect attempts while it is down.
DB_RETRY_MAX_WAIT_S = 5.0
# How often the ingest sends itself a tick: the resolution of its watermark.
TICK_EVERY_S = 1.0
# A tick refused as not ours is logged at most this often (they are all counted).
TICK_WARNING_EVERY_S = 60.0
# How long the network thread waits for room in a full buffer before it reads on: short
# enough that paho still reads (and so does not time the connection out) and sends its
# pings and acknowledgements while the database is down.
ROOM_WAIT_S = 5.0
# MQTT 5's reason code for a connection thrown off by another with the same client id.
SESSION_TAKEN_OVER = 0x8E
_DATA_ERRORS = (psycopg.DataError, psycopg.IntegrityError, psycopg.ProgrammingError)


@dataclass
class IngestCounters:
    """What the ingest has done since it started; read by the demo and the log line."""

    messages_in: int = 0
    stored: int = 0
    duplicates: int = 0
    statuses: int = 0
    # Retained statuses told apart in memory as saying again what the last one said
    # (ingest/replays.py): acknowledged, not written.
    replays_skipped: int = 0
    # The most messages held at once, received and not yet committed: bounded by the
    # Receive Maximum (twice it across a reconnect), the ingest's memory while it catches up.
    backlog_peak: int = 0
    clock_skewed: int = 0
    batches: int = 0
    last_batch_ms: float = 0.0
    max_batch_ms: float = 0.0
    db_errors: int = 0
    # Rejections stored, by reason; those not stored (over a device's allowance a minute).
    rejected: dict[str, int] = field(default_factory=dict)
    rejected_unkept: int = 0
    # Messages on the tick topic that did not move the watermark, by reason.
    ticks_refused: dict[str, int] = field(default_factory=dict)

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    def add(self, result: WriteResult, batch_ms: float) -> None:
        self.stored += result.stored
        self.duplicates += result.duplicates
        self.statuses += result.statuses
        for reason, n in result.rejected.items():
            self.rejected[reason] = self.rejected.get(reason, 0) + n
        self.rejected_unkept += result.rejected_unkept
        self.batches += 1
        self.last_batch_ms = batch_ms
        self.max_batch_ms = max(self.max_batch_ms, batch_ms)


class Ingest:
    """One ingest process: an MQTT client with held acks and a flusher thread."""

    def __init__(self, settings: Settings, dsn: str, target: MqttTarget) -> None:
        self.settings = settings
        self.dsn = dsn
        self.target = target
        self.counters = IngestCounters()
        self.limits = Limits(
            max_payload_bytes=settings.ingest_max_payload_bytes,
            clock_ahead=timedelta(seconds=settings.ingest_clock_ahead_s),
            clock_behind=timedelta(seconds=settings.ingest_clock_behind_s),
        )
        self._prefix = settings.topic_prefix
        self._batch_size = settings.ingest_batch_size
        self._flush_s = settings.ingest_flush_ms / 1000
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        # Signalled when a batch leaves the buffer: the network thread stops reading while
        # the buffer holds a Receive Maximum's worth, whatever the broker sends. Mosquitto
        # 2.0.11 keeps to the Receive Maximum only until the first acknowledgement, then
        # sends all it has queued (a drill's ingest held 151,000 messages).
        self._room = threading.Condition(self._lock)
        self._hold_limit = settings.ingest_receive_maximum
        # Each entry: (connection generation, message id to ack or 0, parsed record).
        self._buffer: list[tuple[int, int, Record]] = []
        # Each device's last status, to skip a bridge's replays without a write; only when
        # this ingest sees every status (no shared group: ingest/replays.py).
        self._last_statuses = None if settings.ingest_shared_group else LastStatuses()
        # The watermark's bookkeeping (ingest.watermark): the latest tick sent and believed.
        self._last_tick_sent: datetime | None = None
        self._last_tick_accepted: datetime | None = None
        # Rejections kept per device this minute (ingest.rejections); the flusher's alone.
        self._rejections_kept = RejectionsKept()
        self._metric_label: str | None = None
        self._refusal_logged = False
        self._tick_warned_at = -TICK_WARNING_EVERY_S
        self._generation = 0
        self._connected = threading.Event()
        self._stopping = threading.Event()
        self.worker = Worker(
            "ingest",
            [
                Job("flush", self._flush_when_due, 0),
                Job("tick", self._send_tick, TICK_EVERY_S),
                Job("maintenance", self._maintain, MAINTENANCE_EVERY_S),
            ],
            dsn=dsn,
        )
        self._conn: psycopg.Connection | None = None
        self._service_topic = service_status_topic(self._prefix, settings.ingest_client_id)
        self._tick_topic = service_tick_topic(self._prefix, settings.ingest_client_id)
        self._bridge_states = bridge_states(self._prefix)
        self._broker_back_at: datetime | None = None
        self._retiring = False
        self.client = make_client(
            target,
            settings.ingest_client_id,
            protocol=settings.mqtt_protocol,
            persistent=True,
            manual_ack=settings.ingest_hold_acks,
        )
        if not settings.ingest_hold_acks:
            log.warning(
                "ingest acknowledges on receipt (FLEETWATCH_INGEST_HOLD_ACKS off): a crash may "
                "lose what was received but not yet committed"
            )
        self.client.will_set(self._service_topic, status_payload(OFFLINE), qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish
        # Devices reconnect to a restarted broker within seconds; the ingest should be first.
        self.client.reconnect_delay_set(min_delay=1, max_delay=5)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, *, wait_connected: float = 30.0) -> Ingest:
        """Connect to the database and broker and start flushing."""
        self._conn = self._connect_db()
        self._maintain_tables(self._conn)
        if self._last_statuses is not None:
            self._last_statuses = stored_statuses(self._conn)
        self.worker.start()
        connect_client(
            self.client,
            self.target,
            persistent=True,
            asynchronous=True,
            receive_maximum=self.settings.ingest_receive_maximum,
        )
        self.client.loop_start()
        if wait_connected and not self._connected.wait(wait_connected):
            # Stop what was started, or its threads keep the process (and the broker
            # session) alive, storing nothing.
            self.stop()
            raise RuntimeError(f"ingest could not connect to {self.target.redacted()}")
        return self

    def stop(self) -> None:
        """Flush and acknowledge what was received, then disconnect."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        with self._wake:
            self._wake.notify()
            self._room.notify_all()
        self.worker.stop()
        self._drain()
        try:
            self.client.publish(self._service_topic, status_payload(OFFLINE), qos=1, retain=True)
            self.client.disconnect()
        finally:
            self.client.loop_stop()
            if self._conn is not None:
                self._conn.close()
        log.info("ingest stopped: %s", self.summary())

    def retire(self, *, quiet_s: float = 3.0, limit_s: float = 300.0) -> int:
        """Take over this client id's session, store what is queued in it, unsubscribe and
        end the session; returns how many messages it stored. For an ingest stopped for good."""
        self._retiring = True
        self.start()
        topics = [
            *ingest_subscriptions(self._prefix, self.settings.ingest_shared_group),
            *ingest_subscriptions(self._prefix),
            self._tick_topic,
            self._bridge_states,
        ]
        self.client.unsubscribe(list(dict.fromkeys(topics)))
        last, since = -1, time.monotonic()
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            with self._lock:
                seen, waiting = self.counters.messages_in, len(self._buffer)
            if seen != last or waiting:
                last, since = seen, time.monotonic()
            elif time.monotonic() - since >= quiet_s:
                break
            time.sleep(0.2)
        else:
            raise RuntimeError(f"session {self.settings.ingest_client_id} kept receiving")
        self._stopping.set()
        with self._wake:
            self._wake.notify()
            self._room.notify_all()
        self.worker.stop()
        self._drain()
        self.client.publish(self._service_topic, b"", qos=1, retain=True).wait_for_publish(5)
        end_session(self.client, self.target, self.settings.ingest_client_id)
        if self._conn is not None:
            forget_ingest(self._conn, self.settings.ingest_client_id)
            self._conn.close()
        log.info("ingest %s retired: %s", self.settings.ingest_client_id, self.summary())
        return self.counters.stored

    def run_forever(self, stop_event: threading.Event) -> None:
        """Run until stop_event is set, logging a summary line now and then."""
        last = time.monotonic()
        while not stop_event.wait(1.0):
            if time.monotonic() - last >= STATS_LOG_EVERY_S:
                log.info("ingest: %s", self.summary())
                last = time.monotonic()

    def summary(self) -> str:
        c = self.counters
        return (
            f"in={c.messages_in} stored={c.stored} duplicates={c.duplicates} "
            f"rejected={c.rejected_total} rejected_unkept={c.rejected_unkept} "
            f"ticks_refused={sum(c.ticks_refused.values())} statuses={c.statuses} "
            f"replays_skipped={c.replays_skipped} "
            f"batches={c.batches} "
            f"last_batch_ms={c.last_batch_ms:.1f} backlog={len(self._buffer)} "
            f"backlog_peak={c.backlog_peak}"
        )

    # -- MQTT callbacks (paho's thread) ------------------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            log.error("ingest: broker refused connection: %s", reason_code)
            return
        with self._lock:
            self._generation += 1
            self._refusal_logged = False
            if self._generation > 1:
                # Back after losing the broker: the wills it sent meanwhile are suspect.
                self._broker_back_at = datetime.now(UTC)
        if self._retiring:
            # Only what the session holds: no new subscription, no online status.
            log.info(
                "ingest retiring %s (session present: %s)",
                self.settings.ingest_client_id,
                flags.session_present,
            )
            self._connected.set()
            return
        topics = ingest_subscriptions(self._prefix, self.settings.ingest_shared_group)
        # Device topics keep their retain flag: a status a bridge sends again when it
        # reconnects is then a replay, recorded only if it is news (ingest.writer).
        device_topics = subscribe_options(client, retain_as_published=True)
        client.subscribe(
            [(t, device_topics) for t in topics]
            + [(self._tick_topic, subscribe_options(client))]
            # Every ingest hears every edge (never through a shared group).
            + [(self._bridge_states, subscribe_options(client))]
        )
        if flags.session_present:
            # The broker kept the subscriptions: ready now. Waiting for the SUBACK would
            # wait behind everything queued meanwhile (a drill at 100,000 devices queued
            # more than 30 s of it, and the restarted ingest gave up).
            self._connected.set()
        client.publish(self._service_topic, status_payload(ONLINE), qos=1, retain=True)
        log.info(
            "ingest connected to %s as %s (session present: %s), subscribed to %s",
            self.target.redacted(),
            self.settings.ingest_client_id,
            flags.session_present,
            ", ".join(topics),
        )

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        # Ready only once the broker holds the subscription: a message published before
        # that would not be routed to a new session.
        failed = [rc for rc in reason_codes if rc.is_failure]
        if failed:
            log.error("ingest: broker refused subscription: %s", failed)
            return
        self._connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self._connected.clear()
        if self._stopping.is_set():
            return
        if reason_code.value == SESSION_TAKEN_OVER:
            log.error(
                "ingest %s: another connection with its client id took its session over: "
                "two processes share one login or client id, or someone else uses it (give "
                "each ingest a login of its own, and a broker with use_username_as_clientid "
                "as in deploy/); reconnecting",
                self.settings.ingest_client_id,
            )
            return
        log.warning("ingest disconnected from broker: %s; reconnecting", reason_code)

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        # Only MQTT 5 says so: the broker refused a tick or status (its ACL). Without its
        # ticks the watermark stands still and the monitor waits, so say it once a connection.
        if reason_code.is_failure and not self._refusal_logged:
            self._refusal_logged = True
            log.error(
                "ingest %s: the broker refused its publish (%s): its login may not write its "
                "own topics %s and %s; see deploy/mosquitto/acl",
                self.settings.ingest_client_id,
                reason_code,
                self._tick_topic,
                self._service_topic,
            )

    def _on_message(self, client, userdata, msg):
        mid = msg.mid if msg.qos else 0
        if msg.topic == self._tick_topic:
            self._on_tick(mid, msg.payload)
            return
        if mqtt_topic_matches(self._bridge_states, msg.topic):
            self._on_bridge_state(mid, msg)
            return
        try:
            record = parse_message(
                msg.topic,
                msg.payload,
                prefix=self._prefix,
                received_at=datetime.now(UTC),
                retained=msg.retain,
                limits=self.limits,
            )
            if isinstance(record, StatusReport) and self._last_statuses is not None:
                record = self._last_statuses.sort(record)
        except Exception as exc:  # one bad message must never stop the client
            log.exception("ingest: parser failed on topic %.120r", msg.topic)
            record = Rejection(
                str(msg.topic),
                None,
                "internal_error",
                repr(exc)[:200],
                msg.payload,
                datetime.now(UTC),
            )
        with self._wake:
            self.counters.messages_in += 1
            if isinstance(record, ReplayedStatus):
                self.counters.replays_skipped += 1
            self._buffer.append((self._generation, mid, record))
            waiting = len(self._buffer)
            if waiting > self.counters.backlog_peak:
                self.counters.backlog_peak = waiting
            if waiting >= self._batch_size:
                self._wake.notify()
            # Full: read no further until a batch is committed (the broker keeps the rest),
            # but only for a while at a time, so that paho's thread still keeps the
            # connection alive through a database outage.
            while len(self._buffer) >= self._hold_limit and not self._stopping.is_set():
                if not self._room.wait(ROOM_WAIT_S):
                    break

    def _on_bridge_state(self, mid: int, msg) -> None:
        """An edge went away or came back: for the monitor, as if this ingest had lost the
        broker. The edge sends its devices' Last Wills on its way down, and they reconnect
        to it only when it is back (tens of seconds for tens of thousands): without the
        hold they would be declared offline by their wills. A retained state is the last
        one, sent when the subscription is new: old news."""
        record = BridgeState(str(msg.topic), bytes(msg.payload[:8]))
        with self._wake:
            if not msg.retain:
                self._broker_back_at = datetime.now(UTC)
            self._buffer.append((self._generation, mid, record))
        if not msg.retain:
            log.warning(
                "ingest: edge bridge %s is %s: offline verdicts held for the resume grace",
                record.topic.split("/")[1][:100],
                "up" if record.payload == b"1" else "down",
            )

    def _on_tick(self, mid: int, payload: bytes) -> None:
        """A message on our own tick topic: a tick that moves the watermark, or one refused
        (ingest.watermark); either way acknowledged in its turn, never stored as a rejection."""
        with self._lock:
            record = accept_tick(
                payload,
                now=_now(),
                last_sent=self._last_tick_sent,
                last_accepted=self._last_tick_accepted,
            )
            if isinstance(record, Tick):
                self._last_tick_accepted = record.sent_at
            else:
                refused = self.counters.ticks_refused
                refused[record.reason] = refused.get(record.reason, 0) + 1
            self._buffer.append((self._generation, mid, record))
        # Whoever sends garbage there cannot flood the log with it: one line a minute.
        if (
            isinstance(record, RefusedTick)
            and record.reason in SUSPICIOUS
            and time.monotonic() - self._tick_warned_at >= TICK_WARNING_EVERY_S
        ):
            self._tick_warned_at = time.monotonic()
            log.warning(
                "ingest %s: refused a tick it did not send (%s): %.64r; refused so far: %s",
                self.settings.ingest_client_id,
                record.reason,
                payload,
                self.counters.ticks_refused,
            )

    # -- jobs --------------------------------------------------------------------------------

    def _flush_when_due(self) -> bool:
        """Wait for a full batch or FLUSH_MS, then write one batch; True when a full batch
        is left (run again at once).

        At most one batch at a time: a backlog after a restart is worked off in batches of
        the configured size, not held in one huge transaction. A batch whose write fails
        unexpectedly goes back to the front of the buffer: retried, never lost.
        """
        with self._wake:
            if len(self._buffer) < self._batch_size and not self._stopping.is_set():
                self._wake.wait(self._flush_s)
            batch = self._buffer[: self._batch_size]
            del self._buffer[: self._batch_size]
            self._room.notify_all()
        if not batch:
            return False
        try:
            self._flush(batch)
        except Exception:
            with self._lock:
                self._buffer[:0] = batch
            raise
        with self._lock:
            return len(self._buffer) >= self._batch_size

    def _drain(self) -> None:
        """On the way out: write everything still buffered (unless the database is down)."""
        while True:
            with self._lock:
                rest = self._buffer[: self._batch_size]
                del self._buffer[: self._batch_size]
            if not rest or self._flush(rest) is None:
                return

    def _send_tick(self) -> None:
        """The watermark: a tick to ourselves, back through our own session."""
        if self._connected.is_set() and not self._retiring:
            sent_at = _now()
            with self._lock:  # noted first: the tick may be back before publish() returns
                self._last_tick_sent = sent_at
            self.client.publish(self._tick_topic, tick_payload(sent_at), qos=1)

    def _maintain(self) -> None:
        self._with_db(self._maintain_tables)

    def _maintain_tables(self, conn: psycopg.Connection) -> None:
        upkeep(conn, self.settings.heartbeat_retention_days)
        dropped = drop_old_rejections(conn, self.settings.ingest_rejected_retention_days, _now())
        if dropped:
            log.info("ingest: %d rejected message(s) past retention deleted", dropped)

    def _ration(self, rejections: list[Rejection]) -> list[Rejection]:
        """The rejections of a batch to store (ingest.rejections); the rest are counted."""
        rationed = ration_rejections(
            rejections,
            self._rejections_kept,
            now=_now(),
            per_device_per_minute=self.settings.ingest_rejected_per_device_per_minute,
        )
        self._rejections_kept = rationed.used
        return rationed.kept

    def _flush(self, batch) -> bool | None:
        heartbeats, statuses, rejections, ticks = [], [], [], []
        for _, _, record in batch:
            if isinstance(record, Tick):
                ticks.append(record.sent_at)
            elif isinstance(record, RefusedTick | ReplayedStatus | BridgeState):
                continue  # counted when it came; acknowledged with its batch
            elif isinstance(record, Heartbeat):
                heartbeats.append(record)
            elif isinstance(record, StatusReport | OtaReport):
                statuses.append(record)
            else:
                rejections.append(record)
        started = time.perf_counter()
        device_messages = [
            r for _, _, r in batch if not isinstance(r, Tick | RefusedTick | BridgeState)
        ]
        messages = len(device_messages)
        last_received = max(r.received_at for r in device_messages) if messages else None
        stored_rejections: list[Rejection] = []

        def ration(candidates: list[Rejection]) -> list[Rejection]:
            kept = self._ration(candidates)
            stored_rejections.extend(kept)
            return kept

        def write(conn):
            stored_rejections.clear()
            written = (
                self._write(conn, heartbeats, statuses, rejections, ration)
                if messages
                else WriteResult()
            )
            label = record_progress(
                conn,
                self.settings.ingest_client_id,
                last_received,
                messages=messages,
                result=written,
                caught_up_at=max(ticks) if ticks else None,
                broker_back_at=self._broker_back_at,
            )
            return written, label

        done = self._with_db(write)
        if done is None:  # stopping while the database is down: leave unacknowledged
            return None
        result, label = done
        elapsed_ms = (time.perf_counter() - started) * 1000
        if messages:
            self.counters.add(result, elapsed_ms)
        self.counters.clock_skewed += sum(1 for h in heartbeats if h.clock_skewed)
        if label != self._metric_label:
            self._metric_label = label
            log.info("ingest %s is ingest=%r on /metrics", self.settings.ingest_client_id, label)
        for rej in stored_rejections:
            log.warning(
                "ingest: rejected message device=%s reason=%s topic=%.120s detail=%s size=%d",
                rej.device_id,
                rej.reason,
                rej.topic,
                rej.detail,
                rej.payload_size,
            )
        if result.rejected_unkept:
            log.warning(
                "ingest: %d more rejected message(s) not stored: over %d a device a minute "
                "(counted in ingest_status.rejected_unkept_total)",
                result.rejected_unkept,
                self.settings.ingest_rejected_per_device_per_minute,
            )
        self._ack(batch)
        return True

    def _write(self, conn, heartbeats, statuses, rejections, ration) -> WriteResult:
        try:
            return write_batch(conn, heartbeats, statuses, rejections, ration=ration)
        except _DATA_ERRORS:
            # Something the parser let through and the database refused: find it one by one
            # so the rest of the batch is still stored.
            log.exception("ingest: batch refused by the database; writing one by one")
            return self._write_one_by_one(conn, heartbeats, statuses, rejections, ration)

    def _write_one_by_one(self, conn, heartbeats, statuses, rejections, ration) -> WriteResult:
        total = WriteResult()
        for record in [*heartbeats, *statuses, *rejections]:
            args = (
                [record] if isinstance(record, Heartbeat) else [],
                [record] if isinstance(record, StatusReport | OtaReport) else [],
                [record] if isinstance(record, Rejection) else [],
            )
            try:
                one = write_batch(conn, *args, ration=ration)
            except _DATA_ERRORS as exc:
                log.error("ingest: storage refused message device=%s: %s", record.device_id, exc)
                one = write_batch(
                    conn,
                    [],
                    [],
                    [
                        Rejection(
                            record.topic,
                            record.device_id,
                            "storage_error",
                            str(exc)[:200],
                            record.payload,
                            record.received_at,
                        )
                    ],
                    ration=ration,
                )
            total.stored += one.stored
            total.duplicates += one.duplicates
            total.statuses += one.statuses
            total.rejected_unkept += one.rejected_unkept
            for reason, n in one.rejected.items():
                total.rejected[reason] = total.rejected.get(reason, 0) + n
        return total

    def _with_db(self, work):
        """Run work(conn), reconnecting with backoff while the database is unreachable."""
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(psycopg.OperationalError),
            wait=tenacity.wait_exponential(multiplier=0.1, max=DB_RETRY_MAX_WAIT_S),
            stop=tenacity.stop_when_event_set(self._stopping),
            before_sleep=self._reconnect_db,
            reraise=False,
        )
        try:
            for attempt in retrying:
                with attempt:
                    if self._conn is None or self._conn.closed:
                        self._conn = self._connect_db()
                    return work(self._conn)
        except tenacity.RetryError:
            log.error("ingest: database unreachable while stopping; messages left unacknowledged")
            return None

    def _reconnect_db(self, retry_state) -> None:
        self.counters.db_errors += 1
        log.warning("ingest: database error (%s); retrying", retry_state.outcome.exception())
        if self._conn is not None:
            self._conn.close()
        self._conn = None

    def _connect_db(self) -> psycopg.Connection:
        return db.connect(self.dsn, autocommit=True)

    def _ack(self, batch) -> None:
        if not self.settings.ingest_hold_acks:
            return  # paho acknowledged on receipt
        # An id from an earlier connection may since have been reused by the broker for
        # another message; those are left to redelivery (and de-duplication) instead.
        with self._lock:
            generation = self._generation
        for gen, mid, _ in batch:
            if mid and gen == generation:
                self.client.ack(mid, 1)


def _now() -> datetime:
    return datetime.now(UTC)
