"""The fault drill's verdicts: what the broker accepted, what the sink received, against the
database. Pure bookkeeping over `Evidence` gathered by drill/run.py, plus SQL.

Each check is (ok, detail); the report holds the counts behind them, the latency of offline
detection and of the notifications, how well the machine kept up, and printable lines.
"""

from __future__ import annotations

import bisect
import re
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from alerts.render import render
from alerts.templates import TEMPLATES
from core.mqtt import RECEIVE_MAXIMUM, SESSION_EXPIRY_S
from harness.stats import percentile

MEMORY_GROWTH_LIMIT = 0.20
# A process is warm once it has done its work once, in full (marker in its log, seconds
# after it):
# - a dispatcher's first send loads Apprise's plugins (~16 MB), once;
# - a monitor's health job goes round the heard-from fleet in batches, each device at most
#   once per FLEETWATCH_MONITOR_HEALTH_MIN_INTERVAL_S (60 s), and group sizes are recounted
#   every FLEETWATCH_FLEET_SIZES_REFRESH_S (60 s): its first minute of work is its warm-up.
WORK_MARKERS = {
    "alerts": (" alerts.dispatcher sent ", 1.0),
    "monitor": (" monitor.service monitor health: ", 60.0),
}


@dataclass
class Evidence:
    """Everything the drill recorded, handed over once every process has stopped."""

    config: object  # DrillConfig
    timings: object  # Timings
    dsn: str
    ack_files: list[Path]
    simulators: list[dict]  # each simulator process's final counters
    posts: list  # harness.sinks.Received, in arrival order
    silent: object  # SilentPlan
    silent_at: dict[str, float]  # device id -> epoch it was told to fall silent
    offline_after: dict[str, int]  # silent device id -> its offline_after_s
    instances: dict[str, list]  # process name -> drill.processes.Instance per start
    warm_end: float
    proc_warm_s: float  # warm-up of a process started during the run
    events: list[dict]
    monitor_gaps: list[tuple[float, float]]
    cpu_busy: float
    memory_used_kb: list[int]  # the machine's, sampled every second while the drill ran
    memory_total_kb: int
    run_window: tuple[float, float]
    stranded: dict[str, int]  # retired ingest client id -> messages waiting in its session
    warnings: dict[str, int]  # process name -> ERROR lines in its logs


def peek_session(port: int, client_id: str, wait_s: float = 3.0) -> int:
    """Messages the broker holds for a persistent session, received and never acknowledged
    (so they stay). At most RECEIVE_MAXIMUM are handed over, so the count may be a floor."""
    got: list[int] = []
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5,
        manual_ack=True,
    )
    client.username_pw_set("fleetwatch")
    client.on_message = lambda c, u, m: got.append(m.mid)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = SESSION_EXPIRY_S
    props.ReceiveMaximum = RECEIVE_MAXIMUM
    client.connect("127.0.0.1", port, clean_start=False, properties=props)
    client.loop_start()
    seen, quiet_since = -1, time.monotonic()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and time.monotonic() - quiet_since < wait_s:
        if len(got) != seen:
            seen, quiet_since = len(got), time.monotonic()
        time.sleep(0.1)
    client.disconnect()
    client.loop_stop()
    return len(got)


def _phase(events: list[dict]):
    """A function naming the drill phase a moment fell in (the latest step begun)."""
    steps = [(e["at"], e["step"]) for e in events if e["kind"] == "step"]
    times = [at for at, _ in steps]

    def phase(at: float) -> str:
        i = bisect.bisect_right(times, at)
        return "warm-up" if i == 0 else steps[i - 1][1]

    return phase


def _load_acked(conn: psycopg.Connection, files: list[Path]) -> None:
    conn.execute(
        "CREATE UNLOGGED TABLE drill_acked (device_id text NOT NULL, seq bigint NOT NULL, "
        "sent_at timestamptz NOT NULL, acked_at float8 NOT NULL)"
    )
    with conn.cursor() as cur:
        for path in files:
            with cur.copy("COPY drill_acked FROM STDIN") as copy, path.open("rb") as src:
                while chunk := src.read(1 << 20):
                    copy.write(chunk)
    conn.execute("ANALYZE drill_acked")


def _heartbeats(conn, ev: Evidence, phase) -> dict:
    acked, acked_pairs, stored, stored_pairs = conn.execute(
        "SELECT (SELECT count(*) FROM drill_acked),"
        " (SELECT count(*) FROM (SELECT DISTINCT device_id, seq FROM drill_acked) a),"
        " (SELECT count(*) FROM heartbeats),"
        " (SELECT count(*) FROM (SELECT DISTINCT device_id, seq FROM heartbeats) h)"
    ).fetchone()
    # By when the broker acknowledged them (seconds since the epoch).
    missing = conn.execute(
        "SELECT a.device_id, a.acked_at FROM drill_acked a "
        "WHERE NOT EXISTS (SELECT 1 FROM heartbeats h "
        "                  WHERE h.device_id = a.device_id AND h.seq = a.seq)"
    ).fetchall()
    unacked_stored = conn.execute(
        "SELECT count(*) FROM heartbeats h WHERE NOT EXISTS (SELECT 1 FROM drill_acked a "
        "WHERE a.device_id = h.device_id AND a.seq = h.seq)"
    ).fetchone()[0]
    lag = conn.execute(
        "SELECT percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY extract(epoch FROM "
        "received_at - ts)), max(extract(epoch FROM received_at - ts))::float8 FROM heartbeats"
    ).fetchone()
    by_phase = Counter(phase(at) for _, at in missing)
    windows = _loss_windows(ev)
    in_window = {
        name: sum(1 for _, at in missing if start <= at <= end)
        for name, (start, end) in windows.items()
    }
    return {
        "missing_in_windows": in_window,
        "windows_s": {
            name: [round(start - ev.run_window[0], 1), round(end - ev.run_window[0], 1)]
            for name, (start, end) in windows.items()
        },
        "acked": acked,
        "acked_distinct": acked_pairs,
        "stored": stored,
        "duplicates": stored - stored_pairs,
        "missing": len(missing),
        "missing_devices": len({d for d, _ in missing}),
        "missing_by_phase": dict(by_phase),
        "stored_not_acked": unacked_stored,
        "ingest_lag_s": {
            "p50": round(lag[0][0] or 0, 3) if lag[0] else None,
            "p99": round(lag[0][1] or 0, 3) if lag[0] else None,
            "max": round(lag[1] or 0, 3),
        },
    }


def _loss_windows(ev: Evidence) -> dict[str, tuple[float, float]]:
    """Where heartbeats are expected to go missing if the suspected faults are there:
    from the broker's restart to the first ingest reconnecting after it, and from a second
    ingest's stop (scale-down) to the end."""
    windows = {}
    up = next((e["at"] for e in ev.events if e["kind"] == "broker_up"), None)
    if up is not None:
        connects = sorted(
            at
            for name, instances in ev.instances.items()
            if name.startswith("ingest")
            for inst in instances
            for at in inst.log_times("ingest connected to")
        )
        back = next((at for at in connects if at >= up), None)
        if back is not None:
            windows["broker_up_to_ingest_reconnect"] = (up, back)
    for e in ev.events:
        if e["kind"] == "stop" and e["process"].startswith("ingest"):
            windows[f"after_{e['process']}_stopped"] = (e["at"], ev.run_window[1] + 60)
    return windows


def _incidents(conn, ev: Evidence, phase) -> dict:
    t = ev.timings
    rows = conn.execute(
        "SELECT device_id, kind, details ->> 'reason', extract(epoch FROM opened_at)::float8 "
        "FROM incidents WHERE scope = 'device' AND kind IN ('offline', 'never_seen')"
    ).fetchall()
    blind = conn.execute(
        "SELECT extract(epoch FROM opened_at)::float8, extract(epoch FROM resolved_at)::float8 "
        "FROM incidents WHERE scope = 'system' AND kind = 'blind_spot' ORDER BY opened_at"
    ).fetchall()
    kinds = dict(
        conn.execute(
            "SELECT scope || ':' || kind, count(*) FROM incidents GROUP BY 1 ORDER BY 1"
        ).fetchall()
    )
    sites = {k: n for k, n in kinds.items() if k.startswith("site:")}
    silent = set(ev.silent.due_at)
    per_silent = Counter(d for d, kind, _, _ in rows if kind == "offline" and d in silent)
    wrong_count = {d: per_silent.get(d, 0) for d in silent if per_silent.get(d, 0) != 1}
    beating = [r for r in rows if r[0] not in silent or r[1] != "offline"]
    in_blind = [r for r in rows if any(b <= r[3] <= (e or float("inf")) for b, e in blind)]
    down = next((e["at"] for e in ev.events if e["kind"] == "broker_down"), None)
    up = next((e["at"] for e in ev.events if e["kind"] == "broker_up"), None)
    broker_blind = [
        (b, e) for b, e in blind if down is not None and down <= b <= up + t.blind_after_s + 5
    ]
    return {
        "rows": rows,
        "sites": sites,
        "silent_found": sum(1 for d in silent if per_silent.get(d, 0) >= 1),
        "silent_wrong_count": wrong_count,
        "beating_offline": [
            {
                "device": d,
                "kind": k,
                "reason": why,
                "phase": phase(at),
                "at_s": round(at - ev.run_window[0], 1),
            }
            for d, k, why, at in beating
        ],
        "beating_offline_by_phase": dict(Counter(phase(at) for _, _, _, at in beating)),
        "in_blind_spot": len(in_blind),
        "blind_spots": [
            {"opened_s": round(b - ev.run_window[0], 1), "lasted_s": round(e - b, 1) if e else None}
            for b, e in blind
        ],
        "blind_windows": [(b, (e or b) + t.resume_grace_s) for b, e in blind],
        "broker_blind_spot": bool(broker_blind),
        "by_kind": kinds,
    }


_LINK_LINE = re.compile(r"\n+[^\n]*: \S+/my/#link=[\w-]+\s*$")
_NOTIFICATIONS = """
SELECT n.id, CASE WHEN n.channel_id IS NOT NULL THEN '/' || ch.customer_id ELSE '/staff' END,
       n.template, n.context, n.device_id, n.status,
       (SELECT count(*) FROM delivery_attempts a
        WHERE a.notification_id = n.id AND a.finished_at IS NULL)
FROM notifications n LEFT JOIN contact_channels ch ON ch.id = n.channel_id
ORDER BY n.id
"""


def _outbox(conn, ev: Evidence) -> dict:
    """Each sent notification against the sink's posts: alone (its title and body) or as a
    line of a digest. Notifications that read the same (one device offline twice within the
    same minute) cannot be told apart, so they are counted as a group."""
    statuses = dict(conn.execute("SELECT status, count(*) FROM notifications GROUP BY 1"))
    rows = conn.execute(_NOTIFICATIONS).fetchall()
    texts = {}  # notification id -> (alone key, digest-line key)
    for row in rows:
        nid, path, template, context, _, status, _ = row
        if status == "sent":
            # As the dispatcher renders it for the drill's webhook channels.
            message = render(template, context, "webhook")
            title, body = message.title, message.body
            line = "- " + TEMPLATES[template].digest_line.format_map(context)
            texts[nid] = ((path, title, body), (path, line))
    # Notifications sharing a text, alone or as a digest line, form one group.
    parent = {nid: nid for nid in texts}

    def root(nid):
        while parent[nid] != nid:
            parent[nid] = parent[parent[nid]]
            nid = parent[nid]
        return nid

    owner: dict[tuple, int] = {}
    for nid, keys in texts.items():
        for key in keys:
            if key in owner:
                parent[root(nid)] = root(owner[key])
            else:
                owner[key] = nid
    groups: dict[int, list] = defaultdict(list)
    for row in rows:
        if row[0] in texts:
            groups[root(row[0])].append(row)
    received: dict[int, list[int]] = defaultdict(list)  # group -> post indexes
    unexpected = []
    for index, post in enumerate(ev.posts):
        # Each owner's message ends with a link to their page, minted as it is sent (portal/
        # links.py): the one part of it no stored row holds, so it is left out of the match.
        message = _LINK_LINE.sub("", post.message).rstrip("\n")
        hit = owner.get((post.path, post.title, message))
        hits = [hit] if hit is not None else []
        if not hits:
            hits = [owner[k] for line in message.split("\n") if (k := (post.path, line)) in owner]
        for nid in hits:
            received[root(nid)].append(index)
        if not hits:
            unexpected.append(index)
    deliveries: dict[int, list[int]] = {}
    once = repeated_ok = 0
    wrong = []
    for key, members in groups.items():
        got = len(received[key])
        allowed = sum(1 + r[6] for r in members)
        for r in members:
            deliveries[r[0]] = received[key]
        if got == len(members):
            once += len(members)
        elif len(members) < got <= allowed:
            repeated_ok += len(members)
        else:
            wrong += [
                {
                    "id": r[0],
                    "template": r[2],
                    "device": r[4],
                    "received": got,
                    "same_text_as": len(members),
                    "unfinished_attempts": r[6],
                }
                for r in members
            ]
    return {
        "rows": rows,
        "deliveries": deliveries,
        "by_status": statuses,
        "total": len(rows),
        "received_once": once,
        "repeated_after_cut_send": repeated_ok,
        "wrong": wrong,
        "unexpected_posts": [
            {"path": ev.posts[i].path, "title": ev.posts[i].title} for i in unexpected[:10]
        ],
        "unexpected_count": len(unexpected),
        "posts": len(ev.posts),
        "by_template": dict(Counter(r[2] for r in rows)),
    }


def _silent_owners(ev: Evidence, outbox: dict) -> dict:
    offline = defaultdict(list)
    for row in outbox["rows"]:
        if row[2] == "device_offline" and row[4] is not None:
            offline[row[4]].append(row)
    wrong = {}
    for device in ev.silent.due_at:
        rows = offline.get(device, [])
        received = [len(outbox["deliveries"].get(r[0], [])) for r in rows]
        allowed = [1 + r[6] for r in rows]
        if len(rows) != 1 or rows[0][5] != "sent" or not 1 <= received[0] <= allowed[0]:
            wrong[device] = {"notifications": len(rows), "received": received}
    storms = {d: len(r) for d, r in offline.items() if d not in ev.silent.due_at}
    return {"wrong": wrong, "beating_notified": storms}


def _percentile_s(values: list[float], p: float) -> float | None:
    """The nearest-rank percentile p (0-100) in seconds, to 10 ms; None without values."""
    value = percentile(values, p)
    return None if value is None else round(value, 2)


def _latency(conn, ev: Evidence, incidents: dict, outbox: dict) -> dict:
    last = dict(
        conn.execute(
            "SELECT device_id, extract(epoch FROM max(sent_at))::float8 FROM drill_acked "
            "WHERE device_id = ANY(%s) GROUP BY device_id",
            (list(ev.silent.due_at),),
        ).fetchall()
    )
    opened = {d: at for d, kind, _, at in incidents["rows"] if kind == "offline"}
    arrival = {}
    for row in outbox["rows"]:
        hits = outbox["deliveries"].get(row[0])
        if row[2] == "device_offline" and hits:
            arrival[row[4]] = min(ev.posts[i].at for i in hits)
    # After the broker comes back, offline decisions wait out the resume grace by design;
    # and a deadline in the last tick before it went down is past what the ingest could
    # prove received (its watermark), so it waits too.
    downs = [e["at"] for e in ev.events if e["kind"] == "broker_down"]
    ups = [e["at"] for e in ev.events if e["kind"] == "broker_up"]
    broker_back = [
        (down - 2.0, up + ev.timings.resume_grace_s + 5)
        for down, up in zip(downs, ups, strict=False)
    ]
    holds = incidents["blind_windows"] + ev.monitor_gaps + broker_back
    detect, notify, free_detect, free_notify = [], [], [], []
    late_silence = 0
    for device, beat in last.items():
        if beat > ev.silent_at[device] + 1:
            late_silence += 1  # the simulator beat after it was told to stop: drill fault
        due = beat + ev.offline_after[device]
        held = any(start <= due <= end for start, end in holds)
        if device in opened:
            detect.append(opened[device] - due)
            if not held:
                free_detect.append(opened[device] - due)
        if device in arrival:
            notify.append(arrival[device] - due)
            if not held:
                free_notify.append(arrival[device] - due)
    return {
        "detect_s": {
            "p50": _percentile_s(detect, 50),
            "p99": _percentile_s(detect, 99),
            "max": _percentile_s(detect, 100),
        },
        "notify_s": {
            "p50": _percentile_s(notify, 50),
            "p99": _percentile_s(notify, 99),
            "max": _percentile_s(notify, 100),
        },
        "outside_holds": {
            "devices": len(free_detect),
            "detect_max_s": _percentile_s(free_detect, 100),
            "notify_max_s": _percentile_s(free_notify, 100),
        },
        "held_devices": len(detect) - len(free_detect),
        "beat_after_silence": late_silence,
    }


def _memory(ev: Evidence) -> dict:
    result = {}
    for instances in ev.instances.values():
        for inst in instances:
            moment = (
                ev.warm_end if inst.started_at < ev.warm_end else inst.started_at + ev.proc_warm_s
            )
            marker, after_s = WORK_MARKERS.get(inst.label.split("-")[0], (None, 0.0))
            worked = inst.log_times(marker)[:1] if marker else []
            if worked:
                moment = max(moment, worked[0] + after_s)
            warm = inst.rss_at(moment)
            end = inst.last_rss()
            if warm is None or end is None or (inst.ended_at and inst.ended_at < moment):
                # Ended before it was warm: too short to judge.
                result[inst.label] = {"warm_mb": None, "end_mb": None, "ended": inst.ended}
                continue
            after = [kb for at, kb in inst.samples if at >= moment]
            result[inst.label] = {
                "warm_mb": round(warm / 1024, 1),
                "half_mb": round(after[len(after) // 2] / 1024, 1),  # plateau or steady climb
                "peak_mb": round(max(after) / 1024, 1),
                "end_mb": round(end / 1024, 1),
                "growth": round(end / warm - 1, 3),
                "warm_at_s": round(moment - ev.run_window[0], 1),
                "cpu_s": round(inst.cpu_s, 1),
                "ended": inst.ended or "end of drill",
            }
    return result


def _machine(ev: Evidence) -> dict:
    sims = ev.simulators
    lat = [s.get("lateness", {}) for s in sims]
    beats = sum(x.get("beats", 0) for x in lat)
    skipped = sum(x.get("skipped", 0) for x in lat)
    p99 = max((x.get("p99_s", 0.0) for x in lat), default=0.0)
    intervals = min(ev.timings.interval_s.values())
    kept_up = p99 <= max(0.5, 0.1 * intervals) and skipped <= 0.001 * max(beats, 1)
    seconds = ev.run_window[1] - ev.run_window[0]
    return {
        "kept_up": kept_up,
        "cpu_busy": round(ev.cpu_busy, 3),
        "memory_total_mb": round(ev.memory_total_kb / 1024),
        "memory_used_mb": {
            "first": round(ev.memory_used_kb[0] / 1024) if ev.memory_used_kb else None,
            "p50": round(sorted(ev.memory_used_kb)[len(ev.memory_used_kb) // 2] / 1024)
            if ev.memory_used_kb
            else None,
            "peak": round(max(ev.memory_used_kb) / 1024) if ev.memory_used_kb else None,
        },
        "heartbeats_per_s": round(sum(s.get("acked", 0) for s in sims) / max(seconds, 1), 1),
        "sim_late_p50_s": max((x.get("p50_s", 0.0) for x in lat), default=0.0),
        "sim_late_p99_s": p99,
        "sim_late_max_s": max((x.get("max_s", 0.0) for x in lat), default=0.0),
        "sim_late_over_1s": sum(x.get("over_1s", 0) for x in lat),
        "beat_slots_skipped": skipped,
        "sent": sum(s.get("sent", 0) for s in sims),
        "acked": sum(s.get("acked", 0) for s in sims),
        "unacked_at_stop": sum(s.get("unacked", 0) for s in sims),
        "publish_failures": sum(s.get("publish_failures", 0) for s in sims),
        "dropped_while_disconnected": sum(s.get("heartbeats_dropped", 0) for s in sims),
        "connections_lost": sum(s.get("connections_lost", 0) for s in sims),
        "sim_errors": sum(s.get("errors", 0) for s in sims),
    }


def run_checks(ev: Evidence) -> dict:
    """Every check of the drill, its counts, and lines to print."""
    phase = _phase(ev.events)
    with psycopg.connect(ev.dsn, autocommit=True) as conn:
        conn.execute("SET work_mem = '256MB'")
        _load_acked(conn, ev.ack_files)
        hb = _heartbeats(conn, ev, phase)
        inc = _incidents(conn, ev, phase)
        out = _outbox(conn, ev)
        latency = _latency(conn, ev, inc, out)
    owners = _silent_owners(ev, out)
    memory = _memory(ev)
    machine = _machine(ev)
    silent_n = len(ev.silent.due_at)
    waiting = sum(out["by_status"].get(s, 0) for s in ("pending", "sending", "held"))
    not_sent = {s: n for s, n in out["by_status"].items() if s != "sent"}
    c = ev.config
    grown = {
        k: v["growth"]
        for k, v in memory.items()
        if v.get("growth") is not None and v["growth"] > MEMORY_GROWTH_LIMIT
    }
    checks = {
        "heartbeats_stored_once": (
            hb["missing"] == 0 and hb["duplicates"] == 0,
            f"{hb['acked']} acknowledged by the broker, {hb['stored']} stored, "
            f"{hb['missing']} missing ({hb['missing_devices']} devices; by phase "
            f"{hb['missing_by_phase']}; in windows {hb['missing_in_windows']} at "
            f"{hb['windows_s']} s), {hb['duplicates']} stored twice",
        ),
        "silent_devices_one_incident": (
            not inc["silent_wrong_count"],
            f"{inc['silent_found']}/{silent_n} silent devices with an offline incident; "
            f"not exactly one: {_first(inc['silent_wrong_count'])}",
        ),
        "silent_owners_one_notification": (
            not owners["wrong"],
            f"{silent_n - len(owners['wrong'])}/{silent_n} owners told exactly once; wrong: "
            f"{_first(owners['wrong'])}",
        ),
        "no_beating_device_offline": (
            not inc["beating_offline"] and not owners["beating_notified"],
            f"{len(inc['beating_offline'])} incidents of devices that kept beating (by phase "
            f"{inc['beating_offline_by_phase']}): {inc['beating_offline'][:5]}",
        ),
        "no_site_incident": (
            not inc["sites"],
            f"site and hub incidents (each silent device is alone in its home): {inc['sites']}",
        ),
        "none_offline_in_blind_spot": (
            inc["in_blind_spot"] == 0 and (inc["broker_blind_spot"] or "broker" not in c.steps),
            f"blind spots {inc['blind_spots']}; the broker outage opened one: "
            f"{inc['broker_blind_spot']}; offline incidents opened inside one: "
            f"{inc['in_blind_spot']}",
        ),
        "outbox_empty_all_sent": (
            waiting == 0 and not not_sent,
            f"{out['total']} notifications by status {out['by_status']}",
        ),
        "notifications_received_once": (
            not out["wrong"] and out["unexpected_count"] == 0,
            f"{out['received_once']} received once, {out['repeated_after_cut_send']} twice "
            f"after a send cut before its record (allowed), wrong {out['wrong'][:5]}, "
            f"{out['unexpected_count']} posts matching no notification "
            f"{out['unexpected_posts'][:3]}",
        ),
        "memory_within_20pct": (
            not grown,
            "growth from warm-up: "
            + ", ".join(
                f"{k} {v['growth']:+.0%}" for k, v in memory.items() if v.get("growth") is not None
            ),
        ),
    }
    ok = all(passed for passed, _ in checks.values())
    report = {
        "drill": "faults",
        "ok": ok,
        "devices": c.devices,
        "minutes": c.minutes,
        "time_scale": c.time_scale,
        "simulators": c.simulator_count,
        "silent": silent_n,
        "steps": list(c.steps),
        "worst_detection_latency_s": latency["detect_s"]["max"],
        "worst_notification_latency_s": latency["notify_s"]["max"],
        "checks": {name: passed for name, (passed, _) in checks.items()},
        "heartbeats": hb,
        "incidents": {
            "silent_found": inc["silent_found"],
            "beating_offline": len(inc["beating_offline"]),
            "beating_offline_by_phase": inc["beating_offline_by_phase"],
            "blind_spots": inc["blind_spots"],
            "by_kind": inc["by_kind"],
        },
        "notifications": {
            "total": out["total"],
            "by_status": out["by_status"],
            "by_template": out["by_template"],
            "sink_posts": out["posts"],
            "received_once": out["received_once"],
            "repeated_after_cut_send": out["repeated_after_cut_send"],
        },
        "latency": latency,
        "memory": memory,
        "machine": machine,
        "stranded_in_retired_ingest_sessions": ev.stranded,
        "error_log_lines": ev.warnings,
    }
    report["details"] = {name: detail for name, (_, detail) in checks.items()}
    report["lines"] = _lines(report, checks)
    return report


def _first(mapping: dict, n: int = 5) -> dict:
    return dict(list(mapping.items())[:n])


def _lines(report: dict, checks: dict) -> list[str]:
    m, lat, hb = report["machine"], report["latency"], report["heartbeats"]
    lines = [
        f"fleet: {report['devices']} devices at time scale {report['time_scale']} on "
        f"{report['simulators']} simulator process(es), {report['silent']} silent; "
        f"{m['acked']} heartbeats acknowledged ({m['heartbeats_per_s']}/s), "
        f"{m['dropped_while_disconnected']} not sent while disconnected",
        f"machine: CPU {m['cpu_busy']:.0%} busy; memory in use {m['memory_used_mb']['p50']} "
        f"MB (peak {m['memory_used_mb']['peak']}) of {m['memory_total_mb']} MB; "
        f"simulators late p50 {m['sim_late_p50_s']} s, "
        f"p99 {m['sim_late_p99_s']} s, max {m['sim_late_max_s']} s, "
        f"{m['sim_late_over_1s']} beats over 1 s late, {m['beat_slots_skipped']} slots skipped; "
        f"ingest lag p50 {hb['ingest_lag_s']['p50']} s, p99 {hb['ingest_lag_s']['p99']} s",
        "machine: kept up at this scale"
        if m["kept_up"]
        else "machine: DID NOT keep up at this scale (simulators late): figures are the "
        "machine's limit as much as the product's",
        f"detection (deadline to incident): p50 {lat['detect_s']['p50']} s, "
        f"p99 {lat['detect_s']['p99']} s, max {lat['detect_s']['max']} s; "
        f"notification (deadline to sink): p50 {lat['notify_s']['p50']} s, "
        f"p99 {lat['notify_s']['p99']} s, max {lat['notify_s']['max']} s; "
        f"{lat['held_devices']} held by a blind spot, the grace after the broker's restart "
        "or a dead monitor (outside those: "
        f"max {lat['outside_holds']['detect_max_s']} s / {lat['outside_holds']['notify_max_s']} s)",
    ]
    if report["stranded_in_retired_ingest_sessions"]:
        stranded = {
            client: f"{'at least ' if n >= RECEIVE_MAXIMUM else ''}{n}"
            for client, n in report["stranded_in_retired_ingest_sessions"].items()
        }
        lines.append(f"messages waiting in the sessions of ingest processes stopped: {stranded}")
    for name, (passed, detail) in checks.items():
        lines.append(f"{'PASS' if passed else 'FAIL'} {name}: {detail}")
    return lines
