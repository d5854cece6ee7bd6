"""Which devices a campaign is for: a spec checked on input, matched in SQL and then here.

Firmware ranges are PEP 440 specifiers (`>=2.0,<2.5`) or semantic-version ranges as npm
writes them (`^2.4.0`, `~2.4`, `>=2.0.0 <3.0.0`); both are turned into one SpecifierSet.
"""

from __future__ import annotations

import re

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from contract.ids import is_device_id

_NPM_CARET = re.compile(r"^\^(\d+)(?:\.(\d+))?(?:\.(\d+))?$")
_NPM_TILDE = re.compile(r"^~(\d+)(?:\.(\d+))?(?:\.(\d+))?$")
_BARE_COMPARATOR = re.compile(r"^(>=|<=|>|<|==|!=|=)?\s*v?(\d[0-9A-Za-z.+-]*)$")


def to_specifier(text: str) -> SpecifierSet:
    """A SpecifierSet for a PEP 440 or npm-style semantic-version range; ValueError if neither."""
    text = text.strip()
    if not text:
        raise ValueError("empty firmware range")
    try:
        return SpecifierSet(text)
    except InvalidSpecifier:
        pass
    parts: list[str] = []
    for token in re.split(r"\s+|,", text):
        if not token:
            continue
        if m := _NPM_CARET.match(token):
            major, minor, patch = (int(g) if g else 0 for g in m.groups())
            low = f"{major}.{minor}.{patch}"
            if major:
                high = f"{major + 1}.0.0"
            elif minor:
                high = f"0.{minor + 1}.0"
            else:
                high = f"0.0.{patch + 1}"
            parts += [f">={low}", f"<{high}"]
        elif m := _NPM_TILDE.match(token):
            major, minor, patch = m.groups()
            low = f"{major}.{minor or 0}.{patch or 0}"
            high = f"{major}.{int(minor) + 1}.0" if minor is not None else f"{int(major) + 1}.0.0"
            parts += [f">={low}", f"<{high}"]
        elif m := _BARE_COMPARATOR.match(token):
            op = {"=": "==", None: "=="}.get(m[1], m[1])
            parts.append(f"{op}{m[2]}")
        else:
            raise ValueError(f"not a firmware range: {text!r} (try '>=2.0,<2.5' or '^2.4.0')")
    try:
        return SpecifierSet(",".join(parts))
    except InvalidSpecifier:
        raise ValueError(f"not a firmware range: {text!r}") from None


def firmware_in_range(version: str | None, spec: SpecifierSet) -> bool:
    """Whether a reported firmware version lies in the range (an unparseable one never does)."""
    if not version:
        return False
    try:
        return Version(version) in spec
    except InvalidVersion:
        return False


class Target(BaseModel):
    """The devices a campaign is for: every given criterion must hold (labels: any of them)."""

    model_config = ConfigDict(extra="forbid")

    models: list[str] = Field(default_factory=list, max_length=50)
    firmware: str | None = Field(default=None, max_length=200)
    regions: list[str] = Field(default_factory=list, max_length=100)
    labels: list[str] = Field(default_factory=list, max_length=50)
    serial_from: str | None = Field(default=None, max_length=64)
    serial_to: str | None = Field(default=None, max_length=64)
    device_ids: list[str] = Field(default_factory=list, max_length=100_000)

    @field_validator("models", "device_ids")
    @classmethod
    def _ids(cls, values: list[str]) -> list[str]:
        # Model ids follow the device-id pattern too (migration 001 checks both alike).
        for value in values:
            if not is_device_id(value):
                raise ValueError(f"not an id: {value!r}")
        return values

    @field_validator("firmware")
    @classmethod
    def _range(cls, value: str | None) -> str | None:
        if value is not None:
            to_specifier(value)
        return value

    @model_validator(mode="after")
    def _something(self) -> Target:
        if not (
            self.models
            or self.firmware
            or self.regions
            or self.labels
            or self.serial_from
            or self.serial_to
            or self.device_ids
        ):
            raise ValueError("a target needs at least one criterion")
        return self

    def where(self) -> tuple[str, dict]:
        """The SQL condition on `devices d` (firmware is matched afterwards, in Python)."""
        clauses, params = ["d.retired_at IS NULL"], {}
        if self.models:
            clauses.append("d.model_id = ANY(%(t_models)s)")
            params["t_models"] = self.models
        if self.regions:
            clauses.append("d.region = ANY(%(t_regions)s)")
            params["t_regions"] = self.regions
        if self.labels:
            clauses.append("d.labels && %(t_labels)s::text[]")
            params["t_labels"] = self.labels
        if self.serial_from:
            clauses.append("d.serial >= %(t_serial_from)s")
            params["t_serial_from"] = self.serial_from
        if self.serial_to:
            clauses.append("d.serial <= %(t_serial_to)s")
            params["t_serial_to"] = self.serial_to
        if self.device_ids:
            clauses.append("d.id = ANY(%(t_ids)s)")
            params["t_ids"] = self.device_ids
        return " AND ".join(clauses), params

    def firmware_matches(self, version: str | None) -> bool:
        return self.firmware is None or firmware_in_range(version, to_specifier(self.firmware))
