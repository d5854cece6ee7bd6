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
deadlines against (a heartbeat queued for a restarting ingest is not silence).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import psycopg
import tenacity

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
from contract.topics import ingest_subscriptions, service_status_topic, service_tick_topic
from core import db
from core.mqtt import connect_client, end_session, make_client
from core.settings import MqttTarget, Settings
from core.worker import Job, Worker
from ingest.upkeep import upkeep
from ingest.writer import WriteResult, forget_ingest, record_progress, write_batch

log = logging.getLogger(__name__)

# How often the upkeep runs (ingest/upkeep.py): partitions, retention, and TimescaleDB jobs
# overdue. Cheap (a few catalog reads), and a job overdue is then run within minutes.
MAINTENANCE_EVERY_S = 300
# One summary line in the log this often; enough to see the rate without flooding.
STATS_LOG_EVERY_S = 30
# Longest wait between database reconnect attempts while it is down.
DB_RETRY_MAX_WAIT_S = 5.0
# How often the ingest sends itself a tick: the resolution of its watermark.
TICK_EVERY_S = 1.0
_DATA_ERRORS = (psycopg.DataError, psycopg.IntegrityError, psycopg.ProgrammingError)


@dataclass
class IngestCounters:
    """What the ingest has done since it started; read by the demo and the log line."""

    messages_in: int = 0
    stored: int = 0
    duplicates: int = 0
    statuses: int = 0
    clock_skewed: int = 0
    batches: int = 0
    last_batch_ms: float = 0.0
    max_batch_ms: float = 0.0
    db_errors: int = 0
    rejected: dict[str, int] = field(default_factory=dict)

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    def add(self, result: WriteResult, batch_ms: float) -> None:
        self.stored += result.stored
        self.duplicates += result.duplicates
        self.statuses += result.statuses
        for reason, n in result.rejected.items():
            self.rejected[reason] = self.rejected.get(reason, 0) + n
        self.batches += 1
        self.last_batch_ms = batch_ms
        self.max_batch_ms = max(self.max_batch_ms, batch_ms)


@dataclass(frozen=True, slots=True)
class Tick:
    """A tick the ingest sent itself at `sent_at`, back through its session."""

    sent_at: datetime


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
        # Each entry: (connection generation, message id to ack or 0, parsed record).
        self._buffer: list[tuple[int, int, Heartbeat | StatusReport | OtaReport | Rejection]] = []
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
        # Devices reconnect to a restarted broker within seconds; the ingest should be first.
        self.client.reconnect_delay_set(min_delay=1, max_delay=5)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, *, wait_connected: float = 30.0) -> Ingest:
        """Connect to the database and broker and start flushing."""
        self._conn = self._connect_db()
        upkeep(self._conn, self.settings.heartbeat_retention_days)
        self.worker.start()
        connect_client(self.client, self.target, persistent=True, asynchronous=True)
        self.client.loop_start()
        if wait_connected and not self._connected.wait(wait_connected):
            raise RuntimeError(f"ingest could not connect to {self.target.redacted()}")
        return self

    def stop(self) -> None:
        """Flush and acknowledge what was received, then disconnect."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        with self._wake:
            self._wake.notify()
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
            f"rejected={c.rejected_total} statuses={c.statuses} batches={c.batches} "
            f"last_batch_ms={c.last_batch_ms:.1f} backlog={len(self._buffer)}"
        )

    # -- MQTT callbacks (paho's thread) ------------------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            log.error("ingest: broker refused connection: %s", reason_code)
            return
        with self._lock:
            self._generation += 1
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
        client.subscribe([(t, 1) for t in [*topics, self._tick_topic]])
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
        if not self._stopping.is_set():
            log.warning("ingest disconnected from broker: %s; reconnecting", reason_code)

    def _on_message(self, client, userdata, msg):
        mid = msg.mid if msg.qos else 0
        if msg.topic == self._tick_topic:
            tick = _parse_tick(msg.payload)
            if tick is not None:
                with self._lock:
                    self._buffer.append((self._generation, mid, tick))
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
        except Exception as exc:  # one bad message must never stop the client
            log.exception("ingest: parser failed on topic %.120r", msg.topic)
            record = Rejection(
                str(msg.topic),
                None,
                "internal_error",
                repr(exc)[:200],
                bytes(msg.payload),
                datetime.now(UTC),
            )
        with self._wake:
            self.counters.messages_in += 1
            self._buffer.append((self._generation, mid, record))
            if len(self._buffer) >= self._batch_size:
                self._wake.notify()

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
            self.client.publish(self._tick_topic, _now().isoformat().encode(), qos=1)

    def _maintain(self) -> None:
        self._with_db(lambda conn: upkeep(conn, self.settings.heartbeat_retention_days))

    def _flush(self, batch) -> bool | None:
        heartbeats, statuses, rejections, ticks = [], [], [], []
        for _, _, record in batch:
            if isinstance(record, Tick):
                ticks.append(record.sent_at)
            elif isinstance(record, Heartbeat):
                heartbeats.append(record)
            elif isinstance(record, StatusReport | OtaReport):
                statuses.append(record)
            else:
                rejections.append(record)
        started = time.perf_counter()
        messages = len(batch) - len(ticks)
        last_received = (
            max(r.received_at for _, _, r in batch if not isinstance(r, Tick)) if messages else None
        )

        def write(conn):
            written = (
                self._write(conn, heartbeats, statuses, rejections) if messages else WriteResult()
            )
            record_progress(
                conn,
                self.settings.ingest_client_id,
                last_received,
                messages=messages,
                result=written,
                caught_up_at=max(ticks) if ticks else None,
                broker_back_at=self._broker_back_at,
            )
            return written

        result = self._with_db(write)
        if result is None:  # stopping while the database is down: leave unacknowledged
            return None
        elapsed_ms = (time.perf_counter() - started) * 1000
        if messages:
            self.counters.add(result, elapsed_ms)
        self.counters.clock_skewed += sum(1 for h in heartbeats if h.clock_skewed)
        for rej in rejections:
            log.warning(
                "ingest: rejected message device=%s reason=%s topic=%.120s detail=%s",
                rej.device_id,
                rej.reason,
                rej.topic,
                rej.detail,
            )
        self._ack(batch)
        return True

    def _write(self, conn, heartbeats, statuses, rejections) -> WriteResult:
        try:
            return write_batch(conn, heartbeats, statuses, rejections)
        except _DATA_ERRORS:
            # Something the parser let through and the database refused: find it one by one
            # so the rest of the batch is still stored.
            log.exception("ingest: batch refused by the database; writing one by one")
            return self._write_one_by_one(conn, heartbeats, statuses, rejections)

    def _write_one_by_one(self, conn, heartbeats, statuses, rejections) -> WriteResult:
        total = WriteResult()
        for record in [*heartbeats, *statuses, *rejections]:
            args = (
                [record] if isinstance(record, Heartbeat) else [],
                [record] if isinstance(record, StatusReport | OtaReport) else [],
                [record] if isinstance(record, Rejection) else [],
            )
            try:
                one = write_batch(conn, *args)
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
                            bytes(record.payload),
                            record.received_at,
                        )
                    ],
                )
            total.stored += one.stored
            total.duplicates += one.duplicates
            total.statuses += one.statuses
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


def _parse_tick(payload: bytes) -> Tick | None:
    try:
        return Tick(datetime.fromisoformat(payload.decode()))
    except (UnicodeDecodeError, ValueError):
        return None  # not ours after all: the parser rejects it like any other
