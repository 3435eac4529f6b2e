"""The job runner: progress, results, failures, cancellation, exclusivity, and recovery after the
worker process is killed (SIGKILL) in the middle of a job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import tests.backend.job_handlers  # noqa: F401 - registers the test handlers
from backend import jobs
from tests.polling import wait_for

ROOT = Path(__file__).resolve().parents[2]


def test_job_runs_to_done_with_progress_and_result(runtime):
    job_id = jobs.submit(runtime, "test_count", {"n": 3})
    assert jobs.get(runtime, job_id).status == "queued"
    assert jobs.Worker(runtime).run_once()
    job = jobs.get(runtime, job_id)
    assert (job.status, job.progress, job.result) == ("done", 1.0, {"counted": 3})
    assert "counted" in job.log
    assert not jobs.Worker(runtime).run_once()  # nothing left


def test_clean_failure_and_crash_are_recorded(runtime):
    bad = jobs.submit(runtime, "test_fail")
    crash = jobs.submit(runtime, "test_crash")
    worker = jobs.Worker(runtime)
    worker.run_once()
    worker.run_once()
    assert jobs.get(runtime, bad).error == "the input was bad"
    crashed = jobs.get(runtime, crash)
    assert crashed.status == "failed"
    assert crashed.error.startswith("ZeroDivisionError")
    assert "Traceback" in crashed.log


def test_unknown_job_kind_is_refused(runtime):
    with pytest.raises(ValueError, match="unknown job kind"):
        jobs.submit(runtime, "no_such_kind")


def test_cancel_queued_and_running_jobs(sqlite_runtime):
    rt = sqlite_runtime
    queued = jobs.submit(rt, "test_count")
    assert jobs.cancel(rt, queued) == "cancelled"
    running = jobs.submit(rt, "test_count", {"n": 400, "sleep": 0.01})
    worker = jobs.Worker(rt, poll_s=0.05).start()
    wait_for(lambda: jobs.get(rt, running).status == "running", 20, "the job to start", 0.02)
    assert jobs.cancel(rt, running) == "running"
    wait_for(lambda: jobs.get(rt, running).status != "running", 20, "the job to stop", 0.05)
    worker.stop()
    job = jobs.get(rt, running)
    assert job.status == "cancelled"
    assert job.progress < 1.0


def test_exclusive_jobs_run_one_at_a_time(runtime):
    first = jobs.submit(runtime, "test_exclusive")
    second = jobs.submit(runtime, "test_exclusive")
    assert jobs.claim_next(runtime, "w1") == first
    assert jobs.claim_next(runtime, "w2") is None  # the second waits for the first
    jobs.run_job(runtime, first)
    assert jobs.claim_next(runtime, "w2") == second


def test_claim_is_atomic_across_workers(runtime):
    ids = [jobs.submit(runtime, "test_count", {"n": 1}) for _ in range(6)]
    claimed = [jobs.claim_next(runtime, f"w{i % 2}") for i in range(8)]
    assert sorted(c for c in claimed if c) == ids
    assert claimed[6:] == [None, None]


def _worker_process(runtime, tmp_path) -> subprocess.Popen:
    env = {
        **os.environ,
        "STUDIO_DATA_DIR": str(runtime.settings.data_dir),
        "STUDIO_DATABASE_URL": runtime.settings.database_url,
        "STUDIO_EXTRA_JOB_MODULES": "tests.backend.job_handlers",
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "backend", "worker"], cwd=ROOT, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def _wait_for(path: Path, timeout: float = 60) -> None:
    wait_for(path.exists, timeout, f"{path} to appear")


@pytest.mark.parametrize("kind", ["test_long", "test_long_resumable"])
def test_killed_worker_leaves_no_job_running(runtime, tmp_path, kind):
    marker = tmp_path / "started"
    job_id = jobs.submit(runtime, kind, {"marker": str(marker)})
    proc = _worker_process(runtime, tmp_path)
    try:
        _wait_for(marker)
        assert jobs.get(runtime, job_id).status == "running"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    time.sleep(1.2)
    assert jobs.recover_stale(runtime, stale_after_s=1.0) == [job_id]
    job = jobs.get(runtime, job_id)
    if kind == "test_long":
        assert job.status == "failed"
        assert job.error.startswith("interrupted: worker") and "lost" in job.error
    else:
        assert job.status == "queued" and "requeued" in job.log
        jobs.Worker(runtime).run_once()  # a new worker resumes it
        job = jobs.get(runtime, job_id)
        assert (job.status, job.result) == ("done", {"resumed": True})
        assert job.attempts == 2


def test_worker_limits_torch_threads_to_leave_cores_for_serving(tmp_path, sqlite_url):
    """A job on every core made raters' votes wait seconds (docs/reliability.md): jobs run by a
    worker see torch capped at `server.torch_threads` (OpenMP's count is per thread, so it is
    checked where the job runs)."""
    import torch

    from backend.config import Settings
    from backend.runtime import Runtime

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    rt = Runtime(Settings(data_dir=tmp_path / "data", database_url=sqlite_url,
                          server={"torch_threads": 1}))
    job_id = jobs.submit(rt, "test_torch_threads")
    worker = jobs.Worker(rt, poll_s=0.05).start()
    try:
        job = wait_for(lambda: (j := jobs.get(rt, job_id)).status in ("done", "failed") and j,
                       60, "the job", 0.05)
        assert job.result == {"threads": 1}, job
    finally:
        worker.stop()
        rt.close()
        torch.set_num_threads(before)


def test_run_inline_runs_a_queued_job_here(sqlite_runtime):
    job_id = jobs.submit(sqlite_runtime, "test_count", {"n": 3})
    assert jobs.run_inline(sqlite_runtime, job_id, poll_s=0.05) == "done"
    job = jobs.get(sqlite_runtime, job_id)
    assert job.worker_id.startswith("cli:") and job.result == {"counted": 3}


def test_run_inline_follows_a_job_another_worker_claimed(sqlite_runtime):
    """The CLI waits for a job the server's worker took first, instead of giving up."""
    import threading

    job_id = jobs.submit(sqlite_runtime, "test_count", {"n": 4, "sleep": 0.1})
    assert jobs.claim_next(sqlite_runtime, "server-worker") == job_id
    other = threading.Thread(target=jobs.run_job, args=(sqlite_runtime, job_id))
    other.start()
    try:
        assert jobs.run_inline(sqlite_runtime, job_id, poll_s=0.05) == "done"
    finally:
        other.join()
    job = jobs.get(sqlite_runtime, job_id)
    assert job.worker_id == "server-worker" and job.result == {"counted": 4}
