"""End to end: simulated homes where a router dies, a hub dies, or one device alone.

The simulator's homes publish to a real broker, the ingest stores their heartbeats and
wills, the monitor correlates each home's silence (monitor/sites.py) and the alerts
process sends to a local HTTP sink. Every owner gets exactly the messages of their home:
one "lost its internet" for a router, one "hub went offline" for a hub, the device's own
alert for one device alone, nothing for a healthy home.

Time is squeezed (time_scale 1/60): a 60 s heartbeat is 1 s, the faults begin 5 s in,
each device's own deadline is 3 s and a Last Will counts after 1 s.
"""

from __future__ import annotations

from support import add_channel, count, wait_until

from alerts.service import Alerts
from devices.registry import import_devices
from devices.simulator.homes import build_homes, home_rows
from devices.simulator.runner import Simulator
from monitor.service import Monitor

TIME_SCALE = 1 / 60
FAULTS = ["router_dies", "router_dies", "hub_dies", "hub_dies", "single", None]
EXPECTED = {
    "router_dies": "seems to have lost its internet connection",
    "hub_dies": "Your hub ",
    "single": " went offline",
}


def test_each_owner_hears_exactly_their_homes_news(
    conn, dsn, make_settings, make_dispatcher, run_ingest, http_sink, broker, prefix
):
    homes = build_homes(
        FAULTS, seed=7, fault_after_s=300, id_prefix=f"h{prefix[-6:]}", time_scale=TIME_SCALE
    )
    rows = home_rows(homes)
    for row in rows:
        row["offline_after_s"] = 3
    report = import_devices(conn, rows)
    assert report.ok, report.errors
    for home in homes:
        add_channel(conn, home.owner.customer_id, http_sink.url(home.owner.customer_id))
    fleet = [d for home in homes for d in home.devices]
    down = {d for home in homes for d in home.down}

    run_ingest()
    sim = Simulator(
        broker[0], prefix=prefix, fleet=fleet, protocol=broker[1], time_scale=TIME_SCALE
    )
    sim.start()
    monitor = alerts = None
    try:
        heard = "SELECT count(*) FROM device_state WHERE last_seen_at IS NOT NULL"
        wait_until(lambda: count(conn, heard) == len(fleet))
        monitor = Monitor(
            make_settings(monitor_tick_s=0.2, monitor_will_grace_s=1, monitor_review_s=0.5), dsn
        ).start()
        alerts = Alerts(make_settings(alerts_poll_s=0.05), dsn).start()
        # The marker: every device the faults took down has its offline incident (the last
        # deadline has passed), and everything recorded since has been routed and sent.
        offline = "SELECT count(*) FROM incidents WHERE scope = 'device' AND kind = 'offline'"
        wait_until(lambda: count(conn, offline) >= len(down), timeout=30)
        wait_until(
            lambda: (
                count(conn, "SELECT count(*) FROM notices WHERE routed_at IS NULL") == 0
                and count(
                    conn,
                    "SELECT count(*) FROM notifications WHERE status IN ('pending', 'sending')",
                )
                == 0
            ),
            timeout=10,
        )
    finally:
        # The monitor stops first: the simulator's clean stop leaves every device `offline`.
        for part in (monitor, alerts):
            if part is not None:
                part.stop()
        sim.stop()

    offline_ids = {
        r[0]
        for r in conn.execute(
            "SELECT device_id FROM incidents WHERE scope = 'device' AND kind = 'offline'"
        )
    }
    assert offline_ids == down
    sent = http_sink.by_path()
    for home in homes:
        got = sent.get(f"/{home.owner.customer_id}", [])
        if home.fault is None:
            assert got == [], home
            continue
        assert len(got) == 1, (home.fault, got)
        title, body = got[0]
        assert EXPECTED[home.fault] in title, (home.fault, title)
        if home.fault != "single":
            named = home.down if home.fault == "router_dies" else home.behind
            for device in home.devices:
                if device.spec.device_id in named:
                    assert device.spec.name in body, (home.fault, device.spec.name, body)
    kinds = dict(
        conn.execute("SELECT kind, count(*) FROM incidents WHERE scope = 'site' GROUP BY 1")
    )
    assert kinds == {"site_offline": 2, "hub_offline": 2}
