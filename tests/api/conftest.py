"""The API in-process (FastAPI's TestClient) against the test database, and keys per role."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import create_key


@pytest.fixture
def api(make_settings, dsn, conn, broker):
    """A client for a fresh app; call `api.as_(key)` for a client sending that key."""
    target, protocol = broker
    settings = make_settings(api_summary_refresh_s=3600)
    app = create_app(settings, dsn, mqtt_target=target, mqtt_protocol=protocol)
    with TestClient(app) as client:
        yield client


@pytest.fixture
def keys(conn):
    """One key per staff role, and a factory for customer keys."""

    class Keys:
        def __init__(self):
            self.admin = create_key(conn, "admin", label="test admin")[1]
            self.staff = create_key(conn, "staff", label="test staff")[1]
            self.firmware = create_key(conn, "firmware")[1]

        def customer(self, customer_id: str) -> str:
            return create_key(conn, "customer", customer_id=customer_id)[1]

    return Keys()
