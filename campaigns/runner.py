"""The campaign runner: a periodic job (APScheduler) that moves every campaign on.

Each tick, under an advisory lock so that one runner works at a time however many run:
  1. applies the devices' update reports (ota_reports) to their progress;
  2. checks devices in flight: back on the new firmware, timed out, never back;
  3. judges the health gate, and halts a campaign that crosses it;
  4. starts campaigns, opens the next wave after its soak, completes them;
  5. sends commands to pending devices of opened waves inside their maintenance window,
     and recall notices (repeated on the owner's next channel when not acknowledged).
A command is recorded as sent, and committed, before it is published: a runner killed in
between never sends it twice; that attempt times out and the next one has its own id.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import psycopg

import incidents
from alerts.notices import record_notices, to_staff
from campaigns.gates import evaluate_gate
from campaigns.notices import notify_owners
from campaigns.readings import (
    ACTIVE_CAMPAIGNS,
    CAMPAIGN_BY_ID,
    Campaign,
    awaiting_ack,
    campaign_from_row,
    health_of,
    view_of,
    wave_counts,
)
from campaigns.recall import (
    SWEEP_EVERY_S,
    owed_follow_ups,
    recall_tick,
    remedy_failed,
    remedy_succeeded,
)
from campaigns.remedy import recall_settled
from campaigns.steps import IN_FLIGHT, Decision, Observed, Progress, apply_report, check
from campaigns.store import campaign_progress, record_event
from campaigns.waves import in_window, next_move
from contract.commands import UpdateCommand
from contract.topics import command_topic
from core import db
from core.mqtt import connect_client, make_client
from core.settings import MqttTarget, Settings
from core.worker import Job, RunsForever, Worker
from incidents import GroupProblem

log = logging.getLogger(__name__)

_LOCK = 0x63616D70  # "camp"
SEND_BATCH = 2000


@dataclass
class TickReport:
    reports: int = 0
    commands: int = 0
    succeeded: int = 0
    failed: int = 0
    notices: int = 0
    moves: list[tuple[int, str]] = field(default_factory=list)
    skipped: bool = False


class CampaignRunner(RunsForever):
    """Moves campaigns on every FLEETWATCH_CAMPAIGNS_TICK_S; publishes commands over MQTT."""

    def __init__(
        self,
        settings: Settings,
        dsn: str,
        target: MqttTarget | None,
        *,
        publish=None,
    ) -> None:
        self.settings = settings
        self.dsn = dsn
        self._prefix = settings.topic_prefix
        self._conn: psycopg.Connection | None = None
        # When each safety recall last swept for devices fixed by other means, and last
        # checked whether it is settled (both read every device of the recall).
        self._swept: dict[int, datetime] = {}
        self._settle_checked: dict[int, datetime] = {}
        self.worker = Worker(
            "campaigns", [Job("tick", self.tick, settings.campaigns_tick_s, self._drop)], dsn=dsn
        )
        self._client = None
        self._publish = publish
        if publish is None and target is not None:
            self._client = make_client(
                target,
                f"fleetwatch-campaigns-{uuid.uuid4().hex[:8]}",
                protocol=settings.mqtt_protocol,
            )
            connect_client(self._client, target, asynchronous=True)
            self._client.loop_start()
            self._publish = self._publish_mqtt

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> CampaignRunner:
        self.worker.start()
        return self

    def stop(self) -> None:
        self.worker.stop()
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
        self._drop()

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = db.connect(self.dsn, autocommit=True)
        return self._conn

    # -- the tick ----------------------------------------------------------------------------

    def tick(self, now: datetime | None = None) -> TickReport:
        """One pass over every active campaign at `now` (default: the database's clock)."""
        conn = self._connection()
        report = TickReport()
        if not conn.execute("SELECT pg_try_advisory_lock(%s)", (_LOCK,)).fetchone()[0]:
            report.skipped = True  # another runner is at work
            return report
        try:
            if now is None:
                now = db.db_now(conn)
            report.reports = self._apply_reports(conn, now, report)
            for row in conn.execute(ACTIVE_CAMPAIGNS).fetchall():
                campaign = campaign_from_row(row)
                self._advance(conn, campaign, now, report)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK,))
        if report.commands or report.moves or report.succeeded or report.failed:
            log.info(
                "campaigns tick: %d reports, %d commands, %d succeeded, %d failed, "
                "%d notices, moves %s",
                report.reports,
                report.commands,
                report.succeeded,
                report.failed,
                report.notices,
                report.moves,
            )
        return report

    @staticmethod
    def _due(last_run: dict[int, datetime], campaign_id: int, now: datetime) -> bool:
        """Whether a whole-recall read is due (its first, or SWEEP_EVERY_S after the last);
        if so, noted as run at `now`."""
        last = last_run.get(campaign_id)
        if last is not None and last <= now < last + timedelta(seconds=SWEEP_EVERY_S):
            return False
        last_run[campaign_id] = now
        return True

    def _advance(self, conn, campaign: Campaign, now: datetime, report: TickReport) -> None:
        if campaign.over_the_air and campaign.status != "scheduled":
            self._check_in_flight(conn, campaign, now, report)
        if campaign.status == "running" and campaign.over_the_air:
            verdict = evaluate_gate(*health_of(conn, campaign), campaign.policy)
            if verdict.halt:
                self._halt(conn, campaign, verdict.reason, now)
                report.moves.append((campaign.id, "halt"))
                return
        move = next_move(view_of(campaign), wave_counts(conn, campaign), now)
        if move == "complete" and campaign.kind == "recall_notice" and awaiting_ack(conn, campaign):
            move = None  # a recall is done when every owner has acknowledged it
        if campaign.kind == "safety_recall" and campaign.status == "running":
            move = self._recall_move(conn, campaign, move, now)
        if move == "start":
            self._open_wave(conn, campaign, 1, now, report, started=True)
        elif move == "open_next":
            self._open_wave(conn, campaign, campaign.current_wave + 1, now, report)
        elif move == "complete":
            self._complete(conn, campaign, now)
        if move:
            report.moves.append((campaign.id, move))
        if campaign.status == "running":
            if campaign.kind == "safety_recall":
                # Before the commands: a device already fixed is never commanded.
                sweep = self._due(self._swept, campaign.id, now)
                report.notices += recall_tick(
                    conn, campaign, now, self.settings.public_url, sweep=sweep
                )
            if campaign.over_the_air:
                report.commands += self._send_commands(conn, campaign, now)
            elif campaign.kind == "recall_notice":
                report.notices += self._send_recalls(conn, campaign, now)

    def _recall_move(self, conn, campaign: Campaign, move: str | None, now: datetime) -> str | None:
        """A safety recall opens its waves as an update does, and completes only once it is
        settled (campaigns/remedy.py): no update under way, no follow-up owed. That takes a
        count over every device of the recall: once a minute, not at every tick."""
        all_open = campaign.current_wave >= len(campaign.waves)
        if move == "open_next" or not all_open:
            return move
        if not self._due(self._settle_checked, campaign.id, now):
            return None
        in_flight, owed = owed_follow_ups(conn, campaign)
        settled = recall_settled(all_waves_open=all_open, in_flight=in_flight, owed_follow_ups=owed)
        return "complete" if settled else None

    # -- reports and devices in flight -------------------------------------------------------

    def _apply_reports(self, conn, now: datetime, report: TickReport) -> int:
        with conn.transaction():
            rows = conn.execute(
                "SELECT r.id, r.state, r.reason, cd.campaign_id, cd.device_id, cd.state, "
                "cd.state_at, cd.attempt, cd.sent_at "
                "FROM ota_reports r "
                "LEFT JOIN campaign_devices cd ON cd.command_id = r.command_id "
                "WHERE r.applied_at IS NULL ORDER BY r.id LIMIT 5000 FOR UPDATE OF r SKIP LOCKED"
            ).fetchall()
            campaigns: dict[int, Campaign] = {}
            for row in rows:
                state, reason, campaign_id, device = row[1], row[2], row[3], row[4]
                if campaign_id is None:
                    continue  # a report on a command we do not know, or no longer track
                if campaign_id not in campaigns:
                    campaigns[campaign_id] = campaign_from_row(
                        conn.execute(CAMPAIGN_BY_ID, (campaign_id,)).fetchone()
                    )
                campaign = campaigns[campaign_id]
                decision = apply_report(Progress(*row[5:9]), state, reason, campaign.policy)
                if decision is not None:
                    self._decide(conn, campaign, device, decision, now, report)
            if rows:
                conn.execute(
                    "UPDATE ota_reports SET applied_at = %s WHERE id = ANY(%s)",
                    (now, [r[0] for r in rows]),
                )
        return len(rows)

    def _check_in_flight(self, conn, campaign: Campaign, now: datetime, report) -> None:
        with conn.transaction():
            rows = conn.execute(
                "SELECT cd.device_id, cd.state, cd.state_at, cd.attempt, cd.sent_at, "
                "st.firmware, st.last_seen_at, st.last_uptime_s "
                "FROM campaign_devices cd LEFT JOIN device_state st ON st.device_id = cd.device_id "
                "WHERE cd.campaign_id = %s AND cd.state = ANY(%s) FOR UPDATE OF cd",
                (campaign.id, list(IN_FLIGHT)),
            ).fetchall()
            for device, state, state_at, attempt, sent_at, fw, seen, uptime in rows:
                decision = check(
                    Progress(state, state_at, attempt, sent_at),
                    Observed(fw, seen, uptime),
                    campaign.target_version or "",
                    now,
                    campaign.policy,
                )
                if decision is not None:
                    self._decide(conn, campaign, device, decision, now, report)

    def _decide(self, conn, campaign: Campaign, device: str, decision: Decision, now, report):
        final = decision.state in ("succeeded", "failed")
        conn.execute(
            "UPDATE campaign_devices SET state = %s, state_at = %s, "
            "failure_reason = CASE WHEN %s = 'failed' THEN %s ELSE failure_reason END, "
            "finished_at = CASE WHEN %s THEN %s END "
            "WHERE campaign_id = %s AND device_id = %s",
            (decision.state, now, decision.state, decision.reason, final, now, campaign.id, device),
        )
        if decision.state == "pending":
            log.info(
                "campaign %d device %s: retrying after %s", campaign.id, device, decision.reason
            )
        elif decision.state == "succeeded":
            report.succeeded += 1
            log.info(
                "campaign %d device %s: updated to %s", campaign.id, device, campaign.target_version
            )
            if campaign.kind == "safety_recall":
                report.notices += remedy_succeeded(
                    conn, campaign, device, now, self.settings.public_url
                )
            else:
                report.notices += self._notify(conn, campaign, [device], "ota_succeeded", now)
        elif decision.state == "failed":
            report.failed += 1
            log.warning(
                "campaign %d device %s: update failed: %s", campaign.id, device, decision.reason
            )
            if campaign.kind == "safety_recall":
                report.notices += remedy_failed(
                    conn, campaign, device, decision.reason, now, self.settings.public_url
                )
            else:
                report.notices += self._notify(
                    conn, campaign, [device], "ota_failed", now, reason=decision.reason
                )

    # -- waves -------------------------------------------------------------------------------

    def _open_wave(self, conn, campaign: Campaign, wave: int, now, report, *, started=False):
        with conn.transaction():
            conn.execute(
                "UPDATE campaigns SET status = 'running', current_wave = %s, wave_opened_at = %s "
                "WHERE id = %s",
                (wave, now, campaign.id),
            )
            devices = [
                d
                for (d,) in conn.execute(
                    "SELECT device_id FROM campaign_devices WHERE campaign_id = %s AND wave = %s "
                    "AND state = 'pending' ORDER BY device_id",
                    (campaign.id, wave),
                )
            ]
            if started:
                record_event(conn, campaign.id, now, "started")
            record_event(conn, campaign.id, now, "wave_opened", wave=wave, devices=len(devices))
            if campaign.kind == "ota_update":
                report.notices += self._notify(conn, campaign, devices, "ota_scheduled", now)
        campaign.status, campaign.current_wave, campaign.wave_opened_at = "running", wave, now
        log.info(
            "campaign %d: wave %d of %d opened (%d devices)",
            campaign.id,
            wave,
            len(campaign.waves),
            len(devices),
        )

    def _complete(self, conn, campaign: Campaign, now: datetime) -> None:
        with conn.transaction():
            # A safety recall's last follow-up went unanswered; an update's device stayed away.
            reason = "not_remedied" if campaign.kind == "safety_recall" else "offline"
            conn.execute(
                "UPDATE campaign_devices SET state = 'skipped', state_at = %s, "
                "failure_reason = %s WHERE campaign_id = %s AND state = 'pending'",
                (now, reason, campaign.id),
            )
            conn.execute(
                "UPDATE campaigns SET status = 'completed', finished_at = %s WHERE id = %s",
                (now, campaign.id),
            )
            progress = campaign_progress(conn, campaign.id)
            record_event(conn, campaign.id, now, "completed", **progress["by_state"])
            if campaign.kind == "ota_update":
                context = {
                    "campaign_id": campaign.id,
                    "campaign_name": campaign.name,
                    "waves": len(campaign.waves),
                    **{
                        k: progress["by_state"].get(k, 0)
                        for k in ("succeeded", "failed", "skipped")
                    },
                }
                notice = to_staff(
                    "campaign_completed", "info", campaign_id=campaign.id, context=context
                )
                record_notices(conn, [notice], now)
        campaign.status = "completed"
        log.info("campaign %d completed: %s", campaign.id, progress["by_state"])

    def _halt(self, conn, campaign: Campaign, reason: str, now: datetime) -> None:
        """Stop sending, tell the firmware team why, and wait for a person."""
        with conn.transaction():
            conn.execute(
                "UPDATE campaigns SET status = 'halted', halted_reason = %s WHERE id = %s",
                (reason, campaign.id),
            )
            progress = campaign_progress(conn, campaign.id)
            record_event(
                conn,
                campaign.id,
                now,
                "halted",
                reason=reason,
                wave=campaign.current_wave,
                **progress["by_state"],
            )
            context = {
                "campaign_id": campaign.id,
                "campaign_name": campaign.name,
                "target_version": campaign.target_version,
                "wave": campaign.current_wave,
                "reason": reason,
                "succeeded": progress["by_state"].get("succeeded", 0),
                "failed": progress["by_state"].get("failed", 0),
                "failures": ", ".join(f"{n} {r}" for r, n in progress["failures"].items())
                or "none",
            }
            opened = incidents.open_group_incident(
                conn,
                GroupProblem(
                    "fleet",
                    "campaign_halted",
                    f"campaign:{campaign.id}",
                    "critical",
                    f"Campaign {campaign.id} halted: {reason}",
                    context,
                ),
                now,
            )
            if opened:
                notice = to_staff(
                    "campaign_halted",
                    "critical",
                    incident_id=opened.id,
                    campaign_id=campaign.id,
                    context=context,
                )
                record_notices(conn, [notice], now)
        campaign.status = "halted"
        log.warning("campaign %d halted in wave %d: %s", campaign.id, campaign.current_wave, reason)

    # -- commands and notices ----------------------------------------------------------------

    def _send_commands(self, conn, campaign: Campaign, now: datetime) -> int:
        rows = conn.execute(
            "SELECT cd.device_id, cd.attempt, d.timezone FROM campaign_devices cd "
            "JOIN devices d ON d.id = cd.device_id "
            "JOIN device_state st ON st.device_id = cd.device_id "
            "WHERE cd.campaign_id = %s AND cd.wave <= %s AND cd.state = 'pending' "
            "AND st.status IN ('online', 'degraded') ORDER BY cd.wave, cd.device_id LIMIT %s",
            (campaign.id, campaign.current_wave, SEND_BATCH),
        ).fetchall()
        due = [
            (device, attempt + 1)
            for device, attempt, tz in rows
            if in_window(now, tz, campaign.window_start, campaign.window_end)
        ]
        if not due:
            return 0
        commands = []
        with conn.transaction():
            for device, attempt in due:
                if attempt > campaign.policy.max_attempts:
                    self._decide(
                        conn, campaign, device, Decision("failed", "attempts"), now, TickReport()
                    )
                    continue
                command_id = f"c{campaign.id}-{device}-{attempt}"
                done = conn.execute(
                    "UPDATE campaign_devices SET state = 'sent', state_at = %s, sent_at = %s, "
                    "attempt = %s, command_id = %s "
                    "WHERE campaign_id = %s AND device_id = %s AND state = 'pending'",
                    (now, now, attempt, command_id, campaign.id, device),
                ).rowcount
                if done:
                    commands.append((device, command_id, attempt))
        # Committed first: a command is never published twice, even if we die right here.
        for device, command_id, attempt in commands:
            command = UpdateCommand(
                command_id=command_id,
                campaign=campaign.id,
                version=campaign.target_version,
                url=campaign.artifact_url,
                sha256=campaign.artifact_sha256,
                attempt=attempt,
            )
            self._publish(command_topic(self._prefix, device), command.to_payload())
            log.info("campaign %d device %s: command %s sent", campaign.id, device, command_id)
        return len(commands)

    def _notify(self, conn, campaign: Campaign, device_ids, template: str, now, **options) -> int:
        return notify_owners(
            conn,
            campaign,
            device_ids,
            template,
            now,
            public_url=self.settings.public_url,
            **options,
        )

    def _publish_mqtt(self, topic: str, payload: bytes) -> None:
        info = self._client.publish(topic, payload, qos=1)
        # Not waiting for every PUBACK: the device's own reports say whether it arrived.
        if info.rc:
            log.warning("campaigns: could not publish to %s (rc %s)", topic, info.rc)

    def _send_recalls(self, conn, campaign: Campaign, now: datetime) -> int:
        sent = 0
        with conn.transaction():
            first = [
                d
                for (d,) in conn.execute(
                    "UPDATE campaign_devices SET state = 'notified', state_at = %s, "
                    "notified_at = %s WHERE campaign_id = %s AND wave <= %s AND state = 'pending' "
                    "RETURNING device_id",
                    (now, now, campaign.id, campaign.current_wave),
                )
            ]
            sent += self._notify(conn, campaign, first, "recall_notice", now, channel=0)
            repeat_before = now - timedelta(seconds=campaign.policy.repeat_after_s)
            again = [
                d
                for (d,) in conn.execute(
                    "UPDATE campaign_devices SET repeated_at = %s WHERE campaign_id = %s "
                    "AND state = 'notified' AND repeated_at IS NULL AND notified_at <= %s "
                    "RETURNING device_id",
                    (now, campaign.id, repeat_before),
                )
            ]
            sent += self._notify(conn, campaign, again, "recall_repeat", now, channel=1)
            if again:
                record_event(conn, campaign.id, now, "recall_repeated", devices=len(again))
        return sent
