"""A safety recall with an over-the-air remedy, tick by tick with devices played in SQL
(played.py), told through the real router and dispatcher to a real SMTP server, a local ntfy
server (push) and an HTTP sink (webhook), then read back through the completion view and its
CSV. (SMS goes only to providers at their own hosts, alerts/outbound.py: its form is checked
as rendered, below.)"""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from played import SHA, Devices, run_until
from support import add_channel, auth, make_device

from campaigns.store import CampaignCreate, create_campaign

# In the past, so that the completion view's "now" is after everything the ticks did.
T0 = (datetime.now(UTC) - timedelta(days=10)).replace(microsecond=0)
BASE = "https://fleet.example.com"
VIN = re.compile(r"\b[A-HJ-NPR-Z0-9]{17}\b")
RECALL = {
    "name": "Recall 26V-101: brake assist software",
    "kind": "safety_recall",
    "remedy": "ota_update",
    "target": {"models": ["car-telematics-v1"]},
    "target_version": "2.5.0",
    "artifact_url": "https://updates.example.com/car/2.5.0.bin",
    "artifact_sha256": SHA,
    "waves": [50, 100],
    "soak_s": 0,
    "safe_to_use": True,
    "safety_critical": True,
    "avoid": "towing a trailer",
    "instructions": "Park it where it has mobile coverage overnight.",
    "policy": {
        "max_attempts": 1,
        "step_timeout_s": 600,
        "reboot_timeout_s": 600,
        "follow_up_after_s": [3 * 86400],
    },
}


def vin(i: int) -> str:
    return f"WF0RECALL{i:08d}"


@pytest.fixture
def cars(conn, smtp, http_sink, ntfy):
    """Six cars: 0-3 on 2.4.1 (3 fails its update), 4-5 already on 2.5.0; every owner has
    email, push and a webhook, but owner 2 has no channel at all."""
    for i in range(6):
        owner = f"own-{i}"
        make_device(
            conn,
            f"car-{i}",
            model_id="car-telematics-v1",
            vin=vin(i),
            firmware="2.5.0" if i >= 4 else "2.4.1",
            customer_id=owner,
            name=f"Car {i}",
            timezone=("Europe/Berlin", "America/New_York")[i % 2],
            region=("north", "south")[i % 2],
        )
        if i != 2:
            add_channel(conn, owner, smtp.url(f"{owner}@example.com"), kind="email")
            add_channel(conn, owner, ntfy.url(owner), kind="push")
            add_channel(conn, owner, http_sink.url(owner), kind="webhook")
    conn.execute(
        "UPDATE device_state ds SET status = 'online', firmware = d.firmware, "
        "last_seen_at = %s, last_received_at = %s, last_uptime_s = 86400, "
        "overdue_at = %s + interval '30 days' FROM devices d WHERE d.id = ds.device_id",
        (T0, T0, T0),
    )


def messages(smtp, http_sink, ntfy) -> dict[str, list[tuple[str, str, str]]]:
    """(channel, title, text) of everything received, by owner."""
    out: dict[str, list] = {}
    for _, m in smtp.messages:
        owner = m["to"].split("@")[0]
        out.setdefault(owner, []).append(
            ("email", m["subject"], m.get_body(("plain",)).get_content())
        )
    for kind, sink in (("webhook", http_sink), ("push", ntfy)):
        for path, received in sink.by_path().items():
            out.setdefault(path.strip("/"), []).extend((kind, t, b) for t, b in received)
    return out


def clear(*sinks) -> None:
    for sink in sinks:
        getattr(sink, "messages", getattr(sink, "posts", None)).clear()


def drain(dispatcher, now) -> None:
    while dispatcher.run_once(now):
        pass


def test_a_safety_recall_with_its_update_tells_each_owner_of_their_own_car_throughout(
    conn, cars, runner, make_dispatcher, smtp, http_sink, ntfy, api, keys
):
    campaign_id, targeted = create_campaign(
        conn, CampaignCreate.model_validate(RECALL), created_by="safety", now=T0
    )
    assert targeted == 6
    devices = Devices(conn, outcome=lambda d: "install_failed" if d == "car-3" else "ok")
    r = runner(devices, public_url=BASE)
    dispatcher = make_dispatcher()
    # Owner 3's quiet hours last all day: a safety-critical recall is urgent and goes all the
    # same (its "recall done" would wait; theirs fails and is urgent too).
    conn.execute(
        "UPDATE customers SET quiet_hours_start = '00:00', quiet_hours_end = '23:59' "
        "WHERE id = 'own-3'"
    )

    devices.now = T0
    r.tick(T0)
    drain(dispatcher, T0)
    heard = messages(smtp, http_sink, ntfy)
    for i in (0, 1, 3):
        mine = heard[f"own-{i}"]
        # Every channel at once, each naming this owner's car and no other.
        assert sorted(kind for kind, _, _ in mine) == ["email", "push", "webhook"], mine
        for kind, title, text in mine:
            assert set(VIN.findall(f"{title} {text}")) == {vin(i)}, (kind, title, text)
            assert "Safety recall" in title or "Safety recall" in text
        email = next(text for kind, _, text in mine if kind == "email")
        assert "Sent even during quiet hours" in email  # urgent, for every owner
        assert "It is safe to keep using it meanwhile. Avoid meanwhile: towing a trailer." in email
        first_day = T0.astimezone(ZoneInfo(("Europe/Berlin", "America/New_York")[i % 2]))
        assert (
            "software update to version 2.5.0, installed over the air over the next days, "
            f"from {first_day:%d %b %Y}"
        ) in email
        assert f"{BASE}/recall/" in email
    assert "own-2" not in heard  # no channel: unreachable
    for i in (4, 5):
        mine = heard[f"own-{i}"]
        assert len(mine) == 3 and all("Safety recall" not in t for _, t, _ in mine)
        for _, title, text in mine:
            assert f"VIN {vin(i)} already has the fix (software 2.5.0)" in text or (
                "already has the fix" in title
            )
    # Already fixed: counted remedied, never commanded.
    assert {d for _, d, _ in devices.commands}.isdisjoint({"car-4", "car-5"})

    # Owner 1 confirms through the link their push opens: acknowledged, the update goes on.
    [push] = [p for p in ntfy.pushes if p.topic == "own-1"]
    assert push.priority == 5  # urgent
    link = push.click.removeprefix(BASE)
    assert "Thank you" in api.post(link).text
    state, acked = conn.execute(
        "SELECT state, acknowledged_at FROM campaign_devices WHERE device_id = 'car-1'"
    ).fetchone()
    assert acked is not None and state != "acknowledged"

    clear(smtp, http_sink, ntfy)
    done = run_until(
        r,
        devices,
        T0 + timedelta(minutes=1),
        timedelta(minutes=1),
        lambda now: (
            conn.execute(
                "SELECT count(*) FROM campaign_devices WHERE state IN ('sent', 'accepted', "
                "'downloading', 'installing', 'rebooting', 'pending')"
            ).fetchone()[0]
            == 0
        ),
        limit=30,
    )
    drain(dispatcher, done)
    # Every unfixed car got its update command, and the fixed ones none.
    assert {d for _, d, _ in devices.commands} == {"car-0", "car-1", "car-2", "car-3"}
    heard = messages(smtp, http_sink, ntfy)
    for i in (0, 1):
        for _kind, title, text in heard[f"own-{i}"]:
            assert set(VIN.findall(f"{title} {text}")) == {vin(i)}
            assert "2.5.0" in f"{title} {text}" and "fix" in f"{title} {text}"
    failed = {kind: (t, b) for kind, t, b in heard["own-3"]}
    assert set(failed) == {"email", "webhook", "push"}
    assert "What happens next: we will try again" in failed["email"][1]
    assert vin(3) in failed["email"][1] and "the installation failed" in failed["email"][1]
    assert {"own-4", "own-5"}.isdisjoint(heard)  # nothing more to the already fixed

    # Three days after the notice: the one car still unremedied gets its follow-up.
    clear(smtp, http_sink, ntfy)
    later = T0 + timedelta(days=3, minutes=1)
    devices.now = later
    r.tick(later)
    drain(dispatcher, later)
    heard = messages(smtp, http_sink, ntfy)
    assert set(heard) == {"own-3"}
    assert len(heard["own-3"]) == 3
    assert all(t.startswith("Urgent: Reminder 1, safety recall") for _, t, _ in heard["own-3"])
    timeline = conn.execute(
        "SELECT kind, detail FROM campaign_events WHERE campaign_id = %s ORDER BY id",
        (campaign_id,),
    ).fetchall()
    # On the timeline: car-2 updated (its owner unreachable), so only car-3 was followed up.
    assert ("follow_up", {"number": 1, "devices": 1}) in timeline
    # Follow-ups spent, nothing in flight: the recall completes.
    r.tick(later + timedelta(minutes=1))
    assert conn.execute("SELECT status FROM campaigns").fetchone()[0] == "completed"

    view = api.get(f"/api/v1/campaigns/{campaign_id}/completion", headers=auth(keys.firmware))
    assert view.status_code == 200, view.text
    total = view.json()["total"]
    assert total == {
        "devices": 6,
        "notified": 5,
        "acknowledged": 1,
        "remedied": 5,
        "unreachable": 1,
        "remedied_pct": 83.3,
    }
    by_region = {g["region"]: g for g in view.json()["by_model_region"]}
    assert by_region["north"]["unreachable"] == 1 and by_region["south"]["remedied"] == 2
    report = api.get(f"/api/v1/campaigns/{campaign_id}/completion.csv", headers=auth(keys.staff))
    assert report.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(report.text)))
    assert rows[-1]["model"] == "all" and int(rows[-1]["remedied"]) == 5
    assert int(rows[-1]["notified"]) == 5
    same = api.get(
        f"/api/v1/campaigns/{campaign_id}/completion?format=csv", headers=auth(keys.staff)
    )
    # The same report but for its time stamp (as_of).
    assert [r[:1] + r[2:] for r in csv.reader(io.StringIO(same.text))] == [
        r[:1] + r[2:] for r in csv.reader(io.StringIO(report.text))
    ]


def test_the_completion_view_is_for_staff_and_refuses_an_update_campaign(conn, api, keys):
    make_device(conn, "cam-1", model_id="camera-v1", firmware="1.0.0")
    update = {
        "name": "x",
        "kind": "ota_update",
        "target": {"device_ids": ["cam-1"]},
        "target_version": "2.0.0",
        "artifact_url": "https://updates.example.com/x.bin",
        "artifact_sha256": SHA,
    }
    campaign_id, _ = create_campaign(
        conn, CampaignCreate.model_validate(update), created_by="t", now=T0
    )
    path = f"/api/v1/campaigns/{campaign_id}/completion"
    assert api.get(path, headers=auth(keys.staff)).status_code == 409
    assert api.get(path, headers=auth(keys.customer("cust-1"))).status_code == 403
    assert api.get(path + "?format=xml", headers=auth(keys.staff)).status_code == 422
    assert (
        api.get("/api/v1/campaigns/999999/completion", headers=auth(keys.staff)).status_code == 404
    )


@pytest.mark.parametrize(
    "template",
    ["safety_recall", "recall_follow_up", "recall_remedy_failed", "recall_no_action_needed"],
)
def test_a_cars_recall_sms_names_its_vin_and_fits_one_segment_before_its_link(template):
    """The SMS form of a real car's messages, from the fields the router and the recall give
    (a long name, an urgent mark): one segment, the VIN in it, the link after it."""
    from alerts.context import DeviceInfo, device_context
    from alerts.render import SMS_LIMIT, render
    from campaigns.readings import campaign_from_row
    from campaigns.recall import recall_context

    car = DeviceInfo(
        "car-7", "Family estate car", None, vin(7), "car", "Car telematics unit v1", False,
        "own-7", "Ann", "Europe/Berlin",
    )  # fmt: skip
    campaign = campaign_from_row(
        (
            9, RECALL["name"], "safety_recall", "running", "2.5.0", RECALL["artifact_url"], SHA,
            [50, 100], 0, None, None, T0, 1, T0, RECALL["policy"], False, RECALL["instructions"],
            "ota_update", ">=2.5.0", True, "towing a trailer",
        )
    )  # fmt: skip
    context = {
        **device_context(car, since=T0),
        **recall_context(campaign, "Europe/Berlin", "T0ken-abcdefghijklmnop", BASE),
        "installed_version": "2.4.1",
        "follow_up_number": 1,
        "notified_local": "09:00 on 1 Dec 2026 (Europe/Berlin)",
        "failure_text": "the installation failed",
        "next_steps": "we will try again in the next update window.",
        "urgent": True,
    }
    sms = render(template, context, "sms")
    text, _, link = sms.body.rpartition(" ")
    assert vin(7) in text and len(text) <= SMS_LIMIT and not text.endswith("...")
    if template != "recall_no_action_needed":
        assert link == f"{BASE}/recall/T0ken-abcdefghijklmnop"
        assert "Stop using it until this is done." in text


def test_a_service_visit_recall_closes_for_a_car_seen_on_the_fixed_version_and_follows_up(
    conn, cars, runner, make_dispatcher, smtp, http_sink, ntfy, api, keys
):
    """A remedy by service visit: no commands; a car a workshop updated is remedied when its
    heartbeat shows the fixed version ("recall done"); the others are followed up, and the
    owner's acknowledgement through the API does not stop them (the car is still unfixed)."""
    visit = {
        **{k: v for k, v in RECALL.items() if k not in ("artifact_url", "artifact_sha256")},
        "remedy": "service_visit",
        "target_version": None,
        "fixed_in": ">=2.5.0",
        "waves": None,
        "safety_critical": False,
        "instructions": "Book a free visit at your dealer: example.com/recall.",
    }
    campaign_id, _ = create_campaign(
        conn, CampaignCreate.model_validate(visit), created_by="safety", now=T0
    )
    devices = Devices(conn)
    r = runner(devices, public_url=BASE)
    dispatcher = make_dispatcher()
    r.tick(T0)
    drain(dispatcher, T0)
    heard = messages(smtp, http_sink, ntfy)
    # Not safety-critical: the owner's first channel only (email here), with the remedy.
    assert [k for k, _, _ in heard["own-0"]] == ["email"]
    assert "The remedy: a free service visit. Book a free visit" in heard["own-0"][0][2]
    assert not devices.commands

    # A workshop installs 2.5.0 on car-1; its next heartbeat says so.
    conn.execute("UPDATE device_state SET firmware = '2.5.0' WHERE device_id = 'car-1'")
    owner0 = keys.customer("own-0")
    assert (
        api.post(f"/api/v1/me/campaigns/{campaign_id}/ack", headers=auth(owner0)).status_code == 200
    )
    clear(smtp, http_sink, ntfy)
    later = T0 + timedelta(days=3, minutes=1)
    r.tick(later)
    drain(dispatcher, later)
    heard = messages(smtp, http_sink, ntfy)
    assert any("now runs software 2.5.0" in text for _, _, text in heard["own-1"])
    followed = {o for o, msgs in heard.items() if any("Reminder 1" in t for _, t, _ in msgs)}
    assert followed == {"own-0", "own-3"}  # car-2's owner has no channel; 4, 5 had the fix
    states = dict(conn.execute("SELECT device_id, state FROM campaign_devices").fetchall())
    assert states["car-1"] == "remedied" and states["car-0"] == "pending"
    r.tick(later + timedelta(minutes=1))
    assert conn.execute("SELECT status FROM campaigns").fetchone()[0] == "completed"
    left = conn.execute(
        "SELECT device_id, failure_reason FROM campaign_devices WHERE state = 'skipped'"
    ).fetchall()
    assert sorted(left) == [
        ("car-0", "not_remedied"),
        ("car-2", "not_remedied"),
        ("car-3", "not_remedied"),
    ]


def test_a_car_fixed_at_a_workshop_is_found_at_the_next_sweep_not_at_every_tick(
    conn, cars, runner, make_dispatcher
):
    """Finding cars fixed by other means reads every unremedied car: a running runner does
    it at most once a minute (campaigns/recall.py SWEEP_EVERY_S), and at its first tick."""
    visit = {
        **{k: v for k, v in RECALL.items() if k not in ("artifact_url", "artifact_sha256")},
        "remedy": "service_visit",
        "target_version": None,
        "fixed_in": ">=2.5.0",
        "waves": None,
    }
    create_campaign(conn, CampaignCreate.model_validate(visit), created_by="safety", now=T0)
    r = runner(Devices(conn), public_url=BASE)
    r.tick(T0)

    def state(device):
        return conn.execute(
            "SELECT state FROM campaign_devices WHERE device_id = %s", (device,)
        ).fetchone()[0]

    # Cars 4 and 5 had the fix at the start: found by the first tick.
    assert state("car-4") == state("car-5") == "remedied"
    conn.execute("UPDATE device_state SET firmware = '2.5.0' WHERE device_id = 'car-1'")
    r.tick(T0 + timedelta(seconds=30))
    assert state("car-1") == "pending"
    r.tick(T0 + timedelta(seconds=61))
    assert state("car-1") == "remedied"
