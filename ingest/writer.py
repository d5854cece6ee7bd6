"""Write one batch of parsed messages in one short transaction.

Heartbeats go through a temporary staging table filled with COPY, then into `heartbeats`
with redeliveries skipped, and `device_state` gets one upsert per batch. Messages from
devices the registry does not know become rejections in the same transaction; all of a
batch's rejections then pass the caller's ration (ingest.rejections), and only what it keeps
is stored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import psycopg

from contract.messages import Heartbeat, OtaReport, Rejection, StatusReport

# The staging table has the columns of heartbeats, whichever flavour made them, and the
# announced sleep (contract 1.1), which only the deadline uses: heartbeats does not keep it.
_CREATE_STAGE = """
CREATE TEMP TABLE IF NOT EXISTS heartbeat_stage (LIKE heartbeats, next_checkin_s integer)
ON COMMIT DELETE ROWS
"""

_COPY_STAGE = """
COPY heartbeat_stage (device_id, ts, seq, received_at, fw, uptime_s, metrics,
                      ts_from_receipt, device_ts, next_checkin_s) FROM STDIN
"""

_KNOWN_DEVICES = "SELECT id FROM devices WHERE id = ANY(%s) AND retired_at IS NULL"

# A heartbeat timed by its receipt has no stable time of its own, so a redelivery of it is
# found by (device, seq) within the hour before; the others are caught by the unique index.
_INSERT_HEARTBEATS = """
INSERT INTO heartbeats (device_id, ts, seq, received_at, fw, uptime_s, metrics,
                        ts_from_receipt, device_ts)
SELECT s.device_id, s.ts, s.seq, s.received_at, s.fw, s.uptime_s, s.metrics,
       s.ts_from_receipt, s.device_ts
FROM heartbeat_stage s
WHERE NOT (s.ts_from_receipt AND EXISTS (
    SELECT 1 FROM heartbeats h
    WHERE h.device_id = s.device_id AND h.seq = s.seq
      AND h.ts >= s.ts - interval '1 hour' AND h.ts <= s.ts))
ON CONFLICT DO NOTHING
"""

# Newest heartbeat per device wins; an older one arriving late (a backlog) never moves
# the state backwards. overdue_at is the deadline the monitor reads; it counts from the
# earlier of device time and receipt, so a clock running ahead cannot postpone it. An
# announced sleep (next_checkin_s) extends it to the wake-up plus the model's grace, and a
# deadline outside the model's active hours moves to the next window's start plus grace;
# expected_at keeps that wake-up for the owner's message. contract.deadline.checkin_deadline
# is this rule in Python, held to it by a test.
_UPSERT_STATE = """
INSERT INTO device_state AS st (
    device_id, status, status_changed_at, last_seen_at, last_received_at, last_seq,
    last_uptime_s, firmware, last_metrics, overdue_at, expected_at, clock_skewed_at)
SELECT device_id, 'online', received_at, ts, received_at, seq, uptime_s, fw, metrics,
       coalesce(wake + grace, deadline),
       coalesce(wake, announced),
       skewed_at
FROM (
    -- Only models with active hours pay for the function.
    SELECT b.*, CASE WHEN b.active_from IS NOT NULL THEN fleetwatch_next_active_start(
               b.deadline, b.timezone, b.active_from, b.active_until) END AS wake
    FROM (
        SELECT DISTINCT ON (s.device_id)
               s.device_id, s.ts, s.received_at, s.seq, s.uptime_s, s.fw, s.metrics,
               least(s.ts, s.received_at) + make_interval(secs => s.next_checkin_s) AS announced,
               greatest(
                   least(s.ts, s.received_at) + make_interval(secs => coalesce(
                       d.offline_after_s, m.heartbeat_interval_s * m.allowed_misses + m.grace_s)),
                   least(s.ts, s.received_at) + make_interval(secs => s.next_checkin_s + m.grace_s)
               ) AS deadline,
               make_interval(secs => m.grace_s) AS grace,
               d.timezone, m.active_from, m.active_until,
               CASE WHEN s.device_ts IS NOT NULL THEN s.received_at END AS skewed_at
        FROM heartbeat_stage s
        JOIN devices d ON d.id = s.device_id
        JOIN device_models m ON m.id = d.model_id
        ORDER BY s.device_id, s.ts DESC, s.seq DESC
    ) AS b
) AS n
ON CONFLICT (device_id) DO UPDATE SET
    -- A first heartbeat is not news; every other status change is the monitor's to make.
    status            = CASE WHEN st.status = 'provisioned' THEN 'online' ELSE st.status END,
    status_changed_at = CASE WHEN st.status = 'provisioned' THEN excluded.last_received_at
                             ELSE st.status_changed_at END,
    last_seen_at     = excluded.last_seen_at,
    last_received_at = excluded.last_received_at,
    last_seq         = excluded.last_seq,
    last_uptime_s    = excluded.last_uptime_s,
    firmware         = coalesce(excluded.firmware, st.firmware),
    last_metrics     = excluded.last_metrics,
    overdue_at       = excluded.overdue_at,
    expected_at      = excluded.expected_at,
    clock_skewed_at  = coalesce(excluded.clock_skewed_at, st.clock_skewed_at)
WHERE st.last_seen_at IS NULL OR excluded.last_seen_at >= st.last_seen_at
"""

_COPY_REJECTED = """
COPY rejected_messages (received_at, topic, device_id, reason, detail, payload, payload_size)
FROM STDIN
"""

# A retained status is replayed on every resubscribe: record it only when it says
# something the state does not already know.
_INSERT_STATUS = """
WITH event AS (
    INSERT INTO connectivity_events (device_id, received_at, status, retained)
    SELECT %(device_id)s, %(received_at)s, %(status)s, %(retained)s
    WHERE NOT %(retained)s OR NOT EXISTS (
        SELECT 1 FROM device_state
        WHERE device_id = %(device_id)s AND connectivity = %(status)s)
    RETURNING device_id, received_at, status
)
INSERT INTO device_state AS st (device_id, connectivity, connectivity_at)
SELECT device_id, status, received_at FROM event
ON CONFLICT (device_id) DO UPDATE
    SET connectivity = excluded.connectivity, connectivity_at = excluded.connectivity_at
    WHERE st.connectivity_at IS NULL OR excluded.connectivity_at >= st.connectivity_at
"""


_COPY_OTA = """
COPY ota_reports (received_at, device_id, command_id, campaign_id, state, progress, reason)
FROM STDIN
"""


@dataclass
class WriteResult:
    stored: int = 0
    duplicates: int = 0
    statuses: int = 0
    ota_reports: int = 0
    # Rejections stored, by reason; and those the ration left out (counted, not stored).
    rejected: dict[str, int] = field(default_factory=dict)
    rejected_unkept: int = 0


def write_batch(
    conn: psycopg.Connection,
    heartbeats: list[Heartbeat],
    statuses: list[StatusReport | OtaReport],
    rejections: list[Rejection],
    *,
    ration: Callable[[list[Rejection]], list[Rejection]] | None = None,
) -> WriteResult:
    """Store a batch in one transaction and return what happened to it.

    `statuses` carries the devices' birth and will messages and their update reports.
    `ration` picks which of the batch's rejections (the parser's and the unknown devices')
    are stored; the others are only counted. None: all are.
    """
    result = WriteResult()
    rejections = list(rejections)
    ota = [r for r in statuses if isinstance(r, OtaReport)]
    statuses = [r for r in statuses if not isinstance(r, OtaReport)]
    ids = {h.device_id for h in heartbeats} | {s.device_id for s in statuses}
    ids |= {r.device_id for r in ota}
    with conn.transaction():
        known: set[str] = set()
        if ids:
            known = {row[0] for row in conn.execute(_KNOWN_DEVICES, (list(ids),))}
        good = []
        # A device retransmitting (MQTT DUP) can put two copies of a heartbeat timed by
        # receipt in one batch, with different receive times: keep the first.
        receipt_timed: set[tuple[str, int]] = set()
        for hb in heartbeats:
            if hb.device_id not in known:
                rejections.append(_unknown(hb))
                continue
            if hb.ts_from_receipt:
                if (hb.device_id, hb.seq) in receipt_timed:
                    result.duplicates += 1
                    continue
                receipt_timed.add((hb.device_id, hb.seq))
            good.append(hb)
        good_statuses = []
        for st in statuses:
            if st.device_id in known:
                good_statuses.append(st)
            else:
                rejections.append(_unknown(st))

        if good:
            conn.execute(_CREATE_STAGE)
            with conn.cursor().copy(_COPY_STAGE) as copy:
                for hb in good:
                    copy.write_row(
                        (
                            hb.device_id,
                            hb.ts,
                            hb.seq,
                            hb.received_at,
                            hb.fw,
                            hb.uptime_s,
                            hb.metrics_json,
                            hb.ts_from_receipt,
                            hb.device_ts,
                            hb.next_checkin_s,
                        )
                    )
            result.stored = conn.execute(_INSERT_HEARTBEATS).rowcount
            result.duplicates += len(good) - result.stored
            conn.execute(_UPSERT_STATE)

        good_ota = [r for r in ota if r.device_id in known]
        rejections += [_unknown(r) for r in ota if r.device_id not in known]
        if good_ota:
            with conn.cursor().copy(_COPY_OTA) as copy:
                for r in good_ota:
                    copy.write_row(
                        (
                            r.received_at,
                            r.device_id,
                            r.command_id,
                            r.campaign_id,
                            r.state,
                            r.progress,
                            r.reason,
                        )
                    )
            result.ota_reports = len(good_ota)

        if good_statuses:
            # One pipelined round trip for all of them, in the order received: after a broker
            # restart a batch holds thousands of wills and births.
            ordered = sorted(good_statuses, key=lambda s: s.received_at)
            conn.cursor().executemany(
                _INSERT_STATUS,
                [
                    {
                        "device_id": st.device_id,
                        "received_at": st.received_at,
                        "status": st.status,
                        "retained": st.retained,
                    }
                    for st in ordered
                ],
            )
            result.statuses += len(ordered)

        if rejections and ration is not None:
            kept = ration(rejections)
            result.rejected_unkept = len(rejections) - len(kept)
            rejections = kept
        if rejections:
            with conn.cursor().copy(_COPY_REJECTED) as copy:
                for rej in rejections:
                    copy.write_row(
                        (
                            rej.received_at,
                            rej.topic,
                            rej.device_id,
                            rej.reason,
                            rej.detail,
                            rej.payload,
                            rej.payload_size,
                        )
                    )
                    result.rejected[rej.reason] = result.rejected.get(rej.reason, 0) + 1
    return result


def _unknown(record: Heartbeat | StatusReport | OtaReport) -> Rejection:
    return Rejection(
        topic=record.topic,
        device_id=record.device_id,
        reason="unknown_device",
        detail="device is not registered, or is retired",
        payload=record.payload,
        received_at=record.received_at,
    )


_PROGRESS = """
INSERT INTO ingest_status (client_id, last_message_at, updated_at, messages_total, stored_total,
                           rejected_total, rejected_unkept_total, caught_up_at, broker_back_at)
VALUES (%(client)s, coalesce(%(at)s::timestamptz, %(caught_up)s::timestamptz, now()), now(),
        %(messages)s, %(stored)s, %(rejected)s, %(unkept)s, %(caught_up)s, %(back)s)
ON CONFLICT (client_id) DO UPDATE SET
    -- A batch of ticks only says how far the ingest has read, not that devices spoke.
    last_message_at = CASE WHEN %(at)s::timestamptz IS NULL THEN ingest_status.last_message_at
                           ELSE greatest(ingest_status.last_message_at, excluded.last_message_at)
                      END,
    updated_at = now(),
    messages_total = ingest_status.messages_total + excluded.messages_total,
    stored_total = ingest_status.stored_total + excluded.stored_total,
    rejected_total = ingest_status.rejected_total + excluded.rejected_total,
    rejected_unkept_total = ingest_status.rejected_unkept_total + excluded.rejected_unkept_total,
    caught_up_at = greatest(ingest_status.caught_up_at, excluded.caught_up_at),
    broker_back_at = greatest(ingest_status.broker_back_at, excluded.broker_back_at)
RETURNING metric_label
"""


def record_progress(
    conn: psycopg.Connection,
    client_id: str,
    last_message_at: datetime | None,
    *,
    messages: int = 0,
    result: WriteResult | None = None,
    caught_up_at: datetime | None = None,
    broker_back_at: datetime | None = None,
) -> str:
    """Note that this ingest received something at `last_message_at` (the blind-spot guard),
    how far it has read the broker (`caught_up_at`), and add a batch to its totals; returns
    the label /metrics shows for this ingest."""
    return conn.execute(
        _PROGRESS,
        {
            "client": client_id,
            "at": last_message_at,
            "messages": messages,
            "stored": result.stored if result else 0,
            "rejected": sum(result.rejected.values()) if result else 0,
            "unkept": result.rejected_unkept if result else 0,
            "caught_up": caught_up_at,
            "back": broker_back_at,
        },
    ).fetchone()[0]


def forget_ingest(conn: psycopg.Connection, client_id: str) -> None:
    """Drop a retired ingest's row, so the monitor no longer waits for its watermark."""
    conn.execute("DELETE FROM ingest_status WHERE client_id = %s", (client_id,))


# Rows deleted per statement: short transactions, through the received_at index.
_DROP_REJECTIONS_CHUNK = 10_000
_DROP_OLD_REJECTIONS = """
DELETE FROM rejected_messages WHERE id IN (
    SELECT id FROM rejected_messages WHERE received_at < %s LIMIT %s)
"""


def drop_old_rejections(conn: psycopg.Connection, retention_days: int, now: datetime) -> int:
    """Delete rejected messages received more than `retention_days` before `now`; how many.

    On an autocommit connection each chunk is its own short transaction.
    """
    cutoff = now - timedelta(days=retention_days)
    dropped = 0
    while True:
        n = conn.execute(_DROP_OLD_REJECTIONS, (cutoff, _DROP_REJECTIONS_CHUNK)).rowcount
        dropped += n
        if n < _DROP_REJECTIONS_CHUNK:
            return dropped
