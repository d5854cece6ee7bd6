"""The ingest's watermark, its bounded batches and retiring it, against a real broker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from support import count, forget_session, make_device, wait_until

from contract.messages import heartbeat_payload
from contract.topics import heartbeat_topic, service_tick_topic
from harness.ports import free_port
from ingest.service import TICK_EVERY_S, Ingest


def beat(seq: int) -> bytes:
    return heartbeat_payload(seq=seq, ts=datetime.now(UTC) - timedelta(seconds=1), uptime_s=seq)


def publish_beats(publisher, prefix: str, devices: list[str], per_device: int, first: int = 0):
    infos = [
        publisher.publish(heartbeat_topic(prefix, device), beat(seq), qos=1)
        for seq in range(first, first + per_device)
        for device in devices
    ]
    for info in infos:
        info.wait_for_publish(10)


def caught_up(conn, client_id: str):
    row = conn.execute(
        "SELECT caught_up_at FROM ingest_status WHERE client_id = %s", (client_id,)
    ).fetchone()
    return row[0] if row else None


def test_watermark_follows_the_ticks_and_stands_still_while_the_ingest_is_away(
    conn, run_ingest, publisher, prefix, broker
):
    make_device(conn, "dev-1")
    ingest = run_ingest()
    client_id = ingest.settings.ingest_client_id
    wait_until(lambda: caught_up(conn, client_id))
    first = caught_up(conn, client_id)
    assert datetime.now(UTC) - first < timedelta(seconds=5)
    wait_until(lambda: caught_up(conn, client_id) > first, timeout=10)

    # A second ingest with a session of its own (subscribed once its first tick is back) is
    # the clock for what follows.
    witness = run_ingest(ingest_client_id=f"witness-{prefix}", ingest_shared_group="")
    witness_id = witness.settings.ingest_client_id
    wait_until(lambda: caught_up(conn, witness_id))
    ingest.stop()
    stopped = caught_up(conn, client_id)
    publish_beats(publisher, prefix, ["dev-1"], 3)
    # The later marker: the witness commits a tick it sent after the heartbeats and two tick
    # periods after the stopped ingest's last one. Anything still reading the stopped
    # ingest's session would have committed a tick of its own by then.
    later = max(datetime.now(UTC), stopped + timedelta(seconds=2 * TICK_EVERY_S))
    wait_until(lambda: caught_up(conn, witness_id) > later, timeout=10)
    witness.stop()
    forget_session(*broker, witness_id)
    assert count(conn, "SELECT count(*) FROM heartbeats") == 3  # the witness stored them
    # Nothing moved it while nobody read the session: the monitor waits for the queue.
    assert caught_up(conn, client_id) == stopped
    # Ticks are bookkeeping, not traffic: the blind-spot guard does not count them.
    last_message = conn.execute(
        "SELECT last_message_at FROM ingest_status WHERE client_id = %s", (client_id,)
    ).fetchone()[0]
    assert last_message < stopped + timedelta(seconds=5)

    again = run_ingest()
    wait_until(lambda: caught_up(conn, client_id) > stopped, timeout=10)
    # Its session held the three heartbeats, queued before its first tick (the witness had
    # stored them already); its own ticks are not counted as messages.
    wait_until(lambda: again.counters.duplicates == 3)
    assert again.counters.messages_in == 3


def test_a_backlog_is_worked_off_in_batches_of_the_configured_size(
    conn, run_ingest, publisher, prefix
):
    devices = [f"dev-{i}" for i in range(10)]
    for device in devices:
        make_device(conn, device)
    run_ingest(ingest_batch_size=7).stop()
    publish_beats(publisher, prefix, devices, 10)

    ingest = run_ingest(ingest_batch_size=7)
    wait_until(lambda: count(conn, "SELECT count(*) FROM heartbeats") == 100, timeout=30)
    assert ingest.counters.batches >= 100 // 7


def test_the_receive_maximum_bounds_what_the_ingest_holds_while_it_works_off_a_backlog(
    conn, run_ingest, publisher, prefix, broker
):
    if broker[1] != "5":
        pytest.skip("Receive Maximum is MQTT 5's; this broker speaks 3.1.1")
    devices = [f"dev-{i}" for i in range(10)]
    for device in devices:
        make_device(conn, device)
    run_ingest().stop()
    publish_beats(publisher, prefix, devices, 30)

    # The broker may hand over 40 before the first acknowledgement (Mosquitto 2.0.11 then
    # sends all the rest at once); the ingest reads no further while it holds 40.
    ingest = run_ingest(ingest_receive_maximum=40, ingest_batch_size=20)
    wait_until(lambda: count(conn, "SELECT count(*) FROM heartbeats") == 300, timeout=30)
    assert 20 <= ingest.counters.backlog_peak <= 40
    assert ingest.counters.batches >= 300 // 20


def test_a_batch_larger_than_the_receive_maximum_is_refused(make_settings):
    with pytest.raises(ValueError, match=r"ingest_receive_maximum \(40\) must be at least"):
        make_settings(ingest_receive_maximum=40, ingest_batch_size=100)


def session_present(target, protocol: str, client_id: str) -> bool:
    """Whether the broker still holds a session for `client_id` (kept as it was)."""
    v5 = protocol == "5"
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        clean_session=None if v5 else False,
    )
    client.username_pw_set(target.username or "fleetwatch")
    present = []
    client.on_connect = lambda c, u, flags, rc, p: present.append(flags.session_present)
    props = None
    if v5:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 60
    kwargs = {"clean_start": False, "properties": props} if v5 else {}
    client.connect(target.host, target.port, **kwargs)
    client.loop_start()
    wait_until(lambda: present, timeout=10)
    client.disconnect()
    client.loop_stop()
    forget_session(target, protocol, client_id)  # the probe's own, if it made one
    return present[0]


def test_retiring_a_stopped_ingest_stores_its_queue_and_ends_its_session(
    conn, run_ingest, make_settings, publisher, prefix, broker
):
    devices = [f"dev-{i}" for i in range(10)]
    for device in devices:
        make_device(conn, device)
    run_ingest()  # stays up
    leaving = run_ingest(ingest_client_id=f"leaving-{prefix}")
    leaving.stop()  # stopped as for a restart: its session, and its turns, stay
    publish_beats(publisher, prefix, devices, 20)

    settings = make_settings(ingest_client_id=f"leaving-{prefix}")
    stored = Ingest(settings, settings.database_url, settings.mqtt_target()).retire(quiet_s=1.0)
    if settings.ingest_shared_group:
        # The broker kept giving the stopped member its turns: those were waiting for it.
        assert stored > 0
    # Whatever the broker had queued for the leaving ingest is stored now.
    wait_until(lambda: count(conn, "SELECT count(*) FROM heartbeats") == 200, timeout=30)
    if broker[1] == "5":
        # (amqtt answers "session present" for the clean session the retirement used.)
        assert not session_present(*broker, f"leaving-{prefix}")
    assert (
        count(conn, "SELECT count(*) FROM ingest_status WHERE client_id = %s", f"leaving-{prefix}")
        == 0
    )

    # From now on every heartbeat goes to the ingest that stayed.
    publish_beats(publisher, prefix, devices, 20, first=20)
    wait_until(lambda: count(conn, "SELECT count(*) FROM heartbeats") == 400, timeout=30)


def test_a_forged_tick_never_moves_the_watermark_past_now(conn, run_ingest, publisher, prefix):
    make_device(conn, "dev-1")
    ingest = run_ingest()
    client_id = ingest.settings.ingest_client_id
    wait_until(lambda: caught_up(conn, client_id))
    tick_topic = service_tick_topic(prefix, client_id)
    forged = [
        (datetime.now(UTC) + timedelta(days=1)).isoformat().encode(),  # from the future
        datetime.now().isoformat().encode(),  # no timezone
        b"noon",
    ]
    for payload in forged:
        publisher.publish(tick_topic, payload, qos=1).wait_for_publish(5)
    publish_beats(publisher, prefix, ["dev-1"], 3)
    sent = datetime.now(UTC)

    # The later marker: a tick of its own, sent after the forged ones, is back and committed.
    wait_until(lambda: caught_up(conn, client_id) > sent, timeout=10)
    assert caught_up(conn, client_id) <= datetime.now(UTC)
    assert count(conn, "SELECT count(*) FROM heartbeats") == 3
    assert ingest.counters.ticks_refused == {
        "from_the_future": 1,
        "no_timezone": 1,
        "not_a_time": 1,
    }
    # Its own topic is not a device's: nothing there is a rejected device message.
    assert count(conn, "SELECT count(*) FROM rejected_messages") == 0


def test_an_ingest_that_cannot_reach_its_broker_stops_what_it_started(make_settings):
    """Raising with its threads still running would leave a process that holds its broker
    session and stores nothing (seen in the 100,000-device drill)."""

    settings = make_settings(mqtt_url=f"mqtt://fleetwatch@127.0.0.1:{free_port()}")
    ingest = Ingest(settings, settings.database_url, settings.mqtt_target())
    with pytest.raises(RuntimeError, match="could not connect"):
        ingest.start(wait_connected=1.0)
    assert ingest.client._thread is None  # paho's network loop is stopped
    assert ingest._conn.closed
