"""The device-id pattern: the one definition the topics, the registry and the API check.

The database checks the same pattern in its own CHECK constraint (SQL cannot import it);
tests/contract/test_ids.py holds the two together.
"""

from __future__ import annotations

import re

# Anchored, as pydantic's and FastAPI's `pattern=` and PostgreSQL's `~` expect it.
DEVICE_ID_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
DEVICE_ID_RE = re.compile(DEVICE_ID_PATTERN)
# The pattern in words, for error messages.
DEVICE_ID_RULE = "1-64 of [A-Za-z0-9._-]"

# What a device must echo back in its update reports (the runner's ids are `c12-dev-1-1`).
COMMAND_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def is_device_id(value: object) -> bool:
    """Whether `value` is a valid device id (the whole string; a trailing newline is not)."""
    return isinstance(value, str) and DEVICE_ID_RE.fullmatch(value) is not None
