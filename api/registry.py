"""Registry routes: devices, models, customers and API keys (their channels: api/channels.py).

Writes are for admins.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from psycopg.types.json import Jsonb

from api.auth import create_key, revoke_key
from api.deps import AdminKey, DbConn, ReaderKey, StaffKey
from api.fleet import DeviceIdPath, device_detail
from api.models import (
    CustomerCreate,
    CustomerPublic,
    DeviceDetail,
    DeviceUpdate,
    KeyCreate,
    KeyCreated,
    KeyPublic,
    ModelCreate,
    ModelPublic,
    ModelUpdate,
    Preferences,
)
from core.settings import Settings
from devices.registry import DeviceRow, import_devices
from monitor.rules import RuleError, parse_rules

log = logging.getLogger(__name__)
router = APIRouter(tags=["registry"])

RowId = Annotated[int, Path(ge=1, le=2**63 - 1)]
CustomerIdPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9._@-]{1,64}$")]


def app_settings(request: Request) -> Settings:
    """The settings the app was made with."""
    return request.app.state.settings


AppSettings = Annotated[Settings, Depends(app_settings)]


def _set_clause(values: dict) -> str:
    return ", ".join(f"{column} = %({column})s" for column in values)


def _insert_new(conn, table: str, values: dict) -> bool:
    """Insert a row keyed by `id` unless one exists; whether it was new."""
    return bool(
        conn.execute(
            f"INSERT INTO {table} ({', '.join(values)}) VALUES "
            f"({', '.join(f'%({c})s' for c in values)}) ON CONFLICT (id) DO NOTHING",
            values,
        ).rowcount
    )


# -- devices ------------------------------------------------------------------------------


@router.post("/devices", response_model=DeviceDetail, status_code=201)
def create_device(body: DeviceRow, key: AdminKey, conn: DbConn) -> DeviceDetail:
    """Register one device (its customer is created if new)."""
    if conn.execute("SELECT 1 FROM devices WHERE id = %s", (body.id,)).fetchone():
        raise HTTPException(409, f"device {body.id!r} already exists")
    report = import_devices(conn, [body.model_dump()])
    if not report.ok:
        raise HTTPException(422, "; ".join(e.message for e in report.errors))
    log.info("device %s registered by %s", body.id, key.name)
    return device_detail(body.id, key, conn)


@router.patch("/devices/{device_id}", response_model=DeviceDetail)
def update_device(
    device_id: DeviceIdPath, body: DeviceUpdate, key: AdminKey, conn: DbConn
) -> DeviceDetail:
    """Change a device's registry fields."""
    values = body.model_dump(exclude_unset=True)
    for required in ("timezone", "labels"):  # NOT NULL columns: null leaves them as they are
        if values.get(required, "") is None:
            del values[required]
    customer = values.get("customer_id")
    exists = "SELECT 1 FROM customers WHERE id = %s"
    if customer is not None and not conn.execute(exists, (customer,)).fetchone():
        raise HTTPException(422, f"no customer {customer!r}")
    site, parent = values.get("site_id"), values.get("parent_id")
    if site is not None and not conn.execute("SELECT 1 FROM sites WHERE id = %s", (site,)).rowcount:
        raise HTTPException(422, f"no site {site!r}")
    if parent is not None and (
        parent == device_id
        or not conn.execute("SELECT 1 FROM devices WHERE id = %s", (parent,)).rowcount
    ):
        raise HTTPException(422, f"parent_id: no other device {parent!r}")
    if values:
        done = conn.execute(
            f"UPDATE devices SET {_set_clause(values)} WHERE id = %(device)s",
            {**values, "device": device_id},
        ).rowcount
    else:
        done = conn.execute("SELECT 1 FROM devices WHERE id = %s", (device_id,)).rowcount
    if not done:
        raise HTTPException(404, f"no device {device_id!r}")
    log.info("device %s updated by %s: %s", device_id, key.name, sorted(values))
    return device_detail(device_id, key, conn)


@router.delete("/devices/{device_id}", response_model=DeviceDetail)
def retire_device(device_id: DeviceIdPath, key: AdminKey, conn: DbConn) -> DeviceDetail:
    """Retire a device: no longer watched, its messages rejected; its history is kept."""
    now = datetime.now(UTC)
    with conn.transaction():
        done = conn.execute(
            "UPDATE devices SET retired_at = %s WHERE id = %s AND retired_at IS NULL",
            (now, device_id),
        ).rowcount
        if not done:
            if conn.execute("SELECT 1 FROM devices WHERE id = %s", (device_id,)).fetchone():
                raise HTTPException(409, f"device {device_id!r} is already retired")
            raise HTTPException(404, f"no device {device_id!r}")
        conn.execute(
            "UPDATE device_state SET status = 'retired', status_changed_at = %s "
            "WHERE device_id = %s",
            (now, device_id),
        )
    log.info("device %s retired by %s", device_id, key.name)
    return device_detail(device_id, key, conn)


# -- models -------------------------------------------------------------------------------

_MODEL_COLUMNS = (
    "id, name, device_type, kind, heartbeat_interval_s, allowed_misses, grace_s, critical, "
    "health_rules"
)


def _model(conn, model_id: str) -> ModelPublic:
    row = conn.execute(
        f"SELECT {_MODEL_COLUMNS} FROM device_models WHERE id = %s", (model_id,)
    ).fetchone()
    if row is None:
        raise HTTPException(404, f"no model {model_id!r}")
    return ModelPublic(**dict(zip(ModelPublic.model_fields, row, strict=True)))


def _check_rules(rules: list | None) -> None:
    if rules is None:
        return
    try:
        parse_rules(rules)
    except RuleError as exc:
        raise HTTPException(422, f"health_rules: {exc}") from None


@router.get("/models", response_model=list[ModelPublic])
def list_models(key: ReaderKey, conn: DbConn) -> list[ModelPublic]:
    """Every device model with its heartbeat interval and health rules."""
    rows = conn.execute(f"SELECT {_MODEL_COLUMNS} FROM device_models ORDER BY id").fetchall()
    return [ModelPublic(**dict(zip(ModelPublic.model_fields, r, strict=True))) for r in rows]


@router.get("/models/{model_id}", response_model=ModelPublic)
def get_model(model_id: DeviceIdPath, key: ReaderKey, conn: DbConn) -> ModelPublic:
    return _model(conn, model_id)


@router.post("/models", response_model=ModelPublic, status_code=201)
def create_model(body: ModelCreate, key: AdminKey, conn: DbConn) -> ModelPublic:
    """Add a device model."""
    _check_rules(body.health_rules)
    values = body.model_dump()
    values["health_rules"] = Jsonb(values["health_rules"])
    if not _insert_new(conn, "device_models", values):
        raise HTTPException(409, f"model {body.id!r} already exists")
    return _model(conn, body.id)


@router.patch("/models/{model_id}", response_model=ModelPublic)
def update_model(
    model_id: DeviceIdPath, body: ModelUpdate, key: AdminKey, conn: DbConn
) -> ModelPublic:
    """Change a model; new allowances apply from each device's next heartbeat."""
    values = body.model_dump(exclude_unset=True, exclude_none=True)
    _check_rules(values.get("health_rules"))
    if "health_rules" in values:
        values["health_rules"] = Jsonb(values["health_rules"])
    if values:
        conn.execute(
            f"UPDATE device_models SET {_set_clause(values)} WHERE id = %(model)s",
            {**values, "model": model_id},
        )
    return _model(conn, model_id)


# -- customers and their channels ---------------------------------------------------------

_CUSTOMER_COLUMNS = "id, name, timezone, quiet_hours_start, quiet_hours_end, max_messages_per_hour"


def find_customer(conn, customer_id: str) -> CustomerPublic | None:
    """A customer and their preferences, or None; the API and the CLI read through this."""
    row = conn.execute(
        f"SELECT {_CUSTOMER_COLUMNS} FROM customers WHERE id = %s", (customer_id,)
    ).fetchone()
    if row is None:
        return None
    return CustomerPublic(**dict(zip(CustomerPublic.model_fields, row, strict=True)))


def get_customer(conn, customer_id: str) -> CustomerPublic:
    customer = find_customer(conn, customer_id)
    if customer is None:
        raise HTTPException(404, f"no customer {customer_id!r}")
    return customer


def update_customer_row(conn, customer_id: str, values: dict) -> CustomerPublic:
    if values:
        conn.execute(
            f"UPDATE customers SET {_set_clause(values)} WHERE id = %(customer)s",
            {**values, "customer": customer_id},
        )
    return get_customer(conn, customer_id)


@router.get("/customers/{customer_id}", response_model=CustomerPublic)
def read_customer(customer_id: CustomerIdPath, key: StaffKey, conn: DbConn) -> CustomerPublic:
    return get_customer(conn, customer_id)


@router.post("/customers", response_model=CustomerPublic, status_code=201)
def create_customer(body: CustomerCreate, key: AdminKey, conn: DbConn) -> CustomerPublic:
    """Add a customer."""
    if not _insert_new(conn, "customers", body.model_dump()):
        raise HTTPException(409, f"customer {body.id!r} already exists")
    return get_customer(conn, body.id)


@router.patch("/customers/{customer_id}", response_model=CustomerPublic)
def update_customer(
    customer_id: CustomerIdPath, body: Preferences, key: AdminKey, conn: DbConn
) -> CustomerPublic:
    get_customer(conn, customer_id)
    return update_customer_row(conn, customer_id, body.model_dump(exclude_unset=True))


# -- API keys -----------------------------------------------------------------------------

_KEY_COLUMNS = "id, prefix, role, customer_id, label, created_at, last_used_at, revoked_at"


def find_keys(conn) -> list[KeyPublic]:
    """Every API key (never the key itself); the API and the CLI read through this."""
    rows = conn.execute(f"SELECT {_KEY_COLUMNS} FROM api_keys ORDER BY id").fetchall()
    return [KeyPublic(**dict(zip(KeyPublic.model_fields, r, strict=True))) for r in rows]


@router.get("/keys", response_model=list[KeyPublic], tags=["keys"])
def list_keys(key: AdminKey, conn: DbConn) -> list[KeyPublic]:
    return find_keys(conn)


@router.post("/keys", response_model=KeyCreated, status_code=201, tags=["keys"])
def make_key(body: KeyCreate, key: AdminKey, conn: DbConn) -> KeyCreated:
    """Make a key; the answer holds the key itself, shown this once."""
    if body.customer_id is not None:
        get_customer(conn, body.customer_id)
    try:
        key_id, secret = create_key(conn, body.role, customer_id=body.customer_id, label=body.label)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    row = conn.execute(f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE id = %s", (key_id,)).fetchone()
    return KeyCreated(**dict(zip(KeyPublic.model_fields, row, strict=True)), key=secret)


@router.delete("/keys/{key_id}", status_code=204, tags=["keys"])
def revoke(key_id: RowId, key: AdminKey, conn: DbConn) -> None:
    """Revoke a key: refused from the next request on."""
    if not revoke_key(conn, key_id, datetime.now(UTC)):
        raise HTTPException(404, f"no live key {key_id}")
