"""GET /api/v1/releases/health: the rollups as a firmware team reads them."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from support import auth

TODAY = datetime.now(UTC).date()

_DAILY = """
INSERT INTO release_daily (model_id, firmware, day, device_days, heartbeats, expected,
                           reboots, update_reboots, offline_s, battery_drop, battery_days,
                           incidents)
VALUES (%s, %s, %s, %s, %s, %s, %s, 0, %s, 0, 0, %s)
"""


def test_release_health_compares_each_version_with_the_one_it_replaced(api, conn, keys):
    conn.execute(_DAILY, ("camera-v1", "2.4.1", TODAY, 500, 72_000, 72_000, 50, 600.0, "{}"))
    conn.execute(
        _DAILY,
        ("camera-v1", "2.5.0", TODAY, 500, 72_000, 72_000, 100, 600.0, json.dumps({"offline": 3})),
    )
    conn.execute(_DAILY, ("thermostat-v2", "9.9.9", TODAY, 5, 1, 1, 1, 0.0, "{}"))
    response = api.get(
        "/api/v1/releases/health?model=camera-v1&window_days=7", headers=auth(keys.firmware)
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "camera-v1" and body["last_day"] == TODAY.isoformat()
    assert [(v["firmware"], v["baseline"]) for v in body["versions"]] == [
        ("2.5.0", "2.4.1"),
        ("2.4.1", None),
    ]
    reboots = next(v for v in body["versions"][0]["vitals"] if v["name"] == "reboots")
    assert reboots["rate"] == 0.2 and reboots["verdict"] == "worse"
    assert reboots["ratio"]["estimate"] == 2.0 and reboots["ratio"]["low"] > 1.0
    offline = next(v for v in body["versions"][0]["vitals"] if v["name"] == "incidents:offline")
    assert offline["rate"] == 6.0  # per 1,000 device-days
    assert "9.9.9" not in response.text  # another model's


def test_release_health_refuses_bad_input_clearly(api, keys):
    key = auth(keys.staff)
    assert api.get("/api/v1/releases/health?model=nope", headers=key).status_code == 404
    assert api.get("/api/v1/releases/health", headers=key).status_code == 422
    for bad in ("window_days=0", "window_days=91", "model=a%20b"):
        query = bad if bad.startswith("model") else f"model=camera-v1&{bad}"
        assert api.get(f"/api/v1/releases/health?{query}", headers=key).status_code == 422, bad
    assert api.get("/api/v1/releases/health?model=" + "x" * 65, headers=key).status_code == 422


def test_release_health_of_a_model_without_data_is_empty(api, keys):
    body = api.get("/api/v1/releases/health?model=camera-v1", headers=auth(keys.staff)).json()
    assert body["versions"] == [] and body["as_of"] is None and body["window_days"] == 30
