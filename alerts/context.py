"""What a message says about a device, taken from exactly that device's registry row."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from alerts.templates import DEFAULT_WHAT_TO_DO, DEVICE_KIND_NAMES, WHAT_TO_DO


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """A device with its model and owner, as the registry holds them."""

    device_id: str
    name: str | None
    serial: str | None
    vin: str | None
    device_type: str
    model_name: str
    critical: bool
    customer_id: str | None
    customer_name: str | None
    timezone: str


def local_time(at: datetime, timezone: str) -> str:
    """'14:02 on 25 Nov 2026 (Europe/Berlin)'."""
    local = at.astimezone(ZoneInfo(timezone))
    return f"{local:%H:%M} on {local.day} {local:%b %Y} ({timezone})"


def duration_text(span: timedelta) -> str:
    """'2 h 5 min', '4 min', 'under a minute'."""
    minutes = int(span.total_seconds() // 60)
    if minutes < 1:
        return "under a minute"
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    parts = [
        f"{days} d" if days else "",
        f"{hours} h" if hours else "",
        f"{minutes} min" if minutes else "",
    ]
    return " ".join(p for p in parts if p)


def device_context(device: DeviceInfo, *, since: datetime, back: datetime | None = None) -> dict:
    """The template fields for a notification about `device`."""
    if device.vin:
        identity = f"VIN {device.vin}"
    elif device.serial:
        identity = f"serial {device.serial}"
    else:
        identity = f"id {device.device_id}"
    context = {
        "device_id": device.device_id,
        "device_name": device.name or device.device_id,
        "device_kind": DEVICE_KIND_NAMES.get(device.device_type, device.device_type),
        "model_name": device.model_name,
        "identity": identity,
        "customer_name": device.customer_name or "there",
        "since": since.isoformat(),
        "since_local": local_time(since, device.timezone),
        "what_to_do": WHAT_TO_DO.get(device.device_type, DEFAULT_WHAT_TO_DO),
    }
    if back is not None:
        context["back"] = back.isoformat()
        context["back_local"] = local_time(back, device.timezone)
        context["downtime"] = duration_text(back - since)
    return context
