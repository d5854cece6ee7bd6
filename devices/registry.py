"""Registering devices: validate every row first, then import all of them or none."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from contract.ids import DEVICE_ID_PATTERN

VIN_PATTERN = r"^[A-HJ-NPR-Z0-9]{17}$"


class DeviceRow(BaseModel):
    """One device as imported; the same shape as a CSV row or a JSON object."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    id: str = Field(pattern=DEVICE_ID_PATTERN)
    model_id: str = Field(min_length=1, max_length=64)
    name: str | None = Field(default=None, max_length=200)
    serial: str | None = Field(default=None, max_length=64)
    vin: str | None = Field(default=None, pattern=VIN_PATTERN)
    firmware: str | None = Field(default=None, max_length=64)
    customer_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._@-]{1,64}$")
    customer_name: str | None = Field(default=None, max_length=200)
    timezone: str = "UTC"
    region: str | None = Field(default=None, max_length=64)
    labels: list[str] = Field(default_factory=list)
    offline_after_s: int | None = Field(default=None, gt=0)
    # Its place (created or renamed with the import; the site's timezone is the row's) and
    # the device it connects through (a hub we monitor, in this file or registered).
    site_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]{1,64}$")
    site_name: str | None = Field(default=None, max_length=200)
    site_address: str | None = Field(default=None, max_length=300)
    parent_id: str | None = Field(default=None, pattern=DEVICE_ID_PATTERN)

    @model_validator(mode="after")
    def _not_own_parent(self):
        if self.parent_id is not None and self.parent_id == self.id:
            raise ValueError("parent_id: a device cannot be its own parent")
        return self

    @field_validator("*", mode="before")
    @classmethod
    def _blank_is_missing(cls, value):
        return None if value == "" else value

    @field_validator("labels", mode="before")
    @classmethod
    def _split_labels(cls, value):
        if value is None:
            return []
        if isinstance(value, str):
            return [part.strip() for part in value.split(";") if part.strip()]
        return value

    @field_validator("timezone", mode="before")
    @classmethod
    def _known_timezone(cls, value):
        value = value or "UTC"
        if not isinstance(value, str):
            raise ValueError("timezone must be a name such as Europe/Paris")
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {value!r}") from None
        return value


@dataclass
class RowError:
    row: int  # 1-based, as a person counts rows in the file (data rows, header excluded)
    device_id: str | None
    message: str

    def __str__(self) -> str:
        who = f" ({self.device_id})" if self.device_id else ""
        return f"row {self.row}{who}: {self.message}"


@dataclass
class ImportReport:
    imported: int = 0
    created_customers: int = 0
    errors: list[RowError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def read_device_file(path: Path) -> list[dict]:
    """Rows from a CSV file (header row; labels separated by ';') or a JSON list of objects."""
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() == ".json":
        data = json.loads(text)
        if isinstance(data, dict) and "devices" in data:
            data = data["devices"]
        if not isinstance(data, list):
            raise ValueError('a JSON device file holds a list of objects (or {"devices": [...]})')
        return data
    return list(csv.DictReader(io.StringIO(text)))


def validate_rows(rows: Iterable[dict]) -> tuple[list[tuple[int, DeviceRow]], list[RowError]]:
    """Check every row and the file as a whole (no id, serial or VIN twice).

    Returns the valid rows with their 1-based row numbers, and the errors.
    """
    valid: list[tuple[int, DeviceRow]] = []
    errors: list[RowError] = []
    seen: dict[tuple[str, str], int] = {}
    for number, raw in enumerate(rows, start=1):
        if not isinstance(raw, dict):
            errors.append(RowError(number, None, "row is not an object"))
            continue
        try:
            row = DeviceRow.model_validate(raw)
        except ValidationError as exc:
            device_id = raw.get("id") if isinstance(raw.get("id"), str) else None
            for err in exc.errors():
                where = ".".join(str(p) for p in err["loc"]) or "row"
                errors.append(RowError(number, device_id, f"{where}: {err['msg']}"))
            continue
        duplicate = False
        serial = f"{row.model_id}/{row.serial}" if row.serial else None
        for key in (("id", row.id), ("serial", serial), ("vin", row.vin)):
            if key[1] is None:
                continue
            if key in seen:
                errors.append(RowError(number, row.id, f"{key[0]} already used in row {seen[key]}"))
                duplicate = True
            else:
                seen[key] = number
        if not duplicate:
            valid.append((number, row))
    return valid, errors


_CREATE_STAGE = """
CREATE TEMP TABLE device_import (
    row_number integer, id text, model_id text, name text, serial text, vin text,
    firmware text, customer_id text, timezone text, region text, labels text[],
    offline_after_s integer, site_id text, parent_id text
) ON COMMIT DROP
"""

_UPSERT_DEVICES = """
INSERT INTO devices (id, model_id, name, serial, vin, firmware, customer_id, timezone,
                     region, labels, offline_after_s, site_id, parent_id)
SELECT id, model_id, name, serial, vin, firmware, customer_id, timezone, region, labels,
       offline_after_s, site_id, parent_id
FROM device_import
ON CONFLICT (id) DO UPDATE SET
    model_id = excluded.model_id, name = excluded.name, serial = excluded.serial,
    vin = excluded.vin, firmware = excluded.firmware, customer_id = excluded.customer_id,
    timezone = excluded.timezone, region = excluded.region, labels = excluded.labels,
    offline_after_s = excluded.offline_after_s, site_id = excluded.site_id,
    parent_id = excluded.parent_id, retired_at = NULL
"""

# A device that never reports becomes "never seen" once this deadline passes.
_CREATE_STATE = """
INSERT INTO device_state (device_id, overdue_at, firmware)
SELECT d.id,
       d.provisioned_at + make_interval(secs => coalesce(
           d.offline_after_s, m.heartbeat_interval_s * m.allowed_misses + m.grace_s)),
       d.firmware
FROM device_import i
JOIN devices d ON d.id = i.id
JOIN device_models m ON m.id = d.model_id
ON CONFLICT (device_id) DO NOTHING
"""

# A parent named neither in the file nor in the registry.
_UNKNOWN_PARENTS = """
SELECT i.row_number, i.id, i.parent_id FROM device_import i
WHERE i.parent_id IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM device_import p WHERE p.id = i.parent_id)
  AND NOT EXISTS (SELECT 1 FROM devices d WHERE d.id = i.parent_id)
ORDER BY i.row_number
"""

# A site imported again keeps its id; its name, address and timezone follow the file.
_UPSERT_SITES = """
INSERT INTO sites (id, customer_id, name, address, timezone)
SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[])
ON CONFLICT (id) DO UPDATE SET
    name = excluded.name, address = coalesce(excluded.address, sites.address),
    timezone = excluded.timezone, customer_id = coalesce(excluded.customer_id, sites.customer_id)
"""

# Which imported device collides with an existing one on serial or VIN, to name it.
_CONFLICTS = """
SELECT i.row_number, i.id, CASE WHEN d.vin = i.vin THEN 'vin' ELSE 'serial' END, d.id
FROM device_import i
JOIN devices d ON d.id <> i.id
 AND ((d.vin = i.vin) OR (d.model_id = i.model_id AND d.serial = i.serial))
ORDER BY i.row_number
"""


def import_devices(
    conn: psycopg.Connection,
    rows: Iterable[dict],
    *,
    on_progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Validate and import devices in one transaction: all rows, or none when any is wrong."""
    valid, errors = validate_rows(rows)
    report = ImportReport(errors=errors)
    known_models = {m for (m,) in conn.execute("SELECT id FROM device_models")}
    for number, row in valid:
        if row.model_id not in known_models:
            report.errors.append(RowError(number, row.id, f"unknown model {row.model_id!r}"))
    if report.errors:
        report.errors.sort(key=lambda e: e.row)
        return report

    with conn.transaction():
        report.created_customers = _ensure_customers(conn, [row for _, row in valid])
        conn.execute(_CREATE_STAGE)
        with conn.cursor().copy(
            "COPY device_import (row_number, id, model_id, name, serial, vin, firmware, "
            "customer_id, timezone, region, labels, offline_after_s, site_id, parent_id) "
            "FROM STDIN"
        ) as copy:
            for done, (number, row) in enumerate(valid, start=1):
                copy.write_row(
                    (
                        number,
                        row.id,
                        row.model_id,
                        row.name,
                        row.serial,
                        row.vin,
                        row.firmware,
                        row.customer_id,
                        row.timezone,
                        row.region,
                        row.labels,
                        row.offline_after_s,
                        row.site_id,
                        row.parent_id,
                    )
                )
                if on_progress and done % 500 == 0:
                    on_progress(500)
        conflicts = conn.execute(_CONFLICTS).fetchall()
        unknown = conn.execute(_UNKNOWN_PARENTS).fetchall()
        if conflicts or unknown:
            report.errors = [
                RowError(n, dev, f"{what} already belongs to device {other}")
                for n, dev, what, other in conflicts
            ] + [RowError(n, dev, f"parent_id: no device {p!r}") for n, dev, p in unknown]
            report.created_customers = 0
            raise psycopg.Rollback
        _upsert_sites(conn, [row for _, row in valid])
        conn.execute(_UPSERT_DEVICES)
        conn.execute(_CREATE_STATE)
        report.imported = len(valid)
    if on_progress:
        on_progress(len(valid) % 500)
    return report


def _ensure_customers(conn: psycopg.Connection, rows: list[DeviceRow]) -> int:
    customers: dict[str, tuple[str, str]] = {}
    for row in rows:
        if row.customer_id and row.customer_id not in customers:
            customers[row.customer_id] = (row.customer_name or row.customer_id, row.timezone)
    if not customers:
        return 0
    ids = list(customers)
    return conn.execute(
        "INSERT INTO customers (id, name, timezone) "
        "SELECT * FROM unnest(%s::text[], %s::text[], %s::text[]) "
        "ON CONFLICT (id) DO NOTHING",
        (ids, [customers[c][0] for c in ids], [customers[c][1] for c in ids]),
    ).rowcount


def _upsert_sites(conn: psycopg.Connection, rows: list[DeviceRow]) -> None:
    sites: dict[str, tuple] = {}
    for row in rows:
        if row.site_id and (row.site_id not in sites or row.site_name):
            name = row.site_name or sites.get(row.site_id, (None, row.site_id))[1]
            sites[row.site_id] = (row.customer_id, name, row.site_address, row.timezone)
    if sites:
        ids = list(sites)
        columns = [[sites[i][k] for i in ids] for k in range(4)]
        conn.execute(_UPSERT_SITES, (ids, *columns))
