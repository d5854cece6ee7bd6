"""Settings that name a process to the broker: the ingest's client id follows its login, and
a part's own login replaces the shared one only when given."""

from __future__ import annotations

import pytest

from core.settings import MqttTarget, Settings, own_login

# (FLEETWATCH_MQTT_URL, FLEETWATCH_INGEST_CLIENT_ID, the ingest's client id)
CLIENT_IDS = (
    (None, "", "fleetwatch-ingest-1"),  # the embedded broker
    ("mqtt://127.0.0.1:1883", "", "fleetwatch-ingest-1"),  # no login
    ("mqtt://fleetwatch-ingest-2:secret@broker:1883", "", "fleetwatch-ingest-2"),
    ("mqtt://fleetwatch-ingest-2:secret@broker:1883", "ingest-b", "ingest-b"),  # said so
    ("http://not-mqtt", "", "fleetwatch-ingest-1"),  # refused where it is used, not here
)


@pytest.mark.parametrize(("url", "given", "expected"), CLIENT_IDS)
def test_the_ingest_client_id_is_its_login_unless_given(url, given, expected):
    settings = Settings(mqtt_url=url, ingest_client_id=given, _env_file=None)
    assert settings.ingest_client_id == expected


def test_a_part_uses_its_own_login_only_when_one_is_given():
    shared = MqttTarget(host="broker", port=1883, username="fleetwatch-ingest-1", password="a")

    assert own_login(None, shared) is shared
    own = own_login("mqtt://fleetwatch-campaigns:b@broker:1883", shared)
    assert (own.username, own.password, own.host) == ("fleetwatch-campaigns", "b", "broker")
