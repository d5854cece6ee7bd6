"""Device import: all rows or none, with errors that name the row."""

import json

import pytest
from support import count

from devices.registry import import_devices, read_device_file

CSV = """id,model_id,name,serial,vin,firmware,customer_id,customer_name,timezone,region,labels
th-1,thermostat-v2,Hall,SN1,,2.4.1,cust-1,Ann,Europe/Berlin,eu-west,floor=1;beta
car-1,car-telematics-v1,Family car,,1HGCM82633A004352,7.0.0,cust-1,Ann,Europe/Berlin,eu-west,
ap-1,alarm-panel-v3,,SN2,,3.1.0,cust-2,Bob,America/New_York,us-east,
"""


def test_csv_import_registers_devices_customers_and_state(conn, tmp_path):
    path = tmp_path / "devices.csv"
    path.write_text(CSV)
    report = import_devices(conn, read_device_file(path))
    assert report.ok and report.imported == 3 and report.created_customers == 2
    labels, tz, vin = conn.execute(
        "SELECT labels, timezone, vin FROM devices WHERE id = 'th-1'"
    ).fetchone()
    assert labels == ["floor=1", "beta"] and tz == "Europe/Berlin" and vin is None
    assert conn.execute("SELECT vin FROM devices WHERE id='car-1'").fetchone()[0] == (
        "1HGCM82633A004352"
    )
    # Never seen yet; the deadline is provisioning plus the model's allowance (alarm: 30*3+30).
    status, overdue, provisioned = conn.execute(
        "SELECT s.status, s.overdue_at, d.provisioned_at FROM device_state s "
        "JOIN devices d ON d.id = s.device_id WHERE d.id = 'ap-1'"
    ).fetchone()
    assert status == "provisioned"
    assert (overdue - provisioned).total_seconds() == 120


def test_one_bad_row_imports_nothing_and_names_the_row(conn):
    rows = [
        {"id": "ok-1", "model_id": "thermostat-v2"},
        {"id": "bad id", "model_id": "thermostat-v2"},
        {"id": "ok-2", "model_id": "no-such-model"},
        {"id": "ok-3", "model_id": "camera-v1", "timezone": "Mars/Olympus"},
        {"id": "ok-4", "model_id": "car-telematics-v1", "vin": "IOQ"},
        {"id": "ok-1", "model_id": "camera-v1"},
    ]
    report = import_devices(conn, rows)
    assert not report.ok and report.imported == 0
    messages = [str(e) for e in report.errors]
    assert [e.row for e in report.errors] == [2, 3, 4, 5, 6]
    assert "unknown model 'no-such-model'" in messages[1]
    assert "unknown timezone" in messages[2]
    assert "id already used in row 1" in messages[4]
    assert count(conn, "SELECT count(*) FROM devices") == 0
    assert count(conn, "SELECT count(*) FROM customers") == 0


def test_vin_owned_by_another_device_rolls_back_everything(conn):
    vin = "1HGCM82633A004352"
    assert import_devices(conn, [{"id": "car-1", "model_id": "car-telematics-v1", "vin": vin}]).ok
    report = import_devices(
        conn,
        [
            {"id": "car-2", "model_id": "car-telematics-v1", "customer_id": "c-9"},
            {"id": "car-3", "model_id": "car-telematics-v1", "vin": vin},
        ],
    )
    assert not report.ok
    assert str(report.errors[0]) == "row 2 (car-3): vin already belongs to device car-1"
    assert count(conn, "SELECT count(*) FROM devices") == 1
    assert count(conn, "SELECT count(*) FROM customers") == 0


def test_reimport_updates_and_keeps_state(conn):
    assert import_devices(conn, [{"id": "th-1", "model_id": "thermostat-v2", "region": "a"}]).ok
    conn.execute("UPDATE device_state SET status = 'online', last_seq = 9")
    report = import_devices(conn, [{"id": "th-1", "model_id": "thermostat-v2", "region": "b"}])
    assert report.ok
    assert conn.execute("SELECT region FROM devices").fetchone()[0] == "b"
    assert conn.execute("SELECT status, last_seq FROM device_state").fetchone() == ("online", 9)


def test_json_file_and_thousands_of_devices(conn, tmp_path):
    rows = [
        {
            "id": f"cam-{i:05d}",
            "model_id": "camera-v1",
            "serial": f"C{i}",
            "customer_id": f"cust-{i // 3}",
        }
        for i in range(5000)
    ]
    path = tmp_path / "fleet.json"
    path.write_text(json.dumps({"devices": rows}))
    progress = []
    report = import_devices(conn, read_device_file(path), on_progress=progress.append)
    assert report.ok and report.imported == 5000 and sum(progress) == 5000
    assert count(conn, "SELECT count(*) FROM device_state") == 5000
    assert count(conn, "SELECT count(*) FROM customers") == 1667


def test_import_places_devices_in_sites_behind_parents(conn):
    rows = [
        {"id": "hub-1", "model_id": "thermostat-v2", "customer_id": "ann", "site_id": "oak-12",
         "site_name": "Home at 12 Oak Street", "site_address": "12 Oak Street",
         "timezone": "Europe/Berlin"},
        {"id": "cam-1", "model_id": "camera-v1", "customer_id": "ann", "site_id": "oak-12",
         "parent_id": "hub-1"},
    ]  # fmt: skip
    report = import_devices(conn, rows)
    assert report.ok, report.errors
    assert conn.execute(
        "SELECT id, customer_id, name, address, timezone FROM sites"
    ).fetchall() == [("oak-12", "ann", "Home at 12 Oak Street", "12 Oak Street", "Europe/Berlin")]
    assert conn.execute("SELECT id, site_id, parent_id FROM devices ORDER BY id").fetchall() == [
        ("cam-1", "oak-12", "hub-1"),
        ("hub-1", "oak-12", None),
    ]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"id": "a", "model_id": "camera-v1", "parent_id": "nobody"}, "parent_id: no device"),
        ({"id": "a", "model_id": "camera-v1", "parent_id": "a"}, "its own parent"),
        ({"id": "a", "model_id": "camera-v1", "site_id": "bad id!"}, "site_id"),
    ],
)
def test_import_refuses_unknown_parents_and_bad_sites(conn, row, message):

    report = import_devices(conn, [row])
    assert not report.ok and message in str(report.errors[0])
    assert conn.execute("SELECT count(*) FROM devices").fetchone()[0] == 0
