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


def identity(device: DeviceInfo) -> str:
    """How its owner tells the device apart: 'VIN ...', 'serial ...' or 'id ...'."""
    if device.vin:
        return f"VIN {device.vin}"
    if device.serial:
        return f"serial {device.serial}"
    return f"id {device.device_id}"


def device_context(device: DeviceInfo, *, since: datetime, back: datetime | None = None) -> dict:
    """The template fields for a notification about `device`."""
    context = {
        "device_id": device.device_id,
        "device_name": device.name or device.device_id,
        "device_kind": DEVICE_KIND_NAMES.get(device.device_type, device.device_type),
        "model_name": device.model_name,
        "identity": identity(device),
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


# A message about several devices names at most this many; the rest are counted.
DEVICES_NAMED = 10


def devices_context(devices: list[DeviceInfo]) -> dict:
    """The template fields for a message about several of one owner's devices (a staff
    update on an outage): `devices_title` for a title, `devices_text` naming each."""
    named = [
        f"{d.name or d.device_id} ({DEVICE_KIND_NAMES.get(d.device_type, d.device_type)}, "
        f"{identity(d)})"
        for d in devices[:DEVICES_NAMED]
    ]
    more = len(devices) - len(named)
    if more:
        named.append(f"{more} more")
    if len(devices) == 1:
        d = devices[0]
        kind = DEVICE_KIND_NAMES.get(d.device_type, d.device_type)
        title = f"your {kind} {d.name or d.device_id}"
        text = f"your {named[0]}"
    else:
        title = f"{len(devices)} of your devices"
        text = f"{title}: {', '.join(named)}"
    # Names only, for a line that must stay short (an SMS about a home's devices).
    names = [d.name or d.device_id for d in devices[:DEVICES_NAMED]]
    if more:
        names.append(f"{more} more")
    return {
        "device_count": len(devices),
        "devices_title": title,
        "devices_text": text,
        "device_names": ", ".join(names),
    }
