"""A safety recall's completion for staff and regulators: the facts per device (SQL), counted
by campaigns/remedy.py `completion`, as JSON or CSV.

One query reads each device of the recall with its model and region, the first message about
the recall that reached one of its owner's channels, the acknowledgement and the remedy;
unreachable is an owner with no enabled channel, or whose every message failed.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime

from campaigns.remedy import CSV_HEADER, Completion, DeviceFacts, completion, completion_rows

_FACTS = """
WITH messages AS (
    SELECT device_id,
           min(sent_at) FILTER (WHERE status = 'sent') AS first_sent,
           count(*) AS made,
           count(*) FILTER (WHERE status IN ('pending', 'held', 'sending', 'sent')) AS live
    FROM notifications
    WHERE campaign_id = %(id)s AND customer_id IS NOT NULL
    GROUP BY device_id
)
SELECT coalesce(m.name, d.model_id), coalesce(d.region, 'none'), msg.first_sent,
       cd.acknowledged_at, cd.remedied_at,
       (cd.notified_at IS NOT NULL OR msg.made IS NOT NULL) AND (
           d.customer_id IS NULL
           OR NOT EXISTS (SELECT 1 FROM contact_channels ch
                          WHERE ch.customer_id = d.customer_id AND ch.enabled)
           OR (coalesce(msg.made, 0) > 0 AND msg.live = 0))
FROM campaign_devices cd
JOIN devices d ON d.id = cd.device_id
LEFT JOIN device_models m ON m.id = d.model_id
LEFT JOIN messages msg ON msg.device_id = cd.device_id
WHERE cd.campaign_id = %(id)s
"""


def recall_completion(conn, campaign_id: int, started: datetime, now: datetime) -> Completion:
    facts = [DeviceFacts(*row) for row in conn.execute(_FACTS, {"id": campaign_id})]
    return completion(facts, started, now)


def completion_json(result: Completion) -> dict:
    return {
        "total": result.total.as_dict(),
        "by_model_region": [
            {"model": model, "region": region, **counts.as_dict()}
            for (model, region), counts in result.by_group.items()
        ],
        "over_time": [
            {"day": day.isoformat(), **counts.as_dict()} for day, counts in result.over_time
        ],
    }


def completion_csv(result: Completion, *, campaign_id: int, as_of: datetime) -> str:
    """One row per model and region and a total, each stamped with the report's time."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("campaign_id", "as_of", *CSV_HEADER))
    for row in completion_rows(result):
        writer.writerow((campaign_id, as_of.isoformat(), *(_cell(v) for v in row)))
    return out.getvalue()


def _cell(value):
    """A text cell a spreadsheet would run as a formula (a region named '=cmd...') is quoted."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value
