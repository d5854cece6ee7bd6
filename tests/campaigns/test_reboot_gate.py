"""The health gate's reboot check: updated devices against the not-yet-updated ones, from
release health's rollups, judged by the rate ratio's interval."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from played import make_fleet, update_spec

from campaigns.gates import Health, evaluate_gate
from campaigns.policy import Policy
from campaigns.readings import CAMPAIGN_BY_ID, campaign_from_row, health_of
from campaigns.store import create_campaign

GATED = Policy(max_reboot_ratio=1.5)


@pytest.mark.parametrize(
    ("updated", "rest", "policy", "halt"),
    [
        # Three times the reboots over real cohorts: the interval is far above 1.5.
        (
            Health(100, device_days=300, reboots=60),
            Health(300, device_days=900, reboots=60),
            GATED,
            True,
        ),
        # Off unless asked for.
        (
            Health(100, device_days=300, reboots=60),
            Health(300, device_days=900, reboots=60),
            Policy(),
            False,
        ),
        # Twice, but only 4 reboots against 6: the interval reaches below 1.5.
        (
            Health(10, device_days=20, reboots=4),
            Health(300, device_days=60, reboots=6),
            GATED,
            False,
        ),
        # Under min_devices reboots: never.
        (
            Health(10, device_days=10, reboots=2),
            Health(300, device_days=900, reboots=0),
            GATED,
            False,
        ),
        # As often as the others: no.
        (
            Health(100, device_days=300, reboots=20),
            Health(300, device_days=900, reboots=60),
            GATED,
            False,
        ),
    ],
)
def test_reboot_gate(updated, rest, policy, halt):
    verdict = evaluate_gate(updated, rest, policy)
    assert verdict.halt is halt
    if halt:
        assert "reboot x3.0 as often as the others" in verdict.reason
        assert "60 in 300 device-days against 60 in 900" in verdict.reason


def test_the_gate_reads_updated_and_waiting_devices_from_the_rollups(conn):
    t0 = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=3)
    ids = make_fleet(conn, 6, fw="2.4.1", seen=t0)
    spec = update_spec(starts_at=t0, policy={"max_reboot_ratio": 1.5})
    campaign_id, _ = create_campaign(conn, spec, created_by="fw", now=t0)
    updated = ids[:3]
    conn.execute(
        "UPDATE campaign_devices SET state = 'succeeded', attempt = 1, finished_at = %s "
        "WHERE device_id = ANY(%s)",
        (t0 + timedelta(days=1, hours=3), updated),
    )
    rows = []
    for device in ids:
        for day in range(3):
            at = t0 + timedelta(days=day)
            moved = device in updated and day >= 1
            fw = "2.5.0" if moved else "2.4.1"
            rows.append((device, at.date(), fw, 5 if moved else 1, at))
    # Before its update an updated device counts nowhere: not updated, not waiting.
    conn.cursor().executemany(
        "INSERT INTO release_device_days (device_id, day, firmware, model_id, heartbeats, "
        "expected, reboots, update_reboots, offline_s, battery_drop, battery_samples, "
        "first_ts, last_ts) VALUES (%s, %s, %s, 'camera-v1', 1, 1, %s, 0, 0, 0, 0, %s, %s)",
        [(*r, r[4]) for r in rows],
    )
    campaign = campaign_from_row(conn.execute(CAMPAIGN_BY_ID, (campaign_id,)).fetchone())
    got_updated, got_rest = health_of(conn, campaign)
    assert (got_updated.device_days, got_updated.reboots) == (6, 30)
    assert (got_rest.device_days, got_rest.reboots) == (9, 9)
    verdict = evaluate_gate(got_updated, got_rest, campaign.policy)
    # x5 on 30 reboots against 9: the interval lies above 1.5.
    assert verdict.halt and "x5.0" in verdict.reason
