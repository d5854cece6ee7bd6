"""What an owner may do about their device, from a message's link or on their page.

    ack             "I know": the incident is acknowledged by its owner, no more reminders
    snooze_24h/_7d  a snooze of the device (an owner's silence): ordinary alerts wait, urgent
                    ones (an alarm panel offline, a safety recall) do not
    stop_watching   "this is on purpose": the device is paused until it next reports
    confirm_recall  the owner has read the device's recall notice

`why_not(action, state)` decides, purely, whether an action is available now (None) or why
not; `available` lists those that are, with their labels. `perform` does one, each writing
through its owner (incidents/, alerts/silences.py, monitor/pause.py, campaigns/links.py),
each with a line on the incident's timeline (or the campaign's) saying who, from where.
The routes check ownership before they get here: every function trusts its device.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg

import incidents
from alerts import silences
from campaigns.links import confirm_recall
from monitor.pause import pause_device

log = logging.getLogger(__name__)

LABELS = {
    "ack": "I know: no more reminders about this",
    "snooze_24h": "Snooze this device for 24 h",
    "snooze_7d": "Snooze this device for 7 days",
    "stop_watching": "This is on purpose: stop watching it until it reports again",
    "confirm_recall": "I have read this recall notice",
}
ACTIONS = tuple(LABELS)
SNOOZE_HOURS = {"snooze_24h": 24, "snooze_7d": 168}


@dataclass(frozen=True, slots=True)
class DeviceState:
    """What decides which actions a device and its incident or recall allow now."""

    device_id: str
    status: str | None  # device_state.status; None: no state yet
    incident_id: int | None = None
    incident_status: str | None = None
    owner_acknowledged: bool = False
    campaign_id: int | None = None
    recall_state: str | None = None  # campaign_devices.state for this device
    recall_open: bool = False  # the recall campaign still takes confirmations


def why_not(action: str, state: DeviceState) -> str | None:
    """None if `action` is available for this device now; else why not, in words."""
    if action not in LABELS:
        return f"unknown action {action!r}"
    if action == "confirm_recall":
        if state.campaign_id is None or state.recall_state is None:
            return "there is no recall notice about this device to confirm"
        if state.recall_state == "acknowledged":
            return "you have already confirmed this recall notice"
        if not state.recall_open or state.recall_state != "notified":
            return "this recall notice no longer takes confirmations"
        return None
    if state.status == "retired":
        return "this device is retired"
    if action == "ack":
        if state.incident_id is None:
            return "there is no problem with this device to acknowledge"
        if state.incident_status == "resolved":
            return "this problem is over"
        if state.owner_acknowledged:
            return "you have already said you know about this problem"
        return None
    if action == "stop_watching":
        if state.status is None:
            return "this device has not been set up for watching yet"
        if state.status == "paused":
            return "this device is already not watched until it reports again"
        return None
    return None  # a snooze: any device of theirs, snoozed or not (a new one replaces it)


def available(state: DeviceState) -> list[tuple[str, str]]:
    """(action, label) of each action available now, in a fixed order."""
    return [(a, LABELS[a]) for a in ACTIONS if why_not(a, state) is None]


class NotAvailable(Exception):
    """The action cannot be done now; the message says why."""


def perform(
    conn: psycopg.Connection,
    action: str,
    state: DeviceState,
    *,
    customer_id: str,
    by: str,
    now: datetime,
) -> str:
    """Do `action` for this owner's device; return what was done, in words.

    Raises NotAvailable (why) when it is not available, including when another request got
    there first.
    """
    reason = why_not(action, state)
    if reason is not None:
        raise NotAvailable(reason)
    device = state.device_id
    if action == "ack":
        assert state.incident_id is not None
        if not incidents.acknowledge_by_owner(conn, state.incident_id, by, now):
            raise NotAvailable("this problem is over, or you have already said you know")
        return "Thank you: we will not remind you about this problem again."
    if action in SNOOZE_HOURS:
        until = snooze(conn, device, customer_id, SNOOZE_HOURS[action], by=by, now=now)
        return f"Snoozed until {until:%Y-%m-%d %H:%M} UTC: urgent alerts still reach you."
    if action == "stop_watching":
        if not pause_device(conn, device, by, now):
            raise NotAvailable("this device is already not watched until it reports again")
        return "We stopped watching this device; we will start again when it next reports."
    assert state.campaign_id is not None
    if not confirm_recall(conn, state.campaign_id, device, by, now):
        raise NotAvailable("this recall notice no longer takes confirmations")
    return "Thank you for confirming this recall notice."


_OPEN_INCIDENTS = """
SELECT id FROM incidents
WHERE scope = 'device' AND device_id = %s AND status <> 'resolved'
"""


def snooze(
    conn: psycopg.Connection,
    device_id: str,
    customer_id: str,
    hours: int,
    *,
    by: str,
    now: datetime,
) -> datetime:
    """Snooze the device for `hours` (replacing the owner's earlier snooze); its end. Each of
    its open incidents' timelines says so."""
    until = now + timedelta(hours=hours)
    with conn.transaction():
        silences.snooze_device(conn, device_id, customer_id, until, by, now)
        detail = json.dumps({"until": until.isoformat(), "by": by})
        ids = [r[0] for r in conn.execute(_OPEN_INCIDENTS, (device_id,))]
        incidents.record_events(conn, [(i, "snoozed", detail) for i in ids], now)
    log.info("device %s: snoozed until %s by %s", device_id, until.isoformat(), by)
    return until


def end_snooze(
    conn: psycopg.Connection, device_id: str, customer_id: str, *, by: str, now: datetime
) -> bool:
    """End the owner's snooze now (what it held goes out); False if there was none."""
    with conn.transaction():
        if not silences.end_snooze(conn, device_id, customer_id, now):
            return False
        detail = json.dumps({"by": by})
        ids = [r[0] for r in conn.execute(_OPEN_INCIDENTS, (device_id,))]
        incidents.record_events(conn, [(i, "unsnoozed", detail) for i in ids], now)
    log.info("device %s: snooze ended by %s", device_id, by)
    return True


def who(customer_name: str, where: str) -> str:
    """How the timeline names the owner: 'owner Jane Doe, from a message link'."""
    return f"owner {customer_name}, {where}"


FROM_LINK = "from a message link"
ON_PAGE = "on their page"
