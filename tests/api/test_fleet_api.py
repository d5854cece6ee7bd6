"""Fleet routes: summary, device list (filters, cursor pages), detail and history."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from support import auth, make_device

NOW = datetime.now(UTC).replace(second=0, microsecond=0)


def set_state(conn, device_id: str, status: str, *, firmware: str | None = None, **metrics):
    conn.execute(
        "UPDATE device_state SET status = %s, firmware = coalesce(%s, firmware), "
        "last_seen_at = now(), last_metrics = %s WHERE device_id = %s",
        (status, firmware, json.dumps(metrics) if metrics else None, device_id),
    )


@pytest.fixture
def fleet(conn):
    """Twelve devices: three models, two regions, a few statuses, one retired."""
    for i in range(12):
        model = ("thermostat-v2", "camera-v1", "alarm-panel-v3")[i % 3]
        make_device(
            conn,
            f"dev-{i:02d}",
            model_id=model,
            name=f"Device {i}",
            serial=f"SN-{i:04d}",
            region="north" if i < 6 else "south",
            labels="pilot" if i % 4 == 0 else "",
            customer_id=f"cust-{i % 2}",
        )
        set_state(
            conn,
            f"dev-{i:02d}",
            "offline" if i in (1, 5) else "online",
            firmware="2.0.0" if i < 8 else "2.1.0",
            battery_pct=80.0 + i,
        )
    conn.execute("UPDATE devices SET retired_at = now() WHERE id = 'dev-11'")
    conn.execute("UPDATE device_state SET status = 'retired' WHERE device_id = 'dev-11'")


def test_summary_counts_every_live_device_by_status_and_dimension(api, keys, fleet, conn):
    conn.execute(
        "INSERT INTO incidents (scope, device_id, kind, severity, opened_at, summary) "
        "VALUES ('device', 'dev-01', 'offline', 'critical', now(), 'x')"
    )
    api.app.state.summary.refresh()
    body = api.get("/api/v1/fleet/summary", headers=auth(keys.firmware)).json()
    assert body["total"] == 11
    assert body["by_status"] == {"online": 9, "offline": 2}
    assert body["by_model"]["camera-v1"] == {"online": 3, "offline": 1}  # 1, 4, 7, 10
    assert body["by_region"] == {"north": {"online": 4, "offline": 2}, "south": {"online": 5}}
    assert body["by_firmware"] == {"2.0.0": {"online": 6, "offline": 2}, "2.1.0": {"online": 3}}
    assert body["by_kind"] == {"home": {"online": 9, "offline": 2}}
    assert body["open_incidents"] == {"critical": 1}


def ids(page) -> list[str]:
    return [d["id"] for d in page["items"]]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status=offline", ["dev-01", "dev-05"]),
        ("model=alarm-panel-v3", ["dev-02", "dev-05", "dev-08"]),
        ("firmware=2.1.0", ["dev-08", "dev-09", "dev-10"]),
        ("label=pilot", ["dev-00", "dev-04", "dev-08"]),
        ("region=south&model=thermostat-v2", ["dev-06", "dev-09"]),
        ("q=device 1", ["dev-01", "dev-10"]),
        ("q=SN-0007", ["dev-07"]),
        ("q=%25", []),  # a literal %, not a wildcard
        ("status=retired", ["dev-11"]),
        ("customer=cust-1&status=online", ["dev-03", "dev-07", "dev-09"]),
    ],
)
def test_device_list_filters(api, keys, fleet, query, expected):
    response = api.get(f"/api/v1/devices?{query}", headers=auth(keys.staff))
    assert response.status_code == 200, response.text
    assert ids(response.json()) == expected


def test_cursor_pages_cover_every_device_once_in_order(api, keys, fleet):
    seen, cursor = [], None
    while True:
        url = "/api/v1/devices?limit=4" + (f"&cursor={cursor}" if cursor else "")
        page = api.get(url, headers=auth(keys.staff)).json()
        seen += ids(page)
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"dev-{i:02d}" for i in range(11)]


@pytest.mark.parametrize(
    "query",
    [
        "status=sleeping",
        "limit=0",
        "limit=100000",
        "cursor=***",
        "kind=boat",
        "q=" + "x" * 65,
        "model=%00",
    ],
)
def test_bad_list_parameters_are_a_4xx_with_a_message(api, keys, fleet, query):
    response = api.get(f"/api/v1/devices?{query}", headers=auth(keys.staff))
    assert 400 <= response.status_code < 500 and response.json()["detail"]


def test_device_detail_has_state_incidents_and_connectivity(api, keys, fleet, conn):
    conn.execute(
        "INSERT INTO connectivity_events (device_id, received_at, status) "
        "VALUES ('dev-01', now() - interval '1 minute', 'online'), ('dev-01', now(), 'offline')"
    )
    conn.execute(
        "INSERT INTO incidents (scope, device_id, kind, severity, opened_at, summary) "
        "VALUES ('device', 'dev-01', 'offline', 'warning', now(), 'went offline')"
    )
    body = api.get("/api/v1/devices/dev-01", headers=auth(keys.staff)).json()
    assert (body["name"], body["model_id"], body["serial"]) == ("Device 1", "camera-v1", "SN-0001")
    assert body["status"] == "offline" and body["last_metrics"] == {"battery_pct": 81.0}
    assert [e["status"] for e in body["connectivity_events"]] == ["offline", "online"]
    assert [i["summary"] for i in body["open_incidents"]] == ["went offline"]
    assert api.get("/api/v1/devices/nope", headers=auth(keys.staff)).status_code == 404


def add_heartbeats(conn, device_id: str, start: datetime, count: int, every_s: int) -> None:
    conn.execute(
        "INSERT INTO heartbeats (device_id, ts, seq, received_at, uptime_s, metrics) "
        "SELECT %(d)s, %(t)s + i * %(step)s, i, %(t)s + i * %(step)s, i * 10, "
        "jsonb_build_object('battery_pct', 100 - i, 'temp_c', 20 + (i %% 3)) "
        "FROM generate_series(0, %(n)s - 1) AS i",
        {"d": device_id, "t": start, "step": timedelta(seconds=every_s), "n": count},
    )


def test_history_raw_and_summarised_per_bucket(api, keys, fleet, conn):
    start = NOW.replace(minute=0) - timedelta(hours=3)
    add_heartbeats(conn, "dev-00", start, 120, 60)  # two hours, one a minute
    add_heartbeats(conn, "dev-01", start, 10, 60)  # another device: never in dev-00's answer
    base = "/api/v1/devices/dev-00/history"
    window = {"from": start.isoformat(), "to": (start + timedelta(hours=3)).isoformat()}

    raw = api.get(base, params={**window, "resolution": "raw"}, headers=auth(keys.staff)).json()
    assert len(raw["points"]) == 120
    assert raw["points"][0]["metrics"] == {"battery_pct": 100, "temp_c": 20}

    hourly = api.get(base, params={**window, "resolution": "1h"}, headers=auth(keys.staff))
    points = hourly.json()["points"]
    assert [p["heartbeats"] for p in points] == [60, 60]
    assert points[0]["avg_battery_pct"] == pytest.approx(100 - 29.5)
    assert points[1]["min_battery_pct"] == 100 - 119 and points[0]["max_temp_c"] == 22

    five = api.get(base, params={**window, "resolution": "5m"}, headers=auth(keys.staff)).json()
    assert len(five["points"]) == 24 and {p["heartbeats"] for p in five["points"]} == {5}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "before"),
        ({"from": "2026-01-01T00:00:00Z", "to": "2026-03-01T00:00:00Z"}, "31 days"),
        ({"from": "2026-01-01T00:00:00", "to": "2026-01-02T00:00:00"}, "offset"),
        ({"resolution": "1w"}, "resolution"),
        ({"to": "0001-01-01T00:00:00Z"}, "too early"),
    ],
)
def test_bad_history_ranges_are_refused_with_the_reason(api, keys, fleet, params, message):
    response = api.get("/api/v1/devices/dev-00/history", params=params, headers=auth(keys.staff))
    assert 400 <= response.status_code < 500
    assert message in json.dumps(response.json())
