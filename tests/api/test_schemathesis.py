"""Property-based run of every API operation from its OpenAPI spec: no input gives a 500.

Schemathesis generates valid and invalid requests per operation; the served app runs on
uvicorn against the test database. Left out: operations that reach outside this machine
(sending a test message to a generated URL), the endless event stream, and revoking keys
(it would revoke the key the run uses).
"""

from __future__ import annotations

import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from support import make_device

from api.app import create_app
from api.auth import create_key
from core.settings import Settings
from harness.apiserver import ApiServer

EXAMPLES = 25


@pytest.fixture(scope="module")
def served(dsn, broker):
    """The app on a free port, with a few devices, an admin key and a customer key."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE devices, customers, api_keys, incidents, silences CASCADE")
        for i in range(3):
            make_device(conn, f"dev-{i}", customer_id=f"cust-{i}", name=f"Device {i}")
        keys = {
            "admin": create_key(conn, "admin")[1],
            "customer": create_key(conn, "customer", customer_id="cust-0")[1],
        }
    target, protocol = broker
    app = create_app(
        Settings(database_url=dsn, api_summary_refresh_s=3600),
        dsn,
        mqtt_target=target,
        mqtt_protocol=protocol,
    )
    server = ApiServer(app).start(ready_within_s=20)
    yield server.url, keys
    server.stop()


# The spec needs no database: the app is built only to read it.
_SPEC = create_app(Settings(database_url="postgresql://unused"), "postgresql://unused").openapi()
schema = (
    schemathesis.openapi.from_dict(_SPEC)
    .exclude(path_regex=r"/test$")
    .exclude(path="/api/v1/events")
    .exclude(method="DELETE", path="/api/v1/keys/{key_id}")
)


FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)


def check_no_server_error(case, base: str, key: str):
    return case.call_and_validate(
        base_url=base,
        headers={"Authorization": f"Bearer {key}"},
        checks=[not_a_server_error],
        timeout=10,
    )


@schema.parametrize()
@FUZZ
def test_no_input_makes_a_server_error(case, served):
    base, keys = served
    assert check_no_server_error(case, base, keys["admin"]).status_code < 500


@schema.include(path_regex=r"^/api/v1/(me|devices|incidents|fleet)").parametrize()
@FUZZ
def test_no_input_from_a_customer_makes_a_server_error(case, served):
    base, keys = served
    assert check_no_server_error(case, base, keys["customer"]).status_code < 500
