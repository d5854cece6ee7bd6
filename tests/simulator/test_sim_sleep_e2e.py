"""End to end: simulated cars sleep when parked and one fails to wake.

The simulator's cars publish to a real broker, the ingest stores their announced sleeps in
their deadlines, the monitor watches and the alerts process sends to a local HTTP sink.
No sleeping car is declared offline; the owner of the one that does not wake gets exactly
one message, naming the time it was due.

Time is squeezed (time_scale 0.002): a car drives 2.4 s and parks 4.8 s of every 7.2 s, a
heartbeat every 0.6 s; each car's own deadline is 2 s and the model's grace 2 s.
"""

from __future__ import annotations

from dataclasses import replace

from support import add_channel, count, wait_until

from alerts.service import Alerts
from devices.registry import import_devices
from devices.simulator.device import DeviceSpec, Owner, SimDevice
from devices.simulator.fleet import registry_rows
from devices.simulator.profiles import PROFILES, Activity
from devices.simulator.runner import Simulator
from devices.simulator.scenarios import make_fault
from monitor.service import Monitor

TIME_SCALE = 0.002
CARS = 4
CAR = replace(
    PROFILES["car-telematics-v1"],
    activity=Activity(name="driving", period_s=3600, active_s=1200),
)
# The longest a car is silent while asleep, with room for a slow machine.
SLEEP_GAP = "interval '3 seconds'"


def cars(prefix: str) -> list[SimDevice]:
    fleet = []
    for n in range(CARS):
        spec = DeviceSpec(
            device_id=f"{prefix}-car-{n}",
            profile=CAR,
            firmware="5.0.2",
            serial=f"CT1-{prefix}-{n}",
            name=f"Car {n}",
            owner=Owner(f"{prefix}-owner-{n}", f"Owner {n}", "Europe/Berlin", "eu-central"),
            seed=100 + n,
            vin=None,
            fault=make_fault("fails_to_wake", start_after_s=0) if n == 0 else None,
        )
        fleet.append(SimDevice(spec, time_scale=TIME_SCALE))
    return fleet


def test_sleeping_cars_stay_online_and_the_owner_of_one_that_does_not_wake_hears_once(
    conn, dsn, make_settings, make_dispatcher, run_ingest, http_sink, broker, prefix
):
    fleet = cars(f"z{prefix[-6:]}")
    rows = registry_rows(fleet)
    for row in rows:
        row["offline_after_s"] = 2
    assert import_devices(conn, rows).ok
    conn.execute("UPDATE device_models SET grace_s = 2 WHERE id = 'car-telematics-v1'")
    for row in rows:
        add_channel(conn, row["customer_id"], http_sink.url(row["customer_id"]))
    stuck = fleet[0].spec

    run_ingest()
    sim = Simulator(
        broker[0], prefix=prefix, fleet=fleet, protocol=broker[1], time_scale=TIME_SCALE
    )
    sim.start()
    monitor = alerts = None
    try:
        heard = "SELECT count(*) FROM device_state WHERE last_seen_at IS NOT NULL"
        wait_until(lambda: count(conn, heard) == CARS)
        monitor = Monitor(make_settings(monitor_tick_s=0.2), dsn).start()
        alerts = Alerts(make_settings(alerts_poll_s=0.05), dsn).start()

        sent = wait_until(lambda: http_sink.by_path().get(f"/{stuck.owner.customer_id}"), 25)
        title, body = sent[0]
        assert title == f"Your car {stuck.name} did not wake up as expected"
        assert "did not wake up as expected at " in body and "(Europe/Berlin)" in body

        # Every other car has slept (a silence longer than its own 2 s deadline) and woken.
        slept = f"""
            SELECT count(DISTINCT device_id) FROM (
                SELECT device_id, received_at - lag(received_at) OVER (
                    PARTITION BY device_id ORDER BY received_at) AS gap
                FROM heartbeats WHERE device_id <> %s) AS g
            WHERE gap > {SLEEP_GAP}"""
        wait_until(lambda: count(conn, slept, stuck.device_id) == CARS - 1, timeout=20)
    finally:
        # The monitor stops first: the simulator's clean stop leaves every car `offline`.
        for part in (monitor, alerts):
            if part is not None:
                part.stop()
        sim.stop()

    # Whatever the monitor recorded is routed and sent now: nothing is still on its way.
    make_dispatcher().run_once()
    incidents = conn.execute("SELECT device_id, kind FROM incidents").fetchall()
    assert incidents == [(stuck.device_id, "offline")]
    assert {path: len(msgs) for path, msgs in http_sink.by_path().items()} == {
        f"/{stuck.owner.customer_id}": 1
    }
    details = conn.execute("SELECT details FROM incidents").fetchone()[0]
    assert details["reason"] == "missed_checkin" and details["expected_at"]
