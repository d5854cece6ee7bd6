"""Offline and back-online alerts: monitor, outbox and dispatcher with real receivers."""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import psycopg
from support import add_channel, count, make_device, make_overdue, wait_until

from alerts.router import route_notices
from alerts.service import Alerts
from devices.registry import import_devices
from devices.simulator.device import SimDevice
from devices.simulator.fleet import build_fleet, registry_rows
from devices.simulator.runner import Simulator
from devices.simulator.scenarios import make_fault
from monitor.service import Monitor

NOW = datetime.now(UTC).replace(microsecond=0)


def test_silenced_device_emails_its_owner_then_back_online(
    conn, dsn, make_settings, run_ingest, smtp, broker, prefix, publisher
):
    """End to end: a simulated device goes silent; its owner hears; it returns."""
    fleet = build_fleet(3, seed=5, fault_share=0, id_prefix=f"e{prefix[-6:]}")
    # A parked car announces how long it will sleep, which rightly moves its deadline minutes
    # away (the test failed whenever the car it silenced had parked first): silence a device
    # that stays awake.
    fleet.sort(key=lambda device: device.spec.profile.sleeps_when_idle)
    # Scaled by 0.01: it beats every second or less and goes silent after 3 s.
    fleet[0] = silenced = SimDevice(
        replace(fleet[0].spec, fault=make_fault("silent", start_after_s=300)), time_scale=0.01
    )
    rows = registry_rows(fleet)
    rows[0]["offline_after_s"] = 2  # the others keep their models' real allowances
    assert import_devices(conn, rows).ok
    owner = rows[0]["customer_id"]
    add_channel(conn, owner, smtp.url("owner@example.com"))

    run_ingest()
    sim = Simulator(broker[0], prefix=prefix, fleet=fleet, protocol=broker[1], time_scale=0.01)
    sim.start()
    # Watch only once it has reported: with a 2 s allowance it would otherwise count as
    # never seen if the simulator took longer than that to connect.
    heard = "SELECT count(*) FROM device_state WHERE device_id = %s AND last_seen_at IS NOT NULL"
    wait_until(lambda: count(conn, heard, silenced.spec.device_id))
    monitor = Monitor(make_settings(monitor_tick_s=0.2), dsn).start()
    alerts = Alerts(make_settings(alerts_poll_s=0.05), dsn).start()
    try:
        subject, body = wait_until(lambda: smtp.received(), timeout=30)[0]
        device_id = silenced.spec.device_id
        assert "went offline" in subject
        assert silenced.spec.name in subject
        spec = silenced.spec
        assert (f"VIN {spec.vin}" if spec.vin else f"serial {spec.serial}") in body
        for other in fleet[1:]:
            assert other.spec.device_id not in body and other.spec.serial not in body
        sim.stop()

        # Back: the next heartbeat brings it online and tells the owner how long it was gone.
        payload = {"seq": 10**6, "ts": datetime.now(UTC).isoformat(), "fw": "1.0.0"}
        publisher.publish(
            f"{prefix}/{device_id}/heartbeat", json.dumps(payload), qos=1
        ).wait_for_publish(5)
        back = wait_until(lambda: [m for m in smtp.received() if "back online" in m[0]], timeout=20)
        assert silenced.spec.name in back[0][0]
        assert "after being offline for" in back[0][1]
        assert count(conn, "SELECT count(*) FROM incidents WHERE device_id = %s", device_id) == 1

        def timeline():
            return [
                k
                for (k,) in conn.execute(
                    "SELECT e.kind FROM incident_events e JOIN incidents i ON i.id = e.incident_id "
                    "WHERE i.device_id = %s ORDER BY e.id",
                    (device_id,),
                )
            ]

        # The dispatcher records a delivery just after the mail server took it.
        wait_until(lambda: len(timeline()) >= 4, timeout=10)
        assert timeline() == ["opened", "notified", "resolved", "notified"]
    finally:
        sim.stop()
        alerts.stop()
        monitor.stop()


def test_each_owner_gets_only_their_device_and_a_digest_for_several(
    conn, dsn, make_settings, smtp, make_dispatcher, tick
):
    make_device(
        conn,
        "cam-a",
        model_id="camera-v1",
        name="Porch",
        serial="CA-1",
        customer_id="ann",
        customer_name="Ann",
    )
    for i in range(3):
        make_device(
            conn,
            f"th-b{i}",
            name=f"Room {i}",
            serial=f"TB-{i}",
            customer_id="bob",
            customer_name="Bob",
        )
    add_channel(conn, "ann", smtp.url("ann@example.com"))
    add_channel(conn, "bob", smtp.url("bob@example.com"))
    make_overdue(conn, ["cam-a", "th-b0", "th-b1", "th-b2"], NOW)

    result = tick(NOW)
    assert result.applied.opened == 4 and result.applied.notices == 4
    assert count(conn, "SELECT count(*) FROM notifications") == 4
    assert make_dispatcher().run_once(NOW) == 4

    by_recipient = {m["to"]: m for _, m in smtp.messages}
    ann = by_recipient["ann@example.com"]
    assert ann["subject"] == "Your camera Porch went offline"
    assert "CA-1" in ann.get_body().get_content() and "TB-" not in ann.get_body().get_content()
    bob = by_recipient["bob@example.com"]
    assert bob["subject"] == "3 of your devices are offline"
    text = bob.get_body().get_content()
    assert all(f"Room {i} " in text for i in range(3)) and "Porch" not in text


def test_two_monitors_and_two_routers_open_and_route_each_incident_once(conn, dsn, make_settings):
    ids = [f"dev-{i:03d}" for i in range(150)]
    assert import_devices(
        conn, [{"id": i, "model_id": "thermostat-v2", "customer_id": "c1"} for i in ids]
    ).ok
    add_channel(conn, "c1", "json://127.0.0.1:9/unused")
    make_overdue(conn, ids, NOW)
    monitors = [Monitor(make_settings(), dsn) for _ in range(2)]
    barrier = threading.Barrier(2)
    results = []

    def run(monitor):
        barrier.wait()
        results.append(monitor.tick(NOW))
        barrier.wait()
        with psycopg.connect(dsn, autocommit=True) as connection:
            route_notices(connection, NOW, limit=5000)
        monitor.stop()

    threads = [threading.Thread(target=run, args=(m,)) for m in monitors]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.applied.opened for r in results) == 150
    assert count(conn, "SELECT count(*) FROM incidents WHERE scope = 'device'") == 150
    # 150 thermostats, all of the fleet: one outage, named by its smallest group.
    fleet = conn.execute("SELECT group_key FROM incidents WHERE scope = 'fleet'").fetchall()
    assert fleet == [("model:thermostat-v2",)]
    # Each device's alert written once, and held by the outage.
    assert count(conn, "SELECT count(DISTINCT device_id) FROM notifications") == 150
    assert count(conn, "SELECT count(*) FROM notifications WHERE status = 'held'") == 150
    assert count(conn, "SELECT count(*) FROM device_state WHERE status = 'offline'") == 150


def test_never_seen_device_after_its_grace(conn, dsn, make_settings, tick):
    make_device(conn, "new-1", customer_id="c1")
    provisioned = conn.execute("SELECT overdue_at FROM device_state").fetchone()[0]
    assert tick(provisioned - timedelta(seconds=1)).due == 0
    tick(provisioned + timedelta(seconds=1))
    assert conn.execute("SELECT status FROM device_state").fetchone()[0] == "never_seen"
    assert conn.execute("SELECT kind FROM incidents").fetchone()[0] == "never_seen"


def test_last_will_is_confirmed_after_grace(conn, dsn, make_settings, tick):
    make_device(conn, "ap-1", model_id="alarm-panel-v3", customer_id="c1")
    conn.execute(
        "UPDATE device_state SET status = 'online', last_received_at = %(t)s, "
        "last_seen_at = %(t)s, overdue_at = %(t)s + interval '1 hour', "
        "connectivity = 'offline', connectivity_at = %(t)s + interval '1 second'",
        {"t": NOW - timedelta(seconds=60)},
    )
    grace = make_settings().monitor_will_grace_s
    will_at = NOW - timedelta(seconds=59)
    assert tick(will_at + timedelta(seconds=grace - 1)).due == 0
    tick(will_at + timedelta(seconds=grace))
    severity, details = conn.execute("SELECT severity, details FROM incidents").fetchone()
    assert severity == "critical" and details["reason"] == "last_will"


def test_owner_never_told_of_the_outage_is_not_told_it_ended(conn, dsn, make_settings, tick):
    make_device(conn, "th-1", customer_id="quiet")
    conn.execute("UPDATE customers SET quiet_hours_start = '00:00', quiet_hours_end = '23:59:59'")
    add_channel(conn, "quiet", "json://127.0.0.1:9/unused")
    make_overdue(conn, ["th-1"], NOW)
    tick(NOW)
    due = conn.execute("SELECT due_at FROM notifications").fetchone()[0]
    assert due > NOW  # held by quiet hours

    conn.execute("UPDATE device_state SET last_received_at = %s", (NOW + timedelta(seconds=5),))
    tick(NOW + timedelta(seconds=10))
    statuses = [s for (s,) in conn.execute("SELECT status FROM notifications ORDER BY id")]
    assert statuses == ["cancelled"]
    assert conn.execute("SELECT status FROM incidents").fetchone()[0] == "resolved"
