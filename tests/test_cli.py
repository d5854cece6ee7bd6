"""The `fleetwatch` command as a user runs it, in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from support import count

from harness.ports import free_port

FLEETWATCH = [sys.executable, "-m", "fleetwatch.cli"]


def run(*args: str, env: dict, timeout: float = 60) -> subprocess.CompletedProcess:
    # Run outside the checkout, as a user would: only what the package installs is found.
    return subprocess.run(
        [*FLEETWATCH, *args],
        env=env,
        cwd=tempfile.gettempdir(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def user_env(**values: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETWATCH_")}
    env.update(values)
    return env


def test_devices_import_reports_row_errors_and_imports_nothing(conn, dsn, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("id,model_id\nok-1,thermostat-v2\nbad id,thermostat-v2\n")
    result = run("devices", "import", str(bad), env=user_env(FLEETWATCH_DATABASE_URL=dsn))
    assert result.returncode == 1
    assert "row 2 (bad id): id:" in result.stderr
    assert "nothing imported: 1 error(s)" in result.stderr
    assert count(conn, "SELECT count(*) FROM devices") == 0

    good = tmp_path / "good.csv"
    good.write_text("id,model_id,customer_id\nok-1,thermostat-v2,c-1\nok-2,camera-v1,c-1\n")
    result = run("devices", "import", str(good), env=user_env(FLEETWATCH_DATABASE_URL=dsn))
    assert result.returncode == 0, result.stderr
    assert "imported 2 devices (1 new customers)" in result.stderr
    assert count(conn, "SELECT count(*) FROM devices") == 2


def test_unreadable_file_is_a_clear_error(dsn, tmp_path):
    broken = tmp_path / "fleet.json"
    broken.write_text("{not json")
    result = run("devices", "import", str(broken), env=user_env(FLEETWATCH_DATABASE_URL=dsn))
    assert result.returncode == 2
    assert "cannot read" in result.stderr and "Traceback" not in result.stderr


def test_demo_on_a_fresh_machine_uses_embedded_services(tmp_path):
    """No URLs configured: embedded PostgreSQL and broker, a simulated fleet, heartbeats in."""
    api_port = free_port()
    env = user_env(
        FLEETWATCH_DATA_DIR=str(tmp_path / "data"),
        FLEETWATCH_EMBEDDED_MQTT_PORT=str(free_port()),
        FLEETWATCH_API_PORT=str(api_port),
    )
    result = run(
        "demo",
        "--devices",
        "60",
        "--duration",
        "8",
        "--time-scale",
        "0.02",
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    # The log goes to a file in the data directory, not through the live view.
    log_file = (tmp_path / "data" / "demo.log").resolve()
    assert f"the log goes to {log_file}" in result.stdout
    log = log_file.read_text()
    assert "using embedded PostgreSQL" in log
    assert "started embedded MQTT broker" in log
    assert "registered 60 simulated devices" in log
    assert "ingest stopped" in log  # the last line it writes, on the way out
    assert " INFO " not in result.stderr and " INFO " not in result.stdout
    # The live summary's last frame: every device seen, heartbeats stored, none rejected.
    lines = {
        line.split("│")[1].strip(): line.split("│")[2].strip()
        for line in result.stdout.splitlines()
        if line.count("│") >= 3
    }
    assert lines["devices seen"] == "60"
    assert int(lines["heartbeats stored"]) > 60
    assert lines["rejected messages"] == "0"
    assert Path(tmp_path / "data" / "pg").is_dir()
    # It opens with the dashboard's address, carrying a working key.
    assert f"Dashboard: http://127.0.0.1:{api_port}/dashboard/#key=fwk_" in result.stdout
    assert f"dashboard: http://127.0.0.1:{api_port}/dashboard/#key=fwk_" in log


def test_incidents_list_and_ack(conn, dsn, tick):
    from datetime import UTC, datetime

    from support import make_device, make_overdue

    make_device(conn, "panel-1", model_id="alarm-panel-v3", name="Hall")
    now = datetime.now(UTC)
    make_overdue(conn, ["panel-1"], now)
    tick(now)
    incident_id = conn.execute("SELECT id FROM incidents").fetchone()[0]
    env = user_env(FLEETWATCH_DATABASE_URL=dsn)

    listed = run("incidents", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert f"{incident_id}\topen\tcritical\tdevice\tpanel-1\t" in listed.stdout

    acked = run("incidents", "ack", str(incident_id), "--by", "maria", env=env)
    assert acked.returncode == 0, acked.stderr
    assert conn.execute("SELECT acknowledged_by FROM incidents").fetchone()[0] == "maria"
    again = run("incidents", "ack", str(incident_id), "--by", "maria", env=env)
    assert again.returncode == 1 and "is not open" in again.stderr


def test_keys_create_list_and_revoke(conn, dsn):
    from datetime import UTC, datetime

    from api.auth import find_key

    env = user_env(FLEETWATCH_DATABASE_URL=dsn)
    made = run("keys", "create", "--role", "staff", "--label", "night shift", env=env)
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    found = find_key(conn, key, datetime.now(UTC))
    assert found is not None and found.role == "staff"
    listed = run("keys", "list", env=env)
    assert f"{found.id}\t{key[:10]}...\tstaff\t\tnight shift" in listed.stdout
    assert key not in listed.stdout
    assert run("keys", "revoke", str(found.id), env=env).returncode == 0
    assert find_key(conn, key, datetime.now(UTC)) is None
    refused = run("keys", "create", "--role", "customer", "--customer", "ghost", env=env)
    assert refused.returncode == 1 and "no customer" in refused.stderr


def test_campaigns_create_list_pause_and_show(conn, dsn, tmp_path):
    import json

    from support import make_device

    for i in range(3):
        make_device(conn, f"cam-{i}", model_id="camera-v1", firmware="2.0.0")
    spec = tmp_path / "campaign.json"
    spec.write_text(
        json.dumps(
            {
                "name": "Camera 2.5.0",
                "kind": "ota_update",
                "target": {"models": ["camera-v1"]},
                "target_version": "2.5.0",
                "artifact_url": "https://updates.example.com/c.bin",
                "artifact_sha256": "0" * 64,
                "starts_at": "2099-01-01T00:00:00Z",
            }
        )
    )
    env = user_env(FLEETWATCH_DATABASE_URL=dsn)
    made = run("campaigns", "create", str(spec), "--by", "fw-lead", env=env)
    assert made.returncode == 0, made.stderr
    campaign_id = made.stdout.strip()
    assert "scheduled for 3 devices" in made.stderr
    listed = run("campaigns", "list", env=env)
    assert (
        f"{campaign_id}\tscheduled\tota_update\twave 0/4\tpending=3\tCamera 2.5.0" in listed.stdout
    )
    assert run("campaigns", "pause", campaign_id, "--by", "fw-lead", env=env).returncode == 0
    again = run("campaigns", "pause", campaign_id, "--by", "fw-lead", env=env)
    assert again.returncode == 1 and "cannot pause" in again.stderr
    shown = run("campaigns", "show", campaign_id, env=env)
    assert "paused" in shown.stdout and "\tpause\t" in shown.stdout

    spec.write_text(json.dumps({"name": "x", "kind": "ota_update", "target": {}}))
    bad = run("campaigns", "create", str(spec), "--by", "fw-lead", env=env)
    assert bad.returncode == 2 and "at least one criterion" in bad.stderr


def test_the_readmes_recall_with_its_remedy_is_created_from_its_example_file(conn, dsn):
    """deploy/examples/recall-with-ota.json, as the README's firmware-team section runs it:
    every car of the model in its regions, those already fixed too (they are told "no action
    needed" when it starts); other models and regions are not."""
    from pathlib import Path

    from support import make_device

    for i, fw in enumerate(("4.9.8", "5.0.2", "5.1.0")):
        make_device(conn, f"car-{i}", model_id="car-telematics-v1", firmware=fw, region="eu-west")
    make_device(conn, "car-9", model_id="car-telematics-v1", firmware="5.0.2", region="us-east")
    make_device(conn, "cam-0", model_id="camera-v1", firmware="5.0.2", region="eu-west")
    example = Path(__file__).parents[1] / "deploy" / "examples" / "recall-with-ota.json"
    env = user_env(FLEETWATCH_DATABASE_URL=dsn)
    made = run("campaigns", "create", str(example), "--by", "safety-lead", env=env)
    assert made.returncode == 0, made.stderr
    assert "scheduled for 3 devices" in made.stderr
    shown = run("campaigns", "show", made.stdout.strip(), env=env)
    assert "safety_recall" in shown.stdout
