"""How much of one device's garbage the database keeps (pure).

A rejected message is stored in `rejected_messages` so that someone can see what a device
sends wrong, and one sample a few seconds tells that as well as a thousand. A device sending
thousands of bad messages a second must not fill the database, nor the ingest's log: at most
`per_device_per_minute` rejections are kept per device in each minute of the ingest's clock;
the rest are counted (`ingest_status.rejected_unkept_total`) and dropped. Messages without a
device id (a topic outside the contract) share one allowance.

Each kept rejection holds at most `contract.messages.KEPT_PAYLOAD_BYTES` of its payload and
the payload's size; `rejected_messages` is emptied after FLEETWATCH_INGEST_REJECTED_RETENTION_DAYS
(ingest.writer.drop_old_rejections). One device can thus hold at most
per_device_per_minute x 1,440 x retention days rows of about a kilobyte.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from contract.messages import Rejection


@dataclass(frozen=True)
class RejectionsKept:
    """How many rejections each device has had kept in `minute` (None: nothing yet)."""

    minute: datetime | None = None
    by_device: dict[str | None, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Rationed:
    """What to store of some rejections, how many not, and the allowance used after them."""

    kept: list[Rejection]
    unkept: int
    used: RejectionsKept


def ration_rejections(
    rejections: Sequence[Rejection],
    used: RejectionsKept,
    *,
    now: datetime,
    per_device_per_minute: int,
) -> Rationed:
    """Keep each device's rejections, in order, while it has had fewer than
    `per_device_per_minute` kept in the minute of `now`; count the others."""
    minute = now.replace(second=0, microsecond=0)
    by_device = dict(used.by_device) if used.minute == minute else {}
    kept: list[Rejection] = []
    unkept = 0
    for rejection in rejections:
        so_far = by_device.get(rejection.device_id, 0)
        if so_far < per_device_per_minute:
            by_device[rejection.device_id] = so_far + 1
            kept.append(rejection)
        else:
            unkept += 1
    return Rationed(kept, unkept, RejectionsKept(minute, by_device))
