"""The fleet summary: counts by status and by model, firmware, kind and region.

Counting a million devices takes a good part of a second, too slow for every request, so
the API keeps one snapshot and refreshes it in the background every
FLEETWATCH_API_SUMMARY_REFRESH_S; answers carry the snapshot's `as_of`. A customer's
summary covers a few devices and is counted on each request.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter, defaultdict
from datetime import UTC, datetime

import psycopg
from psycopg_pool import ConnectionPool

from api.models import FleetSummary

log = logging.getLogger(__name__)

_COUNTS = """
SELECT coalesce(st.status, 'provisioned'), d.model_id, coalesce(st.firmware, d.firmware, ''),
       m.kind, coalesce(d.region, ''), count(*)
FROM devices d
JOIN device_models m ON m.id = d.model_id
LEFT JOIN device_state st ON st.device_id = d.id
WHERE d.retired_at IS NULL {scope}
GROUP BY 1, 2, 3, 4, 5
"""

_OPEN_INCIDENTS = """
SELECT severity, count(*) FROM incidents i
WHERE status <> 'resolved' {scope}
GROUP BY 1
"""

# One point a minute, whichever API process gets there first.
_HISTORY_POINT = """
INSERT INTO fleet_history (at, total, online, by_status)
SELECT date_trunc('minute', %(at)s::timestamptz), %(total)s, %(online)s, %(by_status)s
ON CONFLICT (at) DO NOTHING
"""


def summarize(
    conn: psycopg.Connection, now: datetime, *, customer_id: str | None = None
) -> FleetSummary:
    """Count the fleet (or one customer's devices) as it stands."""
    params = {"customer": customer_id}
    devices = "AND d.customer_id = %(customer)s" if customer_id else ""
    incidents = (
        "AND i.device_id IN (SELECT id FROM devices WHERE customer_id = %(customer)s)"
        if customer_id
        else ""
    )
    by_status: Counter[str] = Counter()
    dims: dict[str, defaultdict[str, Counter[str]]] = {
        name: defaultdict(Counter) for name in ("model", "firmware", "kind", "region")
    }
    for status, model, firmware, kind, region, n in conn.execute(
        _COUNTS.format(scope=devices), params
    ):
        by_status[status] += n
        for name, value in (
            ("model", model),
            ("firmware", firmware),
            ("kind", kind),
            ("region", region),
        ):
            dims[name][value or "unknown"][status] += n
    open_incidents = dict(conn.execute(_OPEN_INCIDENTS.format(scope=incidents), params).fetchall())
    return FleetSummary(
        as_of=now,
        total=sum(by_status.values()),
        by_status=dict(by_status),
        by_model={k: dict(v) for k, v in dims["model"].items()},
        by_firmware={k: dict(v) for k, v in dims["firmware"].items()},
        by_kind={k: dict(v) for k, v in dims["kind"].items()},
        by_region={k: dict(v) for k, v in dims["region"].items()},
        open_incidents=open_incidents,
    )


def online_count(summary: FleetSummary) -> int:
    """Devices reporting: online, or online but degraded."""
    return summary.by_status.get("online", 0) + summary.by_status.get("degraded", 0)


class SummarySnapshot:
    """The fleet-wide summary, refreshed in a background thread; `get` never waits for it."""

    def __init__(self, pool: ConnectionPool, refresh_s: float) -> None:
        self._pool = pool
        self._refresh_s = refresh_s
        self._current: FleetSummary | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="summary", daemon=True)

    def start(self) -> SummarySnapshot:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)

    def get(self) -> FleetSummary:
        """The latest snapshot (counted now if there is none yet)."""
        current = self._current
        return current if current is not None else self.refresh()

    def refresh(self) -> FleetSummary:
        """Count now, keep it, and add the minute's point to the online-share history."""
        with self._lock, self._pool.connection() as conn:
            summary = summarize(conn, datetime.now(UTC))
            conn.execute(
                _HISTORY_POINT,
                {
                    "at": summary.as_of,
                    "total": summary.total,
                    "online": online_count(summary),
                    "by_status": json.dumps(summary.by_status),
                },
            )
            self._current = summary
        return summary

    def _loop(self) -> None:
        while not self._stop.wait(self._refresh_s):
            try:
                self.refresh()
            except Exception:  # the next refresh tries again; the old snapshot stays
                log.exception("fleet summary refresh failed")
