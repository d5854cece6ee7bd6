"""The fleet correlation's counts read beside the tick, plus the tick's own incidents."""

from support import make_device

from monitor.fleet import FleetReading
from monitor.silent import _SILENT, SilentDevices, read_silent


def test_the_tick_adds_its_own_offline_devices_to_the_window_by_group_attributes():
    reading = FleetReading(
        recent=[("cam", "1.0", "eu", 7)],
        attributes={
            "a": ("cam", "1.0", "eu"),
            "b": ("cam", "1.0", "eu"),
            "c": ("thermo", None, "us"),
        },
    )
    rows = reading.with_tick(["a", "b", "c"])
    assert sorted(rows) == [
        ("cam", "1.0", "eu", 2),
        ("cam", "1.0", "eu", 7),
        ("thermo", None, "us", 1),
    ]
    # A device the reading did not cover (another monitor's) adds nothing; none: the window.
    assert reading.with_tick(["zzz"]) == [("cam", "1.0", "eu", 7)]


def test_the_silent_devices_registry_rows_are_read_device_by_device(conn):
    # At a million devices, `d.id = ANY(<ten thousand ids>)` was planned as a parallel scan
    # of the whole registry beside the tick's own writes. However cheap the planner is told
    # a scan or a parallel worker is, each device is looked up by its key.
    with conn.transaction():
        conn.execute("SET LOCAL enable_seqscan = off")
        conn.execute("SET LOCAL parallel_setup_cost = 0")
        conn.execute("SET LOCAL parallel_tuple_cost = 0")
        conn.execute("SET LOCAL min_parallel_index_scan_size = 0")
        ids = [f"dev-{n:05d}" for n in range(1_000)]
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + _SILENT, {"ids": ids}))
    assert "Index Cond: (id = t.id)" in plan, plan[:2000]
    assert "Gather" not in plan and "ANY" not in plan, plan[:2000]


def test_the_silent_devices_places_and_group_attributes_in_one_reading(conn):
    make_device(
        conn,
        "hub-1",
        model_id="thermostat-v2",
        firmware="1.0",
        region="eu",
        site_id="oak-12",
        site_name="Oak Street",
    )
    make_device(conn, "cam-1", model_id="camera-v1", firmware="2.0", region="eu", parent_id="hub-1")
    make_device(conn, "lone-1", model_id="camera-v1", firmware="2.0", region="us")
    # What the device reports wins over the registry's firmware.
    conn.execute("UPDATE device_state SET firmware = '2.1' WHERE device_id = 'cam-1'")

    rows = read_silent(conn, ["hub-1", "cam-1", "lone-1", "gone-1"])

    assert sorted(rows.placed) == [("cam-1", None, "hub-1"), ("hub-1", "oak-12", None)]
    assert rows.attributes == {
        "hub-1": ("thermostat-v2", "1.0", "eu"),
        "cam-1": ("camera-v1", "2.1", "eu"),
        "lone-1": ("camera-v1", "2.0", "us"),
    }
    assert read_silent(conn, []) == SilentDevices([], {})
