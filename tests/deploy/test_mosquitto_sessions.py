"""The ingest's persistent session on the deploy broker belongs to the ingest's login.

A real Mosquitto from deploy/mosquitto (its config and ACL), the real ingest logged in as
`fleetwatch-ingest-1`, and PostgreSQL. A device, logged in with its own name and password,
asks for the ingest's client id: it must neither resume the ingest's session (and with it
the heartbeats queued there), nor end it with a clean start, nor throw the running ingest
off; and every heartbeat the device's neighbour sent meanwhile is stored.

Absence is shown with a later marker: the heartbeat sent after the attempts is stored only
after those before it (one publisher, one session queue, in order), and a command sent to
the intruder after it connected arrives after anything a resumed session would have held.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from deploy_mosquitto import CAMPAIGNS, INGEST_1, INGEST_2, needs_mosquitto, password
from support import count, make_device, wait_until

from contract.messages import heartbeat_payload
from contract.topics import command_topic, heartbeat_topic
from ingest.service import Ingest

pytestmark = [pytest.mark.mosquitto, needs_mosquitto]

PREFIX = "fleet"  # written into deploy/mosquitto/acl


def beat(seq: int) -> bytes:
    return heartbeat_payload(seq=seq, ts=datetime.now(UTC), uptime_s=seq)


@pytest.fixture
def deploy_ingest(run_ingest, deploy_broker, connect):
    """start() -> the real ingest on the deploy broker, logged in as fleetwatch-ingest-1.

    Afterwards its session is ended (a clean start with its login), so the next test's
    ingest does not inherit what this one left queued.
    """

    started: list[Ingest] = []

    def start() -> Ingest:
        started.append(
            run_ingest(
                mqtt_url=f"mqtt://{INGEST_1}:{password(INGEST_1)}@127.0.0.1:{deploy_broker.port}",
                mqtt_protocol="5",
                topic_prefix=PREFIX,
                ingest_client_id=INGEST_1,
                ingest_shared_group="",
            )
        )
        return started[-1]

    yield start
    for service in started:
        service.stop()
    connect(INGEST_1).close()


def messages_counted(conn, client_id: str) -> int:
    return count(
        conn,
        "SELECT coalesce(sum(messages_total), 0) FROM ingest_status WHERE client_id = %s",
        client_id,
    )


def broker_back_at(conn, client_id: str):
    return conn.execute(
        "SELECT broker_back_at FROM ingest_status WHERE client_id = %s", (client_id,)
    ).fetchone()[0]


def test_a_device_login_cannot_resume_read_or_end_the_ingest_session(conn, deploy_ingest, connect):
    make_device(conn, "dev-a")
    deploy_ingest().stop()  # as for a restart: its session stays and queues
    device = connect("dev-a")
    for seq in range(5):
        device.publish(heartbeat_topic(PREFIX, "dev-a"), beat(seq))

    resumer = connect("dev-b", client_id=INGEST_1, persistent=True)
    resumer.subscribe(command_topic(PREFIX, "dev-b"))
    connect(CAMPAIGNS).publish(command_topic(PREFIX, "dev-b"), b"marker")
    resumer.wait_for_payload(command_topic(PREFIX, "dev-b"), b"marker")
    resumer.close()
    # A clean start with the ingest's id would end its session and drop what it holds.
    connect("dev-b", client_id=INGEST_1).close()

    deploy_ingest()
    device.publish(heartbeat_topic(PREFIX, "dev-a"), beat(5))  # the later marker

    wait_until(lambda: count(conn, "SELECT count(*) FROM heartbeats") == 6, timeout=10)
    assert resumer.session_present is False
    assert resumer.payloads() == [b"marker"]
    assert count(conn, "SELECT count(*) FROM rejected_messages") == 0


def test_a_device_login_cannot_throw_the_running_ingest_off(conn, deploy_ingest, connect):
    make_device(conn, "dev-a")
    deploy_ingest()
    device = connect("dev-a")
    for attempt in range(3):
        device.publish(heartbeat_topic(PREFIX, "dev-a"), beat(2 * attempt))
        intruder = connect("dev-b", client_id=INGEST_1, persistent=True)
        device.publish(heartbeat_topic(PREFIX, "dev-a"), beat(2 * attempt + 1))
        intruder.close()
    device.publish(heartbeat_topic(PREFIX, "dev-a"), beat(6))  # the later marker

    wait_until(lambda: count(conn, "SELECT count(*) FROM heartbeats") == 7, timeout=10)
    # Its totals are written just after each batch's commit: wait for them too.
    wait_until(lambda: messages_counted(conn, INGEST_1) == 7)
    # The ingest notes every time it regains the broker; it never lost it.
    assert broker_back_at(conn, INGEST_1) is None


def test_an_ingest_whose_client_id_is_not_its_login_says_so(
    conn, run_ingest, deploy_broker, caplog
):
    # The broker calls it fleetwatch-ingest-2 (its login); its ticks go to ingest-1's topic,
    # which its login may not write: its watermark could never move. It must say so.
    run_ingest(
        mqtt_url=f"mqtt://{INGEST_2}:{password(INGEST_2)}@127.0.0.1:{deploy_broker.port}",
        mqtt_protocol="5",
        topic_prefix=PREFIX,
        ingest_client_id=INGEST_1,
        ingest_shared_group="",
    )

    wait_until(lambda: "the broker refused its publish" in caplog.text, timeout=10)
    assert f"fleet-service/{INGEST_1}/tick" in caplog.text
