"""What one device's garbage may cost the ingest, against a real broker and PostgreSQL:
a bounded prefix of a rejected payload with its size, a bounded number of rejections per
device a minute, and a retention for `rejected_messages`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from support import count, make_device, wait_until

from contract.messages import KEPT_PAYLOAD_BYTES, heartbeat_payload
from contract.topics import heartbeat_topic, status_topic

BIG = 100_000  # over the ingest's 4 KiB limit; the test broker sets none of its own


def beat(seq: int) -> bytes:
    return heartbeat_payload(seq=seq, ts=datetime.now(UTC), uptime_s=seq)


def publish(client, topic: str, payload: bytes) -> None:
    client.publish(topic, payload, qos=1).wait_for_publish(10)


def test_an_oversized_payload_is_kept_as_its_first_bytes_and_its_size(
    conn, run_ingest, publisher, prefix
):
    make_device(conn, "dev-1")
    run_ingest()
    big = bytes(range(256)) * (BIG // 256) + b"!" * (BIG % 256)

    publish(publisher, heartbeat_topic(prefix, "dev-1"), big)
    publish(publisher, heartbeat_topic(prefix, "dev-1"), beat(1))  # the later marker

    wait_until(lambda: count(conn, "SELECT count(*) FROM heartbeats") == 1)
    rows = conn.execute("SELECT reason, payload, payload_size FROM rejected_messages").fetchall()
    assert rows == [("oversize", big[:KEPT_PAYLOAD_BYTES], BIG)]


def test_a_flood_from_one_device_stores_a_few_rejections_and_every_neighbour_heartbeat(
    conn, run_ingest, publisher, prefix
):
    for device in ("dev-flood", "dev-1", "dev-2"):
        make_device(conn, device)
    ingest = run_ingest(ingest_rejected_per_device_per_minute=5)
    flood, rounds = 2000, 20
    infos = []
    for n in range(flood):
        infos.append(publisher.publish(heartbeat_topic(prefix, "dev-flood"), b"{no", qos=1))
        if n % (flood // rounds) == 0:
            for device in ("dev-1", "dev-2"):
                topic = heartbeat_topic(prefix, device)
                infos.append(publisher.publish(topic, beat(n), qos=1))
    # The flooding device's status topic too: its allowance is per device, not per topic.
    infos.append(publisher.publish(status_topic(prefix, "dev-flood"), b"sleepy", qos=1))
    for info in infos:
        info.wait_for_publish(30)
    publish(publisher, heartbeat_topic(prefix, "dev-1"), beat(flood))  # the later marker

    stored_beats, rejected = 2 * rounds + 1, flood + 1
    wait_until(lambda: count(conn, "SELECT count(*) FROM heartbeats") == stored_beats, timeout=30)
    kept = count(conn, "SELECT count(*) FROM rejected_messages WHERE device_id = 'dev-flood'")
    # Five a minute; the flood may straddle a minute's turn.
    assert 5 <= kept <= 10
    assert count(conn, "SELECT count(*) FROM rejected_messages") == kept
    # The totals are written just after each batch's commit.
    totals = (
        "SELECT messages_total, rejected_total, rejected_unkept_total FROM ingest_status "
        "WHERE client_id = %s"
    )
    client_id = ingest.settings.ingest_client_id
    wait_until(lambda: conn.execute(totals, (client_id,)).fetchone()[0] == stored_beats + rejected)
    assert conn.execute(totals, (client_id,)).fetchone()[1:] == (kept, rejected - kept)
    wait_until(lambda: ingest.counters.rejected_unkept == rejected - kept)


def test_rejected_messages_past_retention_are_deleted(conn, run_ingest):
    now = datetime.now(UTC)
    for age_days in (8, 6):
        conn.execute(
            "INSERT INTO rejected_messages (received_at, topic, reason, detail, payload) "
            "VALUES (%s, 't/x/heartbeat', 'not_json', '', 'x')",
            (now - timedelta(days=age_days),),
        )

    run_ingest(ingest_rejected_retention_days=7)  # as it starts, then with its upkeep

    ages = conn.execute("SELECT now() - received_at FROM rejected_messages").fetchall()
    assert len(ages) == 1 and timedelta(days=6) <= ages[0][0] < timedelta(days=7)
