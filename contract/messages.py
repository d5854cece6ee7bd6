"""Heartbeats, statuses and update reports: the records the ingest makes of them, the
parser that makes them, and the encoders devices (the simulator, the tests) build them with.

Every message becomes exactly one of `Heartbeat`, `StatusReport`, `OtaReport` or `Rejection`:
nothing raises, so one bad message can never take its batch or the ingest down. Pure and
fast: the parser is the ingest's hot path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import orjson

from contract.ids import COMMAND_ID_RE
from contract.topics import HEARTBEAT, OTA, STATUS, BadTopic, parse_topic

ONLINE = "online"  # a device's birth message on its status topic...
OFFLINE = "offline"  # ...and its Last Will
MAX_METRICS = 64
MAX_FW_LEN = 64
MAX_METRIC_NAME_LEN = 64
# Far enough from any real counter to catch garbage without limiting real devices.
MAX_COUNTER = 2**62
# Keeps every metric castable to float8 in summaries.
MAX_METRIC_MAGNITUDE = 1e15
# Contract 1.1: the longest sleep a device may announce (`next_checkin_s`). A week covers a
# car parked at the airport; anything longer is a bug or garbage, and would blind the
# monitor to the device for that long.
MAX_NEXT_CHECKIN_S = 7 * 24 * 3600


@dataclass(frozen=True, slots=True)
class Limits:
    """What the parser accepts; set from Settings."""

    max_payload_bytes: int = 4096
    clock_ahead: timedelta = timedelta(minutes=5)
    clock_behind: timedelta = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class Heartbeat:
    device_id: str
    ts: datetime
    seq: int
    received_at: datetime
    fw: str | None
    uptime_s: int | None
    metrics_json: str
    ts_from_receipt: bool = False
    device_ts: datetime | None = None  # set only when the device's clock was replaced
    # Contract 1.1: seconds the device announced it will be silent (asleep); None: not said.
    next_checkin_s: int | None = None
    # The message as received, kept in case the registry turns it away at write time.
    topic: str = field(default="", repr=False, compare=False)
    payload: bytes = field(default=b"", repr=False, compare=False)

    @property
    def clock_skewed(self) -> bool:
        return self.device_ts is not None


@dataclass(frozen=True, slots=True)
class StatusReport:
    device_id: str
    status: str  # online | offline
    received_at: datetime
    retained: bool
    topic: str = field(default="", repr=False, compare=False)
    payload: bytes = field(default=b"", repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class OtaReport:
    """A device's report on an update it was commanded (campaigns/steps.py reads them)."""

    device_id: str
    command_id: str
    campaign_id: int | None
    state: str
    progress: int | None
    reason: str | None
    received_at: datetime
    topic: str = field(default="", repr=False, compare=False)
    payload: bytes = field(default=b"", repr=False, compare=False)


OTA_STATES = frozenset({"accepted", "downloading", "installing", "rebooting", "failed"})
MAX_REASON_LEN = 200


# What a rejection keeps of a message: enough to see what was wrong, never a flood's worth.
# `rejected_messages` holds the same bound in a CHECK (migration 014).
KEPT_PAYLOAD_BYTES = 1024
KEPT_TOPIC_CHARS = 256


@dataclass(frozen=True, slots=True)
class Rejection:
    """A message the ingest turned away. Only the first KEPT_PAYLOAD_BYTES of its payload
    (and KEPT_TOPIC_CHARS of its topic) are kept, whatever it is built with; `payload_size`
    is the whole payload's size."""

    topic: str
    device_id: str | None
    reason: str
    detail: str
    payload: bytes
    received_at: datetime
    payload_size: int = -1  # -1: len(payload) as given

    def __post_init__(self) -> None:
        if self.payload_size < 0:
            object.__setattr__(self, "payload_size", len(self.payload))
        if len(self.payload) > KEPT_PAYLOAD_BYTES or not isinstance(self.payload, bytes):
            object.__setattr__(self, "payload", bytes(self.payload[:KEPT_PAYLOAD_BYTES]))
        if len(self.topic) > KEPT_TOPIC_CHARS:
            object.__setattr__(self, "topic", self.topic[:KEPT_TOPIC_CHARS])


def parse_message(
    topic: str,
    payload: bytes,
    *,
    prefix: str,
    received_at: datetime,
    retained: bool = False,
    limits: Limits = Limits(),
) -> Heartbeat | StatusReport | OtaReport | Rejection:
    """Turn one MQTT message into a record; anything unacceptable becomes a Rejection."""

    def reject(reason: str, detail: str, device_id: str | None = None) -> Rejection:
        return Rejection(topic, device_id, reason, detail, payload, received_at)

    where = parse_topic(topic, prefix)
    if isinstance(where, BadTopic):
        return reject(where.reason, where.detail)
    device_id, kind = where.device_id, where.kind
    if len(payload) > limits.max_payload_bytes:
        return reject("oversize", f"{len(payload)} bytes > {limits.max_payload_bytes}", device_id)
    if kind == HEARTBEAT:
        return _parse_heartbeat(topic, device_id, payload, received_at, limits, reject)
    if kind == STATUS:
        status = payload.strip().decode("utf-8", "replace").lower()
        if status not in (ONLINE, OFFLINE):
            return reject("bad_status", "status must be 'online' or 'offline'", device_id)
        return StatusReport(device_id, status, received_at, retained, topic, payload)
    if kind == OTA:
        return _parse_ota(topic, device_id, payload, received_at, reject)
    return reject("unknown_kind", f"no handler for topic kind {kind!r}", device_id)


def _parse_ota(topic, device_id, payload, received_at, reject):
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        return reject("not_json", str(exc)[:200], device_id)
    if not isinstance(body, dict):
        return reject("bad_type", "an ota report must be a JSON object", device_id)
    command_id = body.get("command_id")
    if not isinstance(command_id, str) or not COMMAND_ID_RE.fullmatch(command_id):
        return reject("bad_command_id", "command_id must name the command answered", device_id)
    state = body.get("state")
    if state not in OTA_STATES:
        return reject("bad_ota_state", f"state must be one of {sorted(OTA_STATES)}", device_id)
    campaign = body.get("campaign")
    if campaign is not None and (not _is_int(campaign) or not 0 < campaign < MAX_COUNTER):
        return reject("bad_campaign", "campaign must be a positive integer", device_id)
    progress = body.get("progress")
    if progress is not None and (not _is_int(progress) or not 0 <= progress <= 100):
        return reject("bad_progress", "progress must be an integer from 0 to 100", device_id)
    reason = body.get("reason")
    if reason is not None and (
        not isinstance(reason, str) or len(reason) > MAX_REASON_LEN or "\x00" in reason
    ):
        return reject("bad_reason", f"reason must be text of up to {MAX_REASON_LEN}", device_id)
    return OtaReport(
        device_id, command_id, campaign, state, progress, reason, received_at, topic, payload
    )


def _parse_heartbeat(topic, device_id, payload, received_at, limits, reject):
    try:
        # orjson also refuses NaN, Infinity and integers beyond 64 bits.
        body = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        return reject("not_json", str(exc)[:200], device_id)
    if not isinstance(body, dict):
        return reject("bad_type", "heartbeat must be a JSON object", device_id)

    claimed = body.get("device_id")
    if claimed is not None and claimed != device_id:
        return reject("id_mismatch", f"payload device_id {str(claimed)[:64]!r} != topic", device_id)

    seq = body.get("seq")
    if not _is_int(seq) or not 0 <= seq < MAX_COUNTER:
        return reject("bad_seq", "seq must be a non-negative integer", device_id)

    fw = body.get("fw")
    if fw is not None and (
        not isinstance(fw, str) or not 0 < len(fw) <= MAX_FW_LEN or "\x00" in fw
    ):
        return reject("bad_fw", f"fw must be a string of 1-{MAX_FW_LEN} characters", device_id)

    uptime = body.get("uptime_s")
    if uptime is not None and (not _is_int(uptime) or not 0 <= uptime < MAX_COUNTER):
        return reject("bad_uptime", "uptime_s must be a non-negative integer", device_id)

    next_checkin = body.get("next_checkin_s")
    if next_checkin is not None and (
        not _is_int(next_checkin) or not 0 < next_checkin <= MAX_NEXT_CHECKIN_S
    ):
        return reject(
            "bad_next_checkin",
            f"next_checkin_s must be an integer of seconds from 1 to {MAX_NEXT_CHECKIN_S} (7 days)",
            device_id,
        )

    metrics = body.get("metrics", {})
    problem = _metrics_problem(metrics)
    if problem:
        return reject("bad_metrics", problem, device_id)

    raw_ts = body.get("ts")
    device_ts = None
    if raw_ts is None:
        ts, from_receipt = received_at, True
    else:
        if not isinstance(raw_ts, str):
            return reject("bad_ts", "ts must be an RFC 3339 string", device_id)
        try:
            device_ts = datetime.fromisoformat(raw_ts)
        except ValueError:
            return reject("bad_ts", f"ts {raw_ts[:40]!r} is not RFC 3339", device_id)
        if device_ts.tzinfo is None:
            return reject("bad_ts", "ts must carry a UTC offset (RFC 3339)", device_id)
        if received_at - limits.clock_behind <= device_ts <= received_at + limits.clock_ahead:
            ts, from_receipt, device_ts = device_ts, False, None
        else:
            # A wildly wrong clock: keep the heartbeat, trust our own clock, remember the claim.
            ts, from_receipt = received_at, True

    return Heartbeat(
        device_id=device_id,
        ts=ts,
        seq=seq,
        received_at=received_at,
        fw=fw,
        uptime_s=uptime,
        metrics_json=orjson.dumps(metrics).decode(),
        ts_from_receipt=from_receipt,
        device_ts=device_ts,
        next_checkin_s=next_checkin,
        topic=topic,
        payload=payload,
    )


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _metrics_problem(metrics) -> str | None:
    if not isinstance(metrics, dict):
        return "metrics must be an object of numbers"
    if len(metrics) > MAX_METRICS:
        return f"more than {MAX_METRICS} metrics"
    for name, value in metrics.items():
        if not 0 < len(name) <= MAX_METRIC_NAME_LEN or "\x00" in name:
            return f"metric name must be 1-{MAX_METRIC_NAME_LEN} printable characters"
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"metric {name[:64]!r} is not a number"
        if isinstance(value, float) and not math.isfinite(value):
            return f"metric {name[:64]!r} is not finite"
        if abs(value) > MAX_METRIC_MAGNITUDE:
            return f"metric {name[:64]!r} is out of range"
    return None


# -- what devices send: the simulator and the tests build their messages with these ---------
# They do not check what they are given: a test may build a message the parser refuses.


def format_ts(ts: datetime) -> str:
    """A device's time as it sends it: RFC 3339 in UTC, to the millisecond."""
    return ts.astimezone(UTC).isoformat(timespec="milliseconds")


def heartbeat_body(
    *,
    seq: int,
    ts: datetime | None = None,
    fw: str | None = None,
    uptime_s: int | None = None,
    metrics: dict[str, float] | None = None,
    device_id: str | None = None,
    next_checkin_s: int | None = None,
) -> dict:
    """A heartbeat's JSON object; fields given as None are left out (`ts`: timed by receipt;
    `next_checkin_s`: no sleep announced, as a version 1 device sends)."""
    body: dict = {} if device_id is None else {"device_id": device_id}
    if ts is not None:
        body["ts"] = format_ts(ts)
    body["seq"] = seq
    fields = (
        ("fw", fw),
        ("uptime_s", uptime_s),
        ("metrics", metrics),
        ("next_checkin_s", next_checkin_s),
    )
    for name, value in fields:
        if value is not None:
            body[name] = value
    return body


def ota_report_body(
    *,
    command_id: str,
    campaign: int | None,
    state: str,
    progress: int | None = None,
    reason: str | None = None,
    ts: datetime | None = None,
) -> dict:
    """An update report's JSON object: one step of the command `command_id`."""
    body: dict = {"command_id": command_id, "campaign": campaign, "state": state}
    if progress is not None:
        body["progress"] = progress
    if reason is not None:
        body["reason"] = reason
    if ts is not None:
        body["ts"] = format_ts(ts)
    return body


def encode_body(body: dict) -> bytes:
    """A heartbeat's or update report's object as the compact JSON a device publishes."""
    return orjson.dumps(body)


def heartbeat_payload(**fields) -> bytes:
    """The payload of a heartbeat (the arguments of `heartbeat_body`)."""
    return encode_body(heartbeat_body(**fields))


def ota_report_payload(**fields) -> bytes:
    """The payload of an update report (the arguments of `ota_report_body`)."""
    return encode_body(ota_report_body(**fields))


def status_payload(status: str) -> bytes:
    """The payload of a status message: `online` (birth) or `offline` (Last Will)."""
    if status not in (ONLINE, OFFLINE):
        raise ValueError(f"status must be {ONLINE!r} or {OFFLINE!r}, not {status!r}")
    return status.encode()
