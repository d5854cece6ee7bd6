"""The owner's notices of device incidents, recorded from the incidents themselves."""

from datetime import UTC, datetime

import pytest
from support import make_device

import incidents
from alerts.notices import record_incident_notices, record_notices, to_owner
from incidents import DeviceProblem, GroupProblem

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
FACTS = {"reason": "silent", "since": "2026-12-07T11:50:00+00:00"}


def _notices(conn):
    return conn.execute(
        "SELECT audience, template, severity, device_id, incident_id, campaign_id, channels, "
        "context, created_at FROM notices ORDER BY incident_id"
    ).fetchall()


def test_a_device_incidents_notice_is_the_one_to_owner_would_record(conn):
    make_device(conn, "panel-1", model_id="alarm-panel-v3")
    make_device(conn, "cam-1", model_id="camera-v1")
    templates = {"panel-1": "device_offline", "cam-1": "device_missed_checkin"}
    opened = incidents.open_device_incidents(
        conn,
        [
            DeviceProblem(
                d,
                "offline",
                "warning",
                "{device} went offline",
                FACTS,
                critical_severity="critical",
            )
            for d in templates
        ],
        NOW,
    )
    group = incidents.open_group_incident(
        conn, GroupProblem("site", "site_offline", "site:x", "warning", "x", {}), NOW
    )

    recorded = record_incident_notices(
        conn,
        # The group's is not a device's incident: nobody's owner to tell.
        [(o.id, templates[o.device_id]) for o in opened] + [(group.id, "device_offline")],
        NOW,
    )

    assert recorded == 2
    from_incidents = _notices(conn)
    conn.execute("TRUNCATE notices")
    record_notices(
        conn,
        [
            to_owner(
                templates[o.device_id], o.severity, o.device_id, incident_id=o.id, context=FACTS
            )
            for o in opened
        ],
        NOW,
    )
    assert from_incidents == _notices(conn)
    # The alarm panel's incident is critical, and so is its notice.
    assert [row[2] for row in from_incidents] == ["critical", "warning"]


def test_an_unknown_template_records_nothing(conn):
    with pytest.raises(ValueError, match="no template 'device_gone_fishing'"):
        record_incident_notices(conn, [(1, "device_offline"), (2, "device_gone_fishing")], NOW)
    assert conn.execute("SELECT count(*) FROM notices").fetchone()[0] == 0
    assert record_incident_notices(conn, [], NOW) == 0
