"""Release health for firmware teams: GET /releases/health (staff, firmware, admin).

Reads the per (model, firmware, day) rollup only (releases/), never raw heartbeats.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel

from api.deps import DbConn, ReaderKey
from releases.health import read_daily, release_health, rolled_to, window

router = APIRouter(tags=["releases"])

MAX_WINDOW_DAYS = 90


class RatioPublic(BaseModel):
    estimate: float | None
    low: float
    high: float | None
    method: str


class VitalPublic(BaseModel):
    name: str
    label: str
    events: float
    exposure: float
    rate: float | None
    higher_is_worse: bool
    # Against the baseline: worse, better, unclear (the interval includes 1), no events,
    # no baseline.
    verdict: str
    ratio: RatioPublic | None


class VersionPublic(BaseModel):
    firmware: str
    baseline: str | None
    first_day: date
    last_day: date
    device_days: int
    vitals: list[VitalPublic]


class ReleaseHealth(BaseModel):
    model: str
    window_days: int
    first_day: date
    last_day: date
    # The rollup has read heartbeats up to here (None: it has not run yet).
    as_of: datetime | None
    confidence: float
    versions: list[VersionPublic]


@router.get("/releases/health", response_model=ReleaseHealth)
def get_release_health(
    key: ReaderKey,
    conn: DbConn,
    model: Annotated[str, Query(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")],
    window_days: Annotated[int, Query(ge=1, le=MAX_WINDOW_DAYS)] = 30,
) -> ReleaseHealth:
    """Each firmware version of a model over the last `window_days` UTC days: device-days,
    unexpected reboots, offline minutes, battery drop, heartbeats received and incidents by
    kind, each as a rate and as a ratio to the version it replaced with a 95% interval."""
    if conn.execute("SELECT 1 FROM device_models WHERE id = %s", (model,)).fetchone() is None:
        raise HTTPException(404, f"no model {model!r}")
    first, last = window(datetime.now(UTC), window_days)
    versions = release_health(read_daily(conn, model, first, last))
    return ReleaseHealth(
        model=model,
        window_days=window_days,
        first_day=first,
        last_day=last,
        as_of=rolled_to(conn),
        confidence=0.95,
        versions=[
            VersionPublic(
                firmware=v.firmware,
                baseline=v.baseline,
                first_day=v.first_day,
                last_day=v.last_day,
                device_days=v.device_days,
                vitals=[
                    VitalPublic(
                        name=x.name,
                        label=x.label,
                        events=x.events,
                        exposure=x.exposure,
                        rate=x.rate,
                        higher_is_worse=x.higher_is_worse,
                        verdict=x.verdict,
                        ratio=RatioPublic(**vars(x.ratio)) if x.ratio else None,
                    )
                    for x in v.vitals
                ],
            )
            for v in versions
        ],
    )
