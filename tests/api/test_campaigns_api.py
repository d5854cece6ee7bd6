"""Campaign routes: the firmware role creates and steers, owners see and acknowledge theirs."""

from __future__ import annotations

import pytest
from support import auth, make_device

UPDATE = {
    "name": "Thermostat 2.6.0",
    "kind": "ota_update",
    "target": {"models": ["thermostat-v2"], "firmware": "^2.0.0"},
    "target_version": "2.6.0",
    "artifact_url": "https://updates.example.com/th/2.6.0.bin",
    "artifact_sha256": "f" * 64,
    "waves": [25, 100],
    "window_start": "02:00",
    "window_end": "05:00",
    "starts_at": "2099-01-01T00:00:00Z",
}


@pytest.fixture
def thermostats(conn):
    for i, fw in enumerate(["2.0.0", "2.4.1", "1.9.0", "2.6.0", "2.5.3"]):
        make_device(conn, f"th-{i}", firmware=fw, customer_id=f"c-{i}")
    conn.execute(
        "UPDATE device_state SET firmware = d.firmware FROM devices d WHERE d.id = device_id"
    )


def test_firmware_team_creates_a_campaign_for_exactly_its_target(api, keys, thermostats):
    made = api.post("/api/v1/campaigns", json=UPDATE, headers=auth(keys.firmware))
    assert made.status_code == 201, made.text
    body = made.json()
    # ^2.0.0 takes 2.0.0, 2.4.1, 2.5.3; not 1.9.0, and 2.6.0 already has it.
    assert body["progress"]["devices"] == 3 and body["status"] == "scheduled"
    assert body["progress"]["by_wave"] == {"1": {"pending": 1}, "2": {"pending": 2}}
    assert [e["kind"] for e in body["timeline"]] == ["created"]
    devices = api.get(f"/api/v1/campaigns/{body['id']}/devices", headers=auth(keys.staff)).json()
    assert sorted(d["device_id"] for d in devices) == ["th-0", "th-1", "th-4"]
    assert api.post("/api/v1/campaigns", json=UPDATE, headers=auth(keys.staff)).status_code == 403


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"artifact_sha256": None}, "artifact_sha256"),
        ({"artifact_sha256": "XYZ"}, "pattern"),
        ({"target": {"firmware": "soon"}}, "not a firmware range"),
        ({"waves": [50, 10, 100]}, "increasing"),
        ({"waves": [10, 50]}, "100"),
        ({"window_end": None}, "both window_start and window_end"),
        ({"kind": "recall_notice"}, "safe_to_use"),
        ({"policy": {"max_attempts": 0}}, "max_attempts"),
        ({"starts_at": "2099-01-01T00:00:00"}, "offset"),
    ],
)
def test_bad_campaigns_are_refused_with_the_reason(api, keys, thermostats, change, words):
    response = api.post("/api/v1/campaigns", json={**UPDATE, **change}, headers=auth(keys.admin))
    assert response.status_code == 422 and words in response.text, response.text


def test_pause_resume_cancel_follow_the_rules(api, keys, thermostats):
    fw = auth(keys.firmware)
    campaign = api.post("/api/v1/campaigns", json=UPDATE, headers=fw).json()["id"]
    url = f"/api/v1/campaigns/{campaign}"
    assert api.post(f"{url}/resume", headers=fw).status_code == 409
    assert api.post(f"{url}/pause", headers=fw).json()["status"] == "paused"
    assert api.post(f"{url}/resume", headers=fw).json()["status"] == "scheduled"
    cancelled = api.post(f"{url}/cancel", headers=fw).json()
    assert cancelled["status"] == "cancelled"
    assert cancelled["progress"]["by_state"] == {"cancelled": 3}
    assert [e["kind"] for e in cancelled["timeline"]] == ["created", "pause", "resume", "cancel"]
    assert api.post(f"{url}/pause", headers=fw).status_code == 409
    assert api.post("/api/v1/campaigns/999999/pause", headers=fw).status_code == 404
    listed = api.get("/api/v1/campaigns?status=cancelled", headers=auth(keys.staff)).json()
    assert [c["id"] for c in listed] == [campaign]


def test_owners_see_only_campaigns_that_reached_their_devices(api, keys, thermostats, conn):
    campaign = api.post("/api/v1/campaigns", json=UPDATE, headers=auth(keys.firmware)).json()
    owner = auth(keys.customer("c-0"))
    assert api.get("/api/v1/me/campaigns", headers=owner).json() == []  # not commanded yet
    conn.execute("UPDATE campaign_devices SET attempt = 1, state = 'sent' WHERE device_id = 'th-0'")
    mine = api.get("/api/v1/me/campaigns", headers=owner).json()
    assert [(c["campaign_id"], [d["device_id"] for d in c["devices"]]) for c in mine] == [
        (campaign["id"], ["th-0"])
    ]
    assert api.get("/api/v1/campaigns", headers=owner).status_code == 403
