"""A safety recall with its over-the-air remedy, end to end: 300 simulated cars on a real
broker (30 already on the fixed version), the ingest, the campaign runner, the alerts
process (router and dispatcher) and real SMTP, ntfy and HTTP sinks; then the completion
view and its CSV against what the sinks received. Time-scaled: devices run at 100x."""

from __future__ import annotations

import csv
import io
import re
import time
from dataclasses import replace
from datetime import UTC, datetime

from support import add_channel, auth, count, wait_until

from alerts.service import Alerts
from campaigns.runner import CampaignRunner
from campaigns.store import CampaignCreate, create_campaign
from devices.registry import import_devices
from devices.simulator.device import Owner, SimDevice
from devices.simulator.fleet import build_fleet, registry_rows
from devices.simulator.ota import OtaProfile
from devices.simulator.runner import Simulator

FIXED = "5.1.0"
CARS, ALREADY_FIXED = 300, 30
VIN = re.compile(r"\b[A-HJ-NPR-Z0-9]{17}\b")


def car_fleet(prefix: str) -> list[SimDevice]:
    """300 cars, each its own owner's only device (so every message is about one car), awake
    throughout (a parked car sleeps until its next drive: it would take its update then); the
    first 30 already on the fixed version."""
    tag = prefix[-6:]
    mixed = build_fleet(CARS * 9, seed=23, fault_share=0, id_prefix=f"r{tag}")
    cars = [d for d in mixed if d.spec.profile.kind == "vehicle"][:CARS]
    assert len(cars) == CARS
    awake = replace(cars[0].spec.profile, sleeps_when_idle=False)
    return [
        SimDevice(
            replace(
                d.spec,
                profile=awake,
                firmware=FIXED if i < ALREADY_FIXED else d.spec.firmware,
                owner=Owner(f"own{tag}-{i:03d}", d.spec.owner.customer_name,
                            d.spec.owner.timezone, d.spec.owner.region),
            )
        )
        for i, d in enumerate(cars)
    ]  # fmt: skip


def test_a_recall_over_300_cars_tells_each_owner_about_their_own_car_and_counts_it_right(
    conn, dsn, make_settings, broker, prefix, run_ingest, smtp, ntfy, http_sink, api, keys
):
    fleet = car_fleet(prefix)
    rows = registry_rows(fleet)
    assert import_devices(conn, rows).ok
    vin_of = {row["customer_id"]: row["vin"] for row in rows}
    for owner in vin_of:
        add_channel(conn, owner, smtp.url(f"{owner}@example.com"), kind="email")
        add_channel(conn, owner, ntfy.url(owner), kind="push")
        add_channel(conn, owner, http_sink.url(owner), kind="webhook")
    run_ingest()
    # Some installs fail (about 8 of 270; none at all is a chance of one in ten thousand).
    sim = Simulator(
        broker[0],
        prefix=prefix,
        fleet=fleet,
        protocol=broker[1],
        time_scale=0.01,
        ota_profile=OtaProfile({("*", FIXED): {"install_failed": 0.03}}),
    )
    sim.start()
    runner = alerts = None
    try:
        ids = [d.spec.device_id for d in fleet]
        wait_until(
            lambda: (
                count(
                    conn,
                    "SELECT count(*) FROM device_state WHERE device_id = ANY(%s) "
                    "AND last_seen_at IS NOT NULL",
                    ids,
                )
                == CARS
            ),
            timeout=30,
        )
        spec = {
            "name": "Recall 26V-202: brake assist software",
            "kind": "safety_recall",
            "remedy": "ota_update",
            "target": {"models": ["car-telematics-v1"]},
            "target_version": FIXED,
            "artifact_url": "https://updates.example.com/car/5.1.0.bin",
            "artifact_sha256": "d" * 64,
            "waves": [20, 100],
            "soak_s": 0,
            "safe_to_use": True,
            "safety_critical": True,
            "avoid": "driving on motorways",
            "instructions": "Keep the car where it has mobile coverage.",
            "policy": {"step_timeout_s": 30, "reboot_timeout_s": 10, "max_attempts": 1},
        }
        campaign_id, targeted = create_campaign(
            conn, CampaignCreate.model_validate(spec), created_by="safety", now=datetime.now(UTC)
        )
        assert targeted == CARS
        started = time.monotonic()
        runner = CampaignRunner(
            make_settings(campaigns_tick_s=0.2, public_url="https://fleet.example.com"),
            dsn,
            broker[0],
        ).start()
        alerts = Alerts(make_settings(), dsn).start()

        parsed: list[tuple[str, str, str]] = []  # emails read so far: each parsed once

        def heard() -> dict[str, list[tuple[str, str, str]]]:
            """(channel, title, text) of everything received, by owner."""
            for _, m in list(smtp.messages)[len(parsed) :]:
                parsed.append(
                    (m["to"].split("@")[0], m["subject"], m.get_body(("plain",)).get_content())
                )
            out: dict[str, list] = {}
            for owner, title, text in parsed:
                out.setdefault(owner, []).append(("email", title, text))
            for kind, sink in (("push", ntfy), ("webhook", http_sink)):
                for path, received in sink.by_path().items():
                    out.setdefault(path.strip("/"), []).extend((kind, t, b) for t, b in received)
            return out

        def told(now_heard: dict, owner: str, *words: str) -> set[str]:
            return {
                k for k, t, b in now_heard.get(owner, []) if any(w in t or w in b for w in words)
            }

        def all_told(owners: list[str], *words: str) -> bool:
            now_heard = heard()
            return all(told(now_heard, o, *words) == every for o in owners)

        every = {"email", "push", "webhook"}
        fixed_owners = sorted(vin_of)[:ALREADY_FIXED]
        unfixed_owners = sorted(vin_of)[ALREADY_FIXED:]
        wait_until(
            lambda: (
                all_told(unfixed_owners, "Safety recall")
                and all_told(fixed_owners, "already has the fix")
            ),
            timeout=60,
            interval=0.5,
        )
        # Within 2 minutes of the start (here: seconds, at 100x).
        assert time.monotonic() - started < 120
        first = heard()
        for owner, messages in first.items():
            for kind, title, text in messages:
                # Their own VIN, and no other.
                assert set(VIN.findall(f"{title} {text}")) == {vin_of[owner]}, (kind, title)
        for owner in fixed_owners:
            assert all(
                f"VIN {vin_of[owner]} already has the fix (software {FIXED})" in text
                for _, _, text in first[owner]
            )

        # Every car updated or failed; every owner heard how it went.
        wait_until(
            lambda: (
                count(
                    conn,
                    "SELECT count(*) FROM campaign_devices WHERE campaign_id = %s "
                    "AND state IN ('succeeded', 'failed', 'remedied')",
                    campaign_id,
                )
                == CARS
            ),
            timeout=60,
        )
        outcome = dict(
            conn.execute(
                "SELECT d.customer_id, cd.state FROM campaign_devices cd "
                "JOIN devices d ON d.id = cd.device_id WHERE cd.campaign_id = %s",
                (campaign_id,),
            ).fetchall()
        )
        succeeded = sorted(o for o, s in outcome.items() if s == "succeeded")
        failed = sorted(o for o, s in outcome.items() if s == "failed")
        assert failed and len(succeeded) + len(failed) == CARS - ALREADY_FIXED
        wait_until(
            lambda: (
                all_told(succeeded, "now runs software")
                and all_told(failed, "What happens next", "Next:")
            ),
            timeout=30,
            interval=0.5,
        )
        final = heard()
        for owner in succeeded:
            done = [(t, b) for k, t, b in final[owner] if "now runs software" in b]
            assert all(vin_of[owner] in b and FIXED in b for _, b in done)
        for owner in failed:
            assert not told(final, owner, "now runs software")

        # The completion view and its CSV agree with what the sinks received.
        view = api.get(f"/api/v1/campaigns/{campaign_id}/completion", headers=auth(keys.staff))
        total = view.json()["total"]
        reached = {o for o, messages in final.items() if messages}
        assert total["devices"] == CARS
        assert total["notified"] == len(reached) == CARS
        assert total["remedied"] == ALREADY_FIXED + len(succeeded)
        assert total["unreachable"] == 0 and total["acknowledged"] == 0
        report = api.get(
            f"/api/v1/campaigns/{campaign_id}/completion.csv", headers=auth(keys.staff)
        )
        rows = list(csv.DictReader(io.StringIO(report.text)))
        assert rows[-1]["model"] == "all"
        assert int(rows[-1]["remedied"]) == total["remedied"]
        assert sum(int(r["devices"]) for r in rows[:-1]) == CARS
        regions = {row["region"] for row in registry_rows(fleet)}
        assert {r["region"] for r in rows[:-1]} == regions
    finally:
        if runner is not None:
            runner.stop()
        if alerts is not None:
            alerts.stop()
        sim.stop()
