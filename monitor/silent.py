"""The registry rows of a tick's newly silent devices, read once beside the tick for both
correlations: where each one is (its site and parent, monitor/site_watch.py) and its fleet
group attributes (model, firmware, region: monitor/fleet.py)."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

# Each device by its key (devices' primary key, then device_state's). As
# `d.id = ANY(<ten thousand ids>)` the planner chose a parallel scan of the whole registry
# (170 ms of both cores at a million devices, beside the tick's own writes); OFFSET 0 keeps
# it from flattening the lookup back into such a join. A device's reported firmware wins
# over the registry's.
_SILENT = """
SELECT d.id, d.site_id, d.parent_id, d.model_id, coalesce(s.firmware, d.firmware), d.region
FROM unnest(%(ids)b::text[]) AS t(id)
CROSS JOIN LATERAL (
    SELECT id, site_id, parent_id, model_id, firmware, region FROM devices
    WHERE id = t.id OFFSET 0
) AS d
LEFT JOIN device_state s ON s.device_id = d.id
"""


@dataclass
class SilentDevices:
    """(device, site, parent) of those placed at a site or behind a parent, and every
    device's group attributes (model, firmware, region)."""

    placed: list[tuple[str, str | None, str | None]]
    attributes: dict[str, tuple[str, str | None, str | None]]


def read_silent(conn: psycopg.Connection, ids: list[str]) -> SilentDevices:
    """The registry rows of these devices (a device no longer registered has none)."""
    placed, attributes = [], {}
    if ids:
        for device_id, site, parent, model, firmware, region in conn.execute(_SILENT, {"ids": ids}):
            if site is not None or parent is not None:
                placed.append((device_id, site, parent))
            attributes[device_id] = (model, firmware, region)
    return SilentDevices(placed, attributes)
