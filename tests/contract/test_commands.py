"""The update command: what the runner publishes is what a device reads, and nothing else is."""

from __future__ import annotations

import json

import pytest

from contract.commands import NotACommand, UpdateCommand, parse_command

SHA = "0123456789abcdef" * 4
COMMAND = UpdateCommand(
    command_id="c12-dev-001-1",
    campaign=12,
    version="2.5.0",
    url="https://updates.example.com/fw/2.5.0.bin",
    sha256=SHA,
    attempt=1,
)
# README's example, as a device firmware would be written against it.
README = {
    "type": "ota_update",
    "command_id": "c12-dev-001-1",
    "campaign": 12,
    "version": "2.5.0",
    "url": "https://updates.example.com/fw/2.5.0.bin",
    "sha256": SHA,
    "attempt": 1,
}


def test_a_command_survives_the_round_trip():
    assert parse_command(COMMAND.to_payload()) == COMMAND


def test_the_payload_is_the_documented_object():
    assert json.loads(COMMAND.to_payload()) == README
    assert parse_command(json.dumps(README).encode()) == COMMAND


NOT_COMMANDS = (
    (b"\xff\xfe", "not JSON"),
    (b"{not json", "not JSON"),
    (b"[" * 100_000, "not JSON"),
    (b"[1, 2]", "not a JSON object"),
    (json.dumps({**README, "type": "reboot"}).encode(), "unknown type"),
    (json.dumps({k: v for k, v in README.items() if k != "type"}).encode(), "unknown type"),
    (json.dumps({**README, "command_id": ""}).encode(), "command_id"),
    (json.dumps({**README, "campaign": "12"}).encode(), "campaign"),
    (json.dumps({**README, "campaign": True}).encode(), "campaign"),
    (json.dumps({**README, "version": "9" * 65}).encode(), "version"),
    (json.dumps({**README, "url": ""}).encode(), "url"),
    (json.dumps({**README, "sha256": "abc"}).encode(), "sha256"),
    (json.dumps({**README, "attempt": 0}).encode(), "attempt"),
)


@pytest.mark.parametrize(("payload", "why"), NOT_COMMANDS)
def test_anything_else_on_the_cmd_topic_is_not_a_command(payload, why):
    with pytest.raises(NotACommand, match=why):
        parse_command(payload)
