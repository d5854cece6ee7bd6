"""Devices played in SQL for the campaign runner's tests.

The devices' side is written the way the ingest writes it: their update reports as
`ota_reports` rows, their heartbeats as `device_state` updates. End-to-end tests with the
simulator and a broker live in test_campaigns_e2e.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from support import add_channel, make_device

from campaigns.store import CampaignCreate
from contract.commands import UpdateCommand, parse_command
from contract.topics import CMD, DeviceTopic, parse_topic

SHA = "ab" * 32


def make_fleet(
    conn,
    n: int,
    *,
    fw: str = "2.0.0",
    timezones=("UTC",),
    model="camera-v1",
    seen: datetime,
    prefix: str = "dev",
) -> list[str]:
    """n online devices on firmware `fw`, owners with one channel each."""
    ids = []
    for i in range(n):
        device = f"{prefix}-{i:03d}"
        make_device(
            conn,
            device,
            model_id=model,
            firmware=fw,
            customer_id=f"own-{i:03d}",
            timezone=timezones[i % len(timezones)],
            name=f"Camera {i}",
        )
        add_channel(conn, f"own-{i:03d}", f"json://127.0.0.1:9/own-{i:03d}")
        ids.append(device)
    conn.execute(
        "UPDATE device_state SET status = 'online', firmware = %s, last_seen_at = %s, "
        "last_received_at = %s, last_uptime_s = 86400, overdue_at = %s + interval '1 day' "
        "WHERE device_id = ANY(%s)",
        (fw, seen, seen, seen, ids),
    )
    return ids


def update_spec(**overrides) -> CampaignCreate:
    body = {
        "name": "Camera firmware 2.5.0",
        "kind": "ota_update",
        "target": {"models": ["camera-v1"], "firmware": "<2.5"},
        "target_version": "2.5.0",
        "artifact_url": "https://updates.example.com/camera/2.5.0.bin",
        "artifact_sha256": SHA,
        "waves": [10, 50, 100],
        "soak_s": 3600,
        "policy": {"step_timeout_s": 1200, "reboot_timeout_s": 1800},
    }
    body.update(overrides)
    return CampaignCreate.model_validate(body)


@dataclass
class Devices:
    """Plays the devices: answers each published command the way `outcome(device)` says.

    Each command is read as a device reads it (`parse_command`), from the topic a device
    subscribes to: a command that breaks the contract fails the test.
    """

    conn: object
    outcome: object = staticmethod(lambda device: "ok")
    commands: list[tuple[datetime, str, UpdateCommand]] = field(default_factory=list)
    pending_boot: list[tuple[str, str, datetime]] = field(default_factory=list)
    now: datetime | None = None

    def publish(self, topic: str, payload: bytes) -> None:
        # The runner's own prefix, whatever it is (test_campaigns_e2e.py subscribes to it).
        where = parse_topic(topic, topic.split("/", 1)[0])
        assert isinstance(where, DeviceTopic) and where.kind == CMD, topic
        device, command = where.device_id, parse_command(payload)
        self.commands.append((self.now, device, command))
        outcome = self.outcome(device)
        states = ["accepted", "downloading", "installing"]
        if outcome == "install_failed":
            self.report(device, command.command_id, [*states, "failed"], reason="install_failed")
            return
        if outcome == "silent":
            return  # the command never arrived
        self.report(device, command.command_id, [*states, "rebooting"])
        if outcome == "ok":
            self.pending_boot.append((device, command.version, self.now + timedelta(minutes=2)))

    def report(self, device, command_id, states, reason=None):
        for state in states:
            self.conn.execute(
                "INSERT INTO ota_reports (received_at, device_id, command_id, state, reason) "
                "VALUES (%s, %s, %s, %s, %s)",
                (self.now, device, command_id, state, reason if state == "failed" else None),
            )

    def heartbeats(self, now: datetime) -> None:
        """Devices back from their reboot report the new firmware; all others keep beating."""
        back = [(d, v, t) for d, v, t in self.pending_boot if t <= now]
        self.pending_boot = [p for p in self.pending_boot if p[2] > now]
        for device, version, at in back:
            self.conn.execute(
                "UPDATE device_state SET firmware = %s, last_seen_at = %s, last_uptime_s = 60 "
                "WHERE device_id = %s",
                (version, at, device),
            )


def run_until(runner, devices: Devices, start: datetime, step: timedelta, until, limit: int):
    """Tick at start, start + step, ... until `until(now)` or `limit` ticks; return the last now."""
    now = start
    for _ in range(limit):
        devices.now = now
        devices.heartbeats(now)
        runner.tick(now)
        if until(now):
            return now
        now += step
    raise AssertionError(f"not done after {limit} ticks (at {now})")
