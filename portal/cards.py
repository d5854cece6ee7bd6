"""A customer's device as a card on their page: its status in words, since when, battery,
signal, firmware and what to do now. Pure: a row, the customer's timezone and `now` in, a
card out; api/home.py reads the rows.

    device_card(device, timezone, now)  one card
    group_by_place(cards)               cards grouped by place (devices without one together),
                                        problems first within a group

The advice is the messages' own (alerts/templates.py): the page says what the email said.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from alerts.templates import DEFAULT_WHAT_TO_DO, DEVICE_KIND_NAMES, HEALTH_WHAT_TO_DO, WHAT_TO_DO

# A health incident's kind is its rule's name (monitor/rules.py); its words on a card.
HEALTH_WORDS = {
    "low_battery": "Battery low",
    "battery_drain": "Battery draining fast",
    "reboot_loop": "Keeps restarting",
    "temperature": "Temperature out of range",
    "flaky_link": "Connection keeps dropping",
    "unstable_connection": "Connection keeps dropping",
}
BATTERY_KINDS = frozenset({"low_battery", "battery_drain"})
# Wi-Fi and mobile received signal strength, in dBm: the usual bands people are shown.
SIGNAL_BANDS = ((-67.0, "good"), (-80.0, "fair"))
SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}
NOT_WATCHED = "Not watched: you said it is off on purpose; we watch it again when it reports"


@dataclass(frozen=True, slots=True)
class OpenIncident:
    id: int
    kind: str
    severity: str
    opened_at: datetime


@dataclass(frozen=True, slots=True)
class DeviceRow:
    """A device as the registry and device_state hold it, with its open incidents."""

    id: str
    name: str | None
    device_type: str
    model_name: str
    status: str
    status_changed_at: datetime | None
    last_seen_at: datetime | None
    firmware: str | None
    last_metrics: Mapping[str, Any] | None
    open_incidents: Sequence[OpenIncident] = field(default_factory=tuple)
    # A place (site) in the registry, when it has one (a later issue); whether it is watched
    # (not when its owner said it is off on purpose: status 'paused'), and the end of the
    # owner's snooze of its alerts.
    place: str | None = None
    # The device it connects through (its parent: a hub), by name.
    behind: str | None = None
    watching: bool = True
    snoozed_until: datetime | None = None


def local_time(at: datetime, timezone: str, now: datetime) -> str:
    """A moment as the customer says it: '14:02' today, 'Tue 14:02' this week, '3 Mar 14:02'
    this year, '3 Mar 2025' before."""
    zone = ZoneInfo(timezone)
    local, today = at.astimezone(zone), now.astimezone(zone)
    if local.date() == today.date():
        return f"{local:%H:%M}"
    if timedelta(0) <= today - local < timedelta(days=6):
        return f"{local:%a %H:%M}"
    if local.year == today.year:
        return f"{local.day} {local:%b %H:%M}"
    return f"{local.day} {local:%b %Y}"


def signal_words(rssi_dbm: float | None) -> str | None:
    if rssi_dbm is None:
        return None
    band = next((name for floor, name in SIGNAL_BANDS if rssi_dbm >= floor), "weak")
    return f"{band} ({round(rssi_dbm)} dBm)"


def _metric(metrics: Mapping[str, Any] | None, name: str) -> float | None:
    value = (metrics or {}).get(name)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _worst(incidents: Sequence[OpenIncident]) -> OpenIncident | None:
    ranked = sorted(incidents, key=lambda i: (SEVERITY_ORDER.get(i.severity, 9), -i.id))
    return ranked[0] if ranked else None


def _status_words(device: DeviceRow, worst: OpenIncident | None, since: str | None) -> str:
    at = f" since {since}" if since else ""
    match device.status:
        case "online":
            return "Online"
        case "offline":
            return f"Offline{at}"
        case "degraded":
            words = HEALTH_WORDS.get(worst.kind, "Needs attention") if worst else "Needs attention"
            return f"{words}{at}"
        case "never_seen":
            return "Has not connected yet"
        case "provisioned":
            return "Waiting for its first connection"
        case "retired":
            return "No longer in service"
    return device.status.replace("_", " ").capitalize()


def _what_to_do(device: DeviceRow, worst: OpenIncident | None) -> str | None:
    by_kind = WHAT_TO_DO.get(device.device_type, DEFAULT_WHAT_TO_DO)
    if device.status in ("offline", "never_seen"):
        return by_kind
    if device.status == "degraded":
        kind = worst.kind if worst else ""
        return HEALTH_WHAT_TO_DO.get(f"device_{kind}", by_kind)
    return None


def device_card(device: DeviceRow, timezone: str, now: datetime) -> dict[str, Any]:
    """The card of one device, its times in the customer's `timezone`."""
    worst = _worst(device.open_incidents)
    since = (
        local_time(device.status_changed_at, timezone, now) if device.status_changed_at else None
    )
    battery = _metric(device.last_metrics, "battery_pct")
    rssi = _metric(device.last_metrics, "rssi_dbm")
    problem = device.watching and device.status in ("offline", "degraded", "never_seen")
    snoozed = device.snoozed_until is not None and device.snoozed_until > now
    return {
        "id": device.id,
        "name": device.name or device.id,
        "kind_name": DEVICE_KIND_NAMES.get(device.device_type, device.device_type),
        "model_name": device.model_name,
        "place": device.place,
        "behind": device.behind,
        "status": device.status,
        "status_text": _status_words(device, worst, since) if device.watching else NOT_WATCHED,
        "since": device.status_changed_at,
        "problem": problem,
        "battery_pct": round(battery) if battery is not None else None,
        "battery_low": any(i.kind in BATTERY_KINDS for i in device.open_incidents),
        "signal": signal_words(rssi),
        "firmware": device.firmware,
        "last_seen_at": device.last_seen_at,
        "what_to_do": _what_to_do(device, worst) if problem else None,
        "incident_id": worst.id if worst else None,
        "watching": device.watching,
        "snoozed_until": device.snoozed_until if snoozed else None,
        "snooze_text": (
            f"Alerts paused until {local_time(device.snoozed_until, timezone, now)}"
            if snoozed
            else None
        ),
    }


def group_by_place(cards: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """[{place, devices}]: named places in name order, then the devices with none; within a
    group, problems first, then by name."""
    groups: dict[str | None, list] = {}
    for card in cards:
        groups.setdefault(card.get("place"), []).append(card)
    order = sorted(groups, key=lambda p: (p is None, (p or "").casefold()))
    return [
        {
            "place": place,
            "devices": sorted(
                groups[place], key=lambda c: (not c["problem"], c["name"].casefold(), c["id"])
            ),
        }
        for place in order
    ]
