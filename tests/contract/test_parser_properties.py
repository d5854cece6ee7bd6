"""The heartbeat parser on arbitrary input: it always returns a record, never raises."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from contract.messages import Heartbeat, OtaReport, Rejection, StatusReport, parse_message

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
RECORDS = (Heartbeat, StatusReport, OtaReport, Rejection)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=20), inner, max_size=5)
    ),
    max_leaves=20,
)
heartbeat_like = st.fixed_dictionaries(
    {},
    optional={
        "seq": st.integers() | st.text(max_size=5) | st.none() | st.floats(),
        "ts": st.text(max_size=40)
        | st.integers()
        | st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
        "fw": st.text(max_size=80) | st.integers(),
        "uptime_s": st.integers() | st.floats() | st.text(max_size=5),
        "metrics": st.dictionaries(st.text(max_size=70), json_values, max_size=70) | json_values,
        "device_id": st.text(max_size=70),
        "command_id": st.text(max_size=140),
        "state": st.sampled_from(["accepted", "failed", "rebooting", "x"]) | st.integers(),
        "progress": st.integers() | st.text(max_size=3),
        "reason": st.text(max_size=300) | st.integers(),
        "campaign": st.integers() | st.text(max_size=5),
    },
)
topics = st.one_of(
    st.text(max_size=80),
    st.builds(
        lambda d, k: f"fleet/{d}/{k}",
        st.text(max_size=70),
        st.sampled_from(["heartbeat", "status", "ota", "cmd", ""]),
    ),
)


@settings(max_examples=500, deadline=None)
@given(topic=topics, payload=st.binary(max_size=600))
def test_any_bytes_on_any_topic_become_a_record(topic, payload):
    record = parse_message(topic, payload, prefix="fleet", received_at=NOW)
    assert isinstance(record, RECORDS)
    if isinstance(record, Rejection):
        assert record.reason and record.payload == payload


@settings(max_examples=500, deadline=None)
@given(body=heartbeat_like, kind=st.sampled_from(["heartbeat", "ota"]))
def test_near_miss_json_is_accepted_or_rejected_with_a_reason(body, kind):
    payload = json.dumps(body).encode()
    record = parse_message(f"fleet/dev-1/{kind}", payload, prefix="fleet", received_at=NOW)
    assert isinstance(record, RECORDS)
    if isinstance(record, Heartbeat):
        # What is accepted is what the storage can hold.
        assert 0 <= record.seq < 2**62 and record.ts.tzinfo is not None
        json.loads(record.metrics_json)
    elif isinstance(record, Rejection):
        assert record.reason and record.device_id == "dev-1"
