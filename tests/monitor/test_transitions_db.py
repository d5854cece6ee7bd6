"""Applying a tick's transitions against the database: the order rows are written in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from support import make_device

from ingest.writer import record_progress

NOW = datetime.now(UTC).replace(microsecond=0)
S = timedelta(seconds=1)


def test_a_batch_is_written_in_device_id_order_whatever_order_its_deadlines_came_in(conn, tick):
    # The due query hands devices over by deadline; here the last id is due first. Written
    # in id order, every monitor locks a batch's rows in one order (no deadlock between
    # two racing monitors) and consecutive key lookups share their index pages.
    ids = [f"dev-{n}" for n in range(1, 7)]
    for n, device_id in enumerate(ids):
        make_device(conn, device_id, customer_id="ann")
        conn.execute(
            "UPDATE device_state SET status = 'online', last_received_at = %(heard)s, "
            "last_seen_at = %(heard)s, overdue_at = %(due)s WHERE device_id = %(id)s",
            {"heard": NOW - 10 * 60 * S, "due": NOW - (n + 1) * S, "id": device_id},
        )
    record_progress(conn, "test-ingest", NOW, caught_up_at=NOW)

    result = tick(NOW)

    assert result.applied.opened == len(ids)
    opened = [
        device_id
        for (device_id,) in conn.execute(
            "SELECT device_id FROM incidents WHERE kind = 'offline' ORDER BY id"
        )
    ]
    assert opened == ids
    assert result.applied.down_ids == ids
