"""Retained statuses sent again, told apart in memory before they cost a database write.

A device's status (`online` birth, `offline` will) is retained, so brokers send it again:
on a new subscription, and, from an edge broker, every time its bridge connects to the
core. Mosquitto's bridge queues every retained message of its topics again on each
connection attempt (eclipse-mosquitto/mosquitto#2248, open), so a 48 s core outage at
100,000 devices sent the ingest more than a million old statuses, which starved heartbeat
storage for minutes. The database's rule already records a retained status only when it
is news (ingest/writer.py); this lets the ingest skip the ones it can tell are not news
without asking the database: a retained status equal to the last status this ingest saw
from that device.

That memory is only right when this ingest sees every status of every device, in order:
not in a shared subscription group, where another ingest may have taken the change in
between. There the database alone decides.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg

from contract.messages import StatusReport

# Where a fresh ingest starts from: the last status the database holds for each device,
# which is what its rule compares a retained status with.
_STORED = "SELECT device_id, connectivity FROM device_state WHERE connectivity IS NOT NULL"


@dataclass(frozen=True, slots=True)
class ReplayedStatus:
    """A retained status that says what the device's last status said: acknowledged in its
    turn, nothing written."""

    device_id: str
    status: str
    received_at: datetime


class LastStatuses:
    """The last status seen from each device, by this ingest (one short string each:
    ~100 bytes a device)."""

    def __init__(self) -> None:
        self._last: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._last)

    def seed(self, pairs) -> int:
        """Start from these (device, status) pairs; return how many there are."""
        self._last.update(pairs)
        return len(self._last)

    def sort(self, report: StatusReport) -> StatusReport | ReplayedStatus:
        """The report as it came, or a ReplayedStatus if it is retained and says again what
        this device's last status said. Every report goes through here, in the order
        received (paho's thread), so the memory follows the device's own order."""
        if report.retained and self._last.get(report.device_id) == report.status:
            return ReplayedStatus(report.device_id, report.status, report.received_at)
        self._last[report.device_id] = report.status
        return report


def stored_statuses(conn: psycopg.Connection) -> LastStatuses:
    """A memory seeded with the database's last status of every device. Without it, an
    ingest restarted in the middle of a bridge's replay (the drill kills one then) sent
    every device's first replay to the database, and grew by its whole memory of the fleet
    after its start (~17 MB at 100,000 devices), which reads as a leak. It costs one read
    of device_state at start (about a second and ~150 MB at a million devices: a fleet that
    size runs its ingests in a shared group, where this memory is off)."""
    last = LastStatuses()
    last.seed(conn.execute(_STORED))
    return last
