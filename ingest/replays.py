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

from contract.messages import StatusReport


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

    def sort(self, report: StatusReport) -> StatusReport | ReplayedStatus:
        """The report as it came, or a ReplayedStatus if it is retained and says again what
        this device's last status said. Every report goes through here, in the order
        received (paho's thread), so the memory follows the device's own order."""
        if report.retained and self._last.get(report.device_id) == report.status:
            return ReplayedStatus(report.device_id, report.status, report.received_at)
        self._last[report.device_id] = report.status
        return report
