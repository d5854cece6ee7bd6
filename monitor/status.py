"""A device's next status: a pure function of what is stored about it and `now`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

WATCHED = ("provisioned", "online", "degraded")
DOWN = ("offline", "never_seen")
# Not watched on purpose, by its owner, until it next reports (monitor/pause.py).
PAUSED = "paused"

# Each status in words, as staff and owners read it.
STATUS_WORDS = {
    "provisioned": "waiting for its first report",
    "never_seen": "never connected",
    "online": "online",
    "degraded": "online, with a problem",
    "offline": "offline",
    "retired": "retired",
    PAUSED: "paused by owner: not watched until it reports again",
}


@dataclass(frozen=True, slots=True)
class DeviceWatch:
    """The columns of device_state the monitor decides on."""

    device_id: str
    status: str
    status_changed_at: datetime
    overdue_at: datetime | None
    last_seen_at: datetime | None
    last_received_at: datetime | None
    connectivity: str | None = None
    connectivity_at: datetime | None = None
    # When the device said it would check in next (an announced sleep, or its model's next
    # active window): the owner's message says it did not wake up then.
    expected_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Transition:
    device_id: str
    old: str
    new: str
    # silent | last_will | never_reported | heartbeat
    reason: str
    # Going down: when it was last heard (or was due to first report); coming back: when.
    since: datetime
    # Going down silent after announcing when it would check in: that moment.
    expected_at: datetime | None = None


def next_status(watch: DeviceWatch, now: datetime, will_grace: timedelta) -> Transition | None:
    """The transition due for this device at `now`, if any.

    Offline when its deadline (overdue_at, kept by the ingest) has passed (`missed_checkin`
    when the device had announced when it would check in: `expected_at`), or once its Last
    Will has stood for `will_grace` without a newer heartbeat (a quick reconnect absorbs
    it). A provisioned device past its deadline was never seen. A heartbeat received after
    the device went down, or after its owner paused it, brings it back.
    """
    w = watch
    # A paused device comes back exactly as a down one does: by reporting.
    if w.status in DOWN or w.status == PAUSED:
        if w.last_received_at and w.last_received_at > w.status_changed_at:
            return Transition(w.device_id, w.status, "online", "heartbeat", w.last_received_at)
        return None
    if w.status not in WATCHED:
        return None
    if w.status == "provisioned":
        if w.last_received_at is None and w.overdue_at is not None and w.overdue_at <= now:
            return Transition(w.device_id, w.status, "never_seen", "never_reported", w.overdue_at)
        return None
    if (
        w.connectivity == "offline"
        and w.connectivity_at is not None
        and w.connectivity_at + will_grace <= now
        and (w.last_received_at is None or w.last_received_at < w.connectivity_at)
    ):
        return Transition(w.device_id, w.status, "offline", "last_will", w.connectivity_at)
    if w.overdue_at is not None and w.overdue_at <= now:
        since = w.last_seen_at or w.overdue_at
        reason = "silent" if w.expected_at is None else "missed_checkin"
        return Transition(w.device_id, w.status, "offline", reason, since, w.expected_at)
    return None
