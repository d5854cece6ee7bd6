"""The update command the service publishes on a device's `cmd` topic, and how a device reads it.

    {"type": "ota_update", "command_id": "c12-dev-001-1", "campaign": 12, "version": "2.5.0",
     "url": "https://updates.example.com/fw/2.5.0.bin", "sha256": "<64 hex>", "attempt": 1}

The campaign runner builds an `UpdateCommand` and publishes `to_payload()`; a device (the
simulator) turns a payload back into one with `parse_command`, which raises `NotACommand`
for anything else on its cmd topic. A device answers on its `ota` topic, one report a step
(`contract.messages.ota_report_body`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from contract.messages import MAX_FW_LEN

COMMAND_TYPE = "ota_update"
SHA256_RE = re.compile(r"[0-9a-fA-F]{64}")
# The heartbeat's `fw` limit: a device on a longer version would get its heartbeats rejected.
MAX_VERSION_LEN = MAX_FW_LEN


class NotACommand(ValueError):
    """A message on the cmd topic a device ignores: not JSON, unknown type, malformed."""


@dataclass(frozen=True, slots=True)
class UpdateCommand:
    """One `ota_update` command: install `version` from `url`, checked against `sha256`."""

    command_id: str  # unique per attempt: a redelivery is recognised by it
    campaign: int
    version: str
    url: str
    sha256: str
    attempt: int

    def to_payload(self) -> bytes:
        """The command as published: compact JSON with its `type` first."""
        body = {
            "type": COMMAND_TYPE,
            "command_id": self.command_id,
            "campaign": self.campaign,
            "version": self.version,
            "url": self.url,
            "sha256": self.sha256,
            "attempt": self.attempt,
        }
        return json.dumps(body, separators=(",", ":")).encode()


def parse_command(payload: bytes) -> UpdateCommand:
    """The command in `payload`; raises NotACommand (saying why) for anything else."""
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError):  # bad JSON or UTF-8; absurdly deep nesting
        raise NotACommand("not JSON") from None
    if not isinstance(data, dict):
        raise NotACommand("not a JSON object")
    if data.get("type") != COMMAND_TYPE:
        raise NotACommand(f"unknown type {str(data.get('type'))[:40]!r}")
    command_id, version, url = data.get("command_id"), data.get("version"), data.get("url")
    if not isinstance(command_id, str) or not command_id:
        raise NotACommand("no command_id")
    if not _is_int(data.get("campaign")):
        raise NotACommand("campaign is not an integer")
    if not isinstance(version, str) or not 0 < len(version) <= MAX_VERSION_LEN:
        raise NotACommand(f"version is not 1-{MAX_VERSION_LEN} characters")
    if not isinstance(url, str) or not url:
        raise NotACommand("no url")
    if not isinstance(data.get("sha256"), str) or not SHA256_RE.fullmatch(data["sha256"]):
        raise NotACommand("sha256 is not 64 hex characters")
    if not _is_int(data.get("attempt")) or data["attempt"] < 1:
        raise NotACommand("attempt is not a positive integer")
    return UpdateCommand(
        command_id, data["campaign"], version, url, data["sha256"], data["attempt"]
    )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
