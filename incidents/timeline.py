"""An incident's timeline: one line per thing that happened to it (`incident_events`).

The lifecycle writes `opened`, `resolved`, `acknowledged`, `comment`, `attached`, ...; the
alerts side writes what became of its messages (`notified`, `notification_failed`,
`silenced`, `rate_limited`) through `record_events` too.
"""

from __future__ import annotations

import json
from datetime import datetime

import psycopg

# COPY: a fleet-wide burst writes ten thousand lines in the monitor's tick, at half the cost
# of an INSERT from arrays.
_COPY = "COPY incident_events (incident_id, at, kind, detail) FROM STDIN"


def record_events(
    conn: psycopg.Connection, events: list[tuple[int, str, dict | str]], now: datetime
) -> int:
    """Add (incident id, kind, detail) lines to timelines, all at `now`; return how many."""
    if events:
        with conn.cursor().copy(_COPY) as copy:
            for incident_id, kind, detail in events:
                text = detail if isinstance(detail, str) else json.dumps(detail)
                copy.write_row((incident_id, now, kind, text))
    return len(events)
