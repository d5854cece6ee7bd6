"""Every long-running part's shape: a failing job is logged, counted and runs again."""

from __future__ import annotations

import logging
import threading

from support import auth, wait_until

from core.worker import Job, Worker


def test_a_job_that_raises_is_logged_counted_and_runs_again(caplog, conn, dsn, api, keys):
    calls = {"boom": 0, "fine": 0}
    recovered = threading.Event()

    def boom():
        calls["boom"] += 1
        raise RuntimeError("a bug")

    def fine():
        calls["fine"] += 1

    worker = Worker(
        "testworker",
        [Job("boom", boom, 0.01, recover=recovered.set), Job("fine", fine, 0.01)],
        dsn=dsn,
    )
    with caplog.at_level(logging.ERROR, logger="core.worker"):
        worker.start()
        try:
            wait_until(lambda: calls["boom"] >= 3 and calls["fine"] >= 3)
        finally:
            worker.stop()
    assert recovered.is_set()
    failures = [r for r in caplog.records if "testworker boom failed" in r.getMessage()]
    assert failures and failures[0].exc_info is not None  # with its traceback
    assert worker.stats["boom"].errors == calls["boom"] and worker.stats["boom"].runs == 0
    assert worker.stats["fine"].errors == 0 and worker.stats["fine"].runs == calls["fine"]
    # stop() wrote the counts; /metrics shows them.
    text = api.get("/metrics", headers=auth(keys.staff)).text
    line = 'fleetwatch_worker_errors_total{job="boom",worker="testworker"}'
    assert (
        float(next(ln for ln in text.splitlines() if ln.startswith(line)).split()[1])
        == (calls["boom"])
    )


def test_a_busy_job_runs_again_at_once_and_a_quiet_one_waits():
    left = [5]

    def drain():
        left[0] -= 1
        return left[0] > 0  # True: a full batch, more to do

    worker = Worker("drainer", [Job("drain", drain, 3600)])
    worker.run_job("drain")  # one scheduled run drains all five batches
    assert left == [0] and worker.stats["drain"].runs == 5
    worker.run_job("drain")  # not busy: one run only
    assert worker.stats["drain"].runs == 6


def test_a_self_paced_job_loops_on_its_own_thread_and_pauses_after_a_failure():
    runs = []

    def paced():
        runs.append(threading.current_thread().name)
        if len(runs) == 3:
            raise RuntimeError("one bad run")
        threading.Event().wait(0.01)  # it paces itself: waits for work, here a moment

    worker = Worker("pacer", [Job("paced", paced, 0)]).start()
    try:
        wait_until(lambda: len(runs) >= 5)
    finally:
        worker.stop()
    assert set(runs) == {"pacer-paced"}
    assert worker.stats["paced"].errors == 1 and worker.stats["paced"].runs == len(runs) - 1
    # stop() joined the job's thread: nothing more runs.
    assert not any(t.name == "pacer-paced" and t.is_alive() for t in threading.enumerate())
