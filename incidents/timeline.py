"""An incident's timeline: one line per thing that happened to it (`incident_events`).

The lifecycle writes `opened`, `resolved`, `acknowledged`, `comment`, `attached`, ...; the
alerts side writes what became of its messages (`notified`, `notification_failed`,
`silenced`, `rate_limited`) through `record_events` too.
"""

from __future__ import annotations

import json
from datetime import datetime

import psycopg

# Big batches (a fleet outage) go as binary arrays: dumping 10,000 values as text costs
# psycopg tens of milliseconds per array.
_EVENTS = """
INSERT INTO incident_events (incident_id, at, kind, detail)
SELECT t.id, %(now)s, t.kind, t.detail::jsonb
FROM unnest(%(ids)b::bigint[], %(kinds)b::text[], %(details)b::text[]) AS t(id, kind, detail)
"""


def record_events(
    conn: psycopg.Connection, events: list[tuple[int, str, dict | str]], now: datetime
) -> int:
    """Add (incident id, kind, detail) lines to timelines, all at `now`; return how many."""
    if events:
        conn.execute(
            _EVENTS,
            {
                "now": now,
                "ids": [i for i, _, _ in events],
                "kinds": [k for _, k, _ in events],
                "details": [d if isinstance(d, str) else json.dumps(d) for _, _, d in events],
            },
        )
    return len(events)
