"""The heartbeat parser: every message becomes a record, and nothing raises."""

import json
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from contract.messages import (
    KEPT_PAYLOAD_BYTES,
    KEPT_TOPIC_CHARS,
    OFFLINE,
    ONLINE,
    Heartbeat,
    Limits,
    OtaReport,
    Rejection,
    StatusReport,
    heartbeat_payload,
    ota_report_payload,
    parse_message,
    status_payload,
)

NOW = datetime(2026, 11, 25, 14, 2, tzinfo=UTC)
GOOD = {
    "ts": "2026-11-25T14:01:30Z",
    "seq": 7,
    "fw": "2.4.1",
    "uptime_s": 3600,
    "metrics": {"battery_pct": 87.5, "temp_c": 41.0, "rssi_dbm": -67},
}


def parse(topic="fleet/dev-1/heartbeat", payload=None, **kw):
    body = payload if isinstance(payload, bytes) else json.dumps(payload or GOOD).encode()
    return parse_message(topic, body, prefix="fleet", received_at=NOW, **kw)


def test_good_heartbeat_keeps_device_time_and_fields():
    hb = parse()
    assert isinstance(hb, Heartbeat)
    assert (hb.device_id, hb.seq, hb.fw, hb.uptime_s) == ("dev-1", 7, "2.4.1", 3600)
    assert hb.ts == datetime(2026, 11, 25, 14, 1, 30, tzinfo=UTC)
    assert not hb.ts_from_receipt and not hb.clock_skewed
    assert json.loads(hb.metrics_json) == GOOD["metrics"]


def test_heartbeat_without_ts_is_timed_by_receipt():
    hb = parse(payload={"seq": 1})
    assert isinstance(hb, Heartbeat)
    assert hb.ts == NOW and hb.ts_from_receipt and not hb.clock_skewed


@pytest.mark.parametrize(
    "device_ts",
    ["1970-01-01T00:00:00Z", "2031-01-01T00:00:00+00:00", "2026-11-25T14:10:00Z"],
)
def test_wildly_wrong_clock_is_replaced_and_flagged(device_ts):
    hb = parse(payload={**GOOD, "ts": device_ts})
    assert isinstance(hb, Heartbeat)
    assert hb.ts == NOW and hb.ts_from_receipt and hb.clock_skewed
    assert hb.device_ts == datetime.fromisoformat(device_ts)


def test_backlog_from_hours_ago_keeps_device_time():
    hb = parse(payload={**GOOD, "ts": (NOW - timedelta(hours=5)).isoformat()})
    assert hb.ts == NOW - timedelta(hours=5) and not hb.clock_skewed


def test_status_online_and_offline():
    st = parse("fleet/dev-1/status", b"offline", retained=True)
    assert isinstance(st, StatusReport)
    assert (st.device_id, st.status, st.retained) == ("dev-1", "offline", True)


# (topic, payload, expected reason): each a kind of bad input seen in the wild.
REJECTIONS = [
    ("fleet/dev-1/heartbeat", b"not json", "not_json"),
    ("fleet/dev-1/heartbeat", b"\xff\xfe\x00", "not_json"),
    ("fleet/dev-1/heartbeat", b"[" * 3000, "not_json"),
    ("fleet/dev-1/heartbeat", b"[1, 2]", "bad_type"),
    ("fleet/dev-1/heartbeat", b'{"fw": "1.0"}', "bad_seq"),
    ("fleet/dev-1/heartbeat", b'{"seq": "7"}', "bad_seq"),
    ("fleet/dev-1/heartbeat", b'{"seq": true}', "bad_seq"),
    ("fleet/dev-1/heartbeat", b'{"seq": -1}', "bad_seq"),
    ("fleet/dev-1/heartbeat", b'{"seq": 1.5}', "bad_seq"),
    ("fleet/dev-1/heartbeat", b'{"seq": 1, "fw": 2}', "bad_fw"),
    ("fleet/dev-1/heartbeat", b'{"seq": 1, "fw": "a\\u0000b"}', "bad_fw"),
    ("fleet/dev-1/heartbeat", b'{"seq": 1, "uptime_s": "x"}', "bad_uptime"),
    ("fleet/dev-1/heartbeat", b'{"seq": 1, "metrics": [1]}', "bad_metrics"),
    ("fleet/dev-1/heartbeat", b'{"seq": 1, "metrics": {"t": "hot"}}', "bad_metrics"),
    ("fleet/dev-1/heartbeat", b'{"seq": 1, "metrics": {"t": NaN}}', "not_json"),
    ("fleet/dev-1/heartbeat", b'{"seq": 99999999999999999999999}', "bad_seq"),
    ("fleet/dev-1/heartbeat", b'{"seq": 1, "metrics": {"t": 1e300}}', "bad_metrics"),
    ("fleet/dev-1/heartbeat", b'{"seq": 1, "metrics": {"\\u0000": 1}}', "bad_metrics"),
    ("fleet/dev-1/heartbeat", b'{"seq": 1, "ts": 12345}', "bad_ts"),
    ("fleet/dev-1/heartbeat", b'{"seq": 1, "ts": "yesterday"}', "bad_ts"),
    ("fleet/dev-1/heartbeat", b'{"seq": 1, "ts": "2026-11-25T14:00:00"}', "bad_ts"),
    ("fleet/dev-1/heartbeat", b'{"seq": 1, "device_id": "dev-2"}', "id_mismatch"),
    ("fleet/dev-1/heartbeat", b'{"seq": 1, "pad": "' + b"x" * 5000 + b'"}', "oversize"),
    ("fleet/bad id!/heartbeat", b'{"seq": 1}', "bad_device_id"),
    ("fleet/" + "d" * 65 + "/heartbeat", b'{"seq": 1}', "bad_device_id"),
    ("fleet/dev-1/heartbeat/extra", b'{"seq": 1}', "bad_topic"),
    ("other/dev-1/heartbeat", b'{"seq": 1}', "bad_topic"),
    ("fleet/dev-1/telemetry", b'{"seq": 1}', "unknown_kind"),
    ("fleet/dev-1/status", b"maybe", "bad_status"),
]


@pytest.mark.parametrize(("topic", "payload", "reason"), REJECTIONS)
def test_bad_input_is_rejected_with_its_reason(topic, payload, reason):
    record = parse(topic, payload)
    assert isinstance(record, Rejection)
    assert record.reason == reason
    assert record.payload == payload[:KEPT_PAYLOAD_BYTES] and record.topic == topic
    assert record.payload_size == len(payload)
    assert record.detail


def test_a_rejection_keeps_a_bounded_prefix_of_what_it_is_given():
    huge = b"x" * (8 * 1024 * 1024)
    long_topic = "fleet/" + "t/" * 40_000 + "heartbeat"

    record = parse(long_topic, huge)

    assert (record.reason, len(record.payload), record.payload_size) == (
        "bad_topic",
        KEPT_PAYLOAD_BYTES,
        len(huge),
    )
    assert record.topic == long_topic[:KEPT_TOPIC_CHARS]


def test_the_database_holds_the_same_payload_bound(conn):
    insert = (
        "INSERT INTO rejected_messages (received_at, topic, reason, payload, payload_size) "
        "VALUES (now(), 't', 'oversize', %s, %s)"
    )
    conn.execute(insert, (b"x" * KEPT_PAYLOAD_BYTES, KEPT_PAYLOAD_BYTES))
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute(insert, (b"x" * (KEPT_PAYLOAD_BYTES + 1), KEPT_PAYLOAD_BYTES + 1))


def test_metrics_count_is_bounded():
    many = {f"m{i}": i for i in range(65)}
    assert parse(payload={"seq": 1, "metrics": many}).reason == "bad_metrics"


def test_limits_are_configurable():
    small = Limits(max_payload_bytes=10)
    assert parse(payload={"seq": 1, "fw": "1.0.0"}, limits=small).reason == "oversize"


# -- the encoders devices use: what they build, the parser takes back -----------------------


def test_an_encoded_heartbeat_parses_to_what_was_encoded():
    at = datetime(2026, 11, 25, 14, 1, 30, 123456, tzinfo=UTC)
    metrics = {"battery_pct": 87.5, "rssi_dbm": -67}
    payload = heartbeat_payload(
        seq=812, ts=at, fw="2.4.1", uptime_s=86400, metrics=metrics, device_id="dev-1"
    )
    hb = parse("fleet/dev-1/heartbeat", payload)
    assert isinstance(hb, Heartbeat)
    assert (hb.seq, hb.fw, hb.uptime_s) == (812, "2.4.1", 86400)
    assert hb.ts == at.replace(microsecond=123000)  # devices send milliseconds
    assert not hb.ts_from_receipt
    assert json.loads(hb.metrics_json) == metrics


def test_a_heartbeat_without_optional_fields_carries_only_seq():
    assert json.loads(heartbeat_payload(seq=1)) == {"seq": 1}
    hb = parse(payload=heartbeat_payload(seq=1))
    assert hb.ts_from_receipt and hb.fw is None and hb.uptime_s is None


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"state": "accepted"}, ("accepted", None, None)),
        ({"state": "downloading", "progress": 40}, ("downloading", 40, None)),
        ({"state": "failed", "reason": "low_battery", "ts": NOW}, ("failed", None, "low_battery")),
    ],
)
def test_an_encoded_update_report_parses_to_what_was_encoded(fields, expected):
    payload = ota_report_payload(command_id="c12-dev-1-1", campaign=12, **fields)
    report = parse("fleet/dev-1/ota", payload)
    assert isinstance(report, OtaReport)
    assert (report.command_id, report.campaign_id) == ("c12-dev-1-1", 12)
    assert (report.state, report.progress, report.reason) == expected


@pytest.mark.parametrize("status", [ONLINE, OFFLINE])
def test_an_encoded_status_parses_back(status):
    report = parse("fleet/dev-1/status", status_payload(status))
    assert isinstance(report, StatusReport) and report.status == status


def test_only_online_and_offline_are_statuses():
    with pytest.raises(ValueError, match="status must be"):
        status_payload("sleepy")
