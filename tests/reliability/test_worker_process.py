"""The server runs jobs in a child process at lower CPU priority (`server.worker = "process"`),
so a DPO round cannot hold the server's GIL or outrank it for a core; a child that dies is
replaced, and no child outlives the server, even when the server is SIGKILLed."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from tests.app.conftest import Server
from tests.polling import wait_for


def proc_state(pid: int) -> tuple[str, int] | None:
    """(state letter, niceness) from /proc/PID/stat; None when the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return fields[0], int(fields[16])  # state, nice (fields 3 and 19 of stat(5))


def run_job_and_find_its_worker(rt, server_pid: int) -> int:
    """Submit a cheap job (judging an empty store), wait for it, return the worker's pid."""
    from backend import jobs

    job_id = jobs.submit(rt, "judge", {})
    job = wait_for(lambda: (j := jobs.get(rt, job_id)).status in ("done", "failed") and j,
                   60, "the job to be run")
    worker_pid = int(job.worker_id.split(":")[1])
    assert worker_pid != server_pid, "the job ran inside the server process"
    return worker_pid


def test_jobs_run_in_a_niced_child_that_is_replaced_and_dies_with_the_server(tmp_path):
    from backend.config import Settings
    from backend.runtime import Runtime

    data = tmp_path / "data"
    srv = Server(data, extra_env={"STUDIO_SERVER__WORKER_NICE": "7"})
    rt = Runtime(Settings(data_dir=data, world="mini"))
    try:
        worker_pid = run_job_and_find_its_worker(rt, srv.proc.pid)
        state = proc_state(worker_pid)
        assert state is not None and state[0] not in "ZX", "the worker should still be polling"
        assert state[1] == min(19, os.nice(0) + 7), f"worker niceness {state[1]}"

        os.kill(worker_pid, signal.SIGKILL)  # e.g. the OOM killer, mid-round
        new_pid = run_job_and_find_its_worker(rt, srv.proc.pid)
        assert new_pid != worker_pid, "no new worker process took over"
        assert proc_state(new_pid)[1] == min(19, os.nice(0) + 7)
        worker_pid = new_pid

        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait(10)
        wait_for(lambda: (s := proc_state(worker_pid)) is None or s[0] in "ZX", 15,
                 "the orphaned worker to exit")
    finally:
        if srv.proc.poll() is None:
            srv.stop()
        rt.close()


def test_sigterm_stops_server_and_worker_cleanly(tmp_path):
    """`docker stop` / systemd send SIGTERM: the server closes like on Ctrl-C (exit status 0, not
    killed by the signal) and stops its worker process first."""
    from backend.config import Settings
    from backend.runtime import Runtime

    data = tmp_path / "data"
    srv = Server(data)
    rt = Runtime(Settings(data_dir=data, world="mini"))
    try:
        worker_pid = run_job_and_find_its_worker(rt, srv.proc.pid)
        srv.proc.send_signal(signal.SIGTERM)
        assert srv.proc.wait(30) == 0, srv.log()
        state = proc_state(worker_pid)
        assert state is None or state[0] in "ZX", "the worker outlived the server"
    finally:
        if srv.proc.poll() is None:
            srv.stop()
        rt.close()


def test_a_worker_that_keeps_dying_is_restarted_at_doubling_intervals(tmp_path, monkeypatch,
                                                                     caplog):
    """A child that cannot start (here: an unknown database URL) must not be respawned every few
    seconds forever; the announced restart delays double."""
    from backend.jobs import WorkerProcess

    monkeypatch.setenv("STUDIO_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("STUDIO_DATABASE_URL", "nosuchdriver://nowhere")
    monkeypatch.setattr(WorkerProcess, "STABLE_S", 1e9)  # a slow machine must not reset it
    caplog.set_level("ERROR", logger="backend.jobs")
    wp = WorkerProcess(nice=0, restart_after_s=0.1).start()
    try:
        def exits() -> list[str]:
            return [m for r in caplog.records if "exited with" in (m := r.getMessage())]

        wait_for(lambda: len(exits()) >= 3, 120, "three worker exits")
    finally:
        wp.stop()
    delays = [m.rsplit(" in ", 1)[1] for m in exits()[:3]]
    assert delays == ["0.1 s", "0.2 s", "0.4 s"], exits()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/PID/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _share_beside(pid: int, seconds: float) -> float:
    """Spin in this thread for `seconds` beside process `pid`; this thread's part of the CPU
    time the two used meanwhile (other load on the machine slows both alike)."""
    import time

    t0, mine0, other0 = time.monotonic(), time.thread_time(), _cpu_seconds(pid)
    while time.monotonic() - t0 < seconds:
        sum(range(10_000))
    mine, other = time.thread_time() - mine0, _cpu_seconds(pid) - other0
    return mine / (mine + other)


def test_a_cpu_bound_worker_child_yields_the_core_to_the_server(tmp_path, monkeypatch):
    """The server's worker child at nice 10, on the same core as a busy server thread, takes
    only a small part of it, also on kernels with session autogroups, where a nice value counts
    only within a session (a child in a session of its own, niced by os.nice alone, got 34-36 %
    here)."""
    import tests.backend.job_handlers  # noqa: F401 - test_spin
    from backend import jobs
    from backend.config import Settings
    from backend.runtime import Runtime

    data = tmp_path / "data"
    monkeypatch.setenv("STUDIO_DATA_DIR", str(data))
    monkeypatch.setenv("STUDIO_EXTRA_JOB_MODULES", "tests.backend.job_handlers")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    rt = Runtime(Settings(data_dir=data))
    cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cpus)})  # the worker child inherits it: one core for both
    worker = jobs.WorkerProcess(nice=10).start()
    try:
        job_id = jobs.submit(rt, "test_spin", {"seconds": 30})
        wait_for(lambda: jobs.get(rt, job_id).message == "spinning", 60,
                 "the worker to start spinning")
        share = _share_beside(worker.pid, 3.0)
        jobs.cancel(rt, job_id)
    finally:
        worker.stop()
        os.sched_setaffinity(0, cpus)
        rt.close()
    assert share > 0.75, f"the server thread got {share:.0%} of the core it shares with the worker"
