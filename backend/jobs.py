"""Durable jobs: rows in the `jobs` table, run by a worker thread (in the server) or process
(`python -m backend worker`).

A handler is a plain function `handler(ctx: JobContext) -> dict` registered with `@handler(kind)`.
It reports progress through `ctx.progress(...)`, which also raises `JobCancelled` when an admin
asked to cancel. A heartbeat thread keeps `heartbeat_at` fresh while the handler runs; a job
found `running` with a stale heartbeat (its worker was killed) is requeued when its handler is
resumable and it has attempts left, else failed with the reason. Nothing stays "running" forever.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, update

from db.schema import Job, utcnow

if TYPE_CHECKING:
    from backend.runtime import Runtime

log = logging.getLogger(__name__)

HEARTBEAT_S = 2.0
STALE_AFTER_S = 30.0
MAX_ATTEMPTS = 3
LOG_LIMIT = 200_000


class JobCancelled(Exception):
    """Raised inside a handler when cancellation was requested."""


class JobError(Exception):
    """A handler's clean failure: its message is shown to the user as the job's error."""


@dataclass
class HandlerSpec:
    fn: Callable[[JobContext], dict]
    resumable: bool = False
    exclusive: bool = False
    on_lost: Callable[[Runtime, int], None] | None = None


HANDLERS: dict[str, HandlerSpec] = {}


def handler(kind: str, resumable: bool = False, exclusive: bool = False,
            on_lost: Callable[[Runtime, int], None] | None = None):
    """Register a job handler. `resumable`: safe to rerun after a crash (it skips finished work).
    `exclusive`: at most one job of this kind runs at a time (training). `on_lost(rt, job_id)`:
    called after recovery requeued or failed a job of this kind whose worker died (to clean up
    what it left, e.g. a training round's row and temp files)."""

    def wrap(fn: Callable[[JobContext], dict]) -> Callable[[JobContext], dict]:
        HANDLERS[kind] = HandlerSpec(fn, resumable, exclusive, on_lost)
        return fn

    return wrap


def load_handlers() -> None:
    """Import every module that defines a job kind, so a worker or `submit` knows all of them.
    `STUDIO_EXTRA_JOB_MODULES` (comma list) adds modules, e.g. test handlers in a worker."""
    import importlib

    import backend.loop.evaluate
    import backend.loop.generate
    import backend.loop.judge
    import backend.loop.rounds
    import backend.loop.transcribe
    import backend.prompts
    import backend.world  # noqa: F401 - each import registers its kinds

    for name in filter(None, os.environ.get("STUDIO_EXTRA_JOB_MODULES", "").split(",")):
        importlib.import_module(name)


@dataclass
class JobContext:
    runtime: Runtime
    job_id: int
    params: dict[str, Any]
    _last_write: float = field(default=0.0)

    def progress(self, fraction: float, message: str = "") -> None:
        """Record progress in 0..1 and check for cancellation."""
        fraction = min(1.0, max(0.0, float(fraction)))
        with self.runtime.store.session() as s:
            job = s.get(Job, self.job_id)
            job.progress = fraction
            if message:
                job.message = message[:500]
            job.heartbeat_at = utcnow()
            cancel = job.cancel_requested
        if cancel:
            raise JobCancelled("cancelled by request")

    def log(self, line: str) -> None:
        stamp = utcnow().strftime("%H:%M:%S")
        with self.runtime.store.session() as s:
            job = s.get(Job, self.job_id)
            job.log = (job.log + f"[{stamp}] {line}\n")[-LOG_LIMIT:]

    def set_result(self, **values: Any) -> None:
        """Merge values into the job's result while it runs (live metrics for the UI)."""
        with self.runtime.store.session() as s:
            job = s.get(Job, self.job_id)
            job.result = {**(job.result or {}), **values}

    def cancelled(self) -> bool:
        with self.runtime.store.read() as s:
            return bool(s.get(Job, self.job_id).cancel_requested)

    def check_cancelled(self) -> None:
        if self.cancelled():
            raise JobCancelled("cancelled by request")


def submit(
    runtime: Runtime, kind: str, params: dict[str, Any] | None = None, user_id: int | None = None
) -> int:
    """Queue a job; returns its id."""
    load_handlers()
    if kind not in HANDLERS:
        raise ValueError(f"unknown job kind {kind!r}; known: {', '.join(sorted(HANDLERS))}")
    with runtime.store.session() as s:
        job = Job(
            kind=kind,
            params=params or {},
            exclusive=HANDLERS[kind].exclusive,
            created_by=user_id,
            message="queued",
        )
        s.add(job)
        s.flush()
        return job.id


def cancel(runtime: Runtime, job_id: int) -> str:
    """Ask a job to stop. A queued job is cancelled at once; a running one at its next progress."""
    with runtime.store.session() as s:
        job = s.get(Job, job_id)
        if job is None:
            raise ValueError(f"no job {job_id}")
        if job.status == "queued":
            job.status, job.finished_at, job.message = "cancelled", utcnow(), "cancelled"
        elif job.status == "running":
            job.cancel_requested = True
        return job.status


def get(runtime: Runtime, job_id: int) -> JobRecord:
    with runtime.store.read() as s:
        job = s.get(Job, job_id)
        if job is None:
            raise ValueError(f"no job {job_id}")
        return JobRecord.of(job)


def ended_signature(runtime: Runtime) -> tuple[int, str]:
    """(how many jobs have ended, when the last one did): it changes exactly when a job
    finishes, so a view can refresh itself then without reading the jobs."""
    with runtime.store.read() as s:
        n, last = s.execute(select(func.count(Job.id), func.max(Job.finished_at)).where(
            Job.status.in_(("done", "failed", "cancelled")))).one()
    return int(n or 0), str(last or "")


def list_jobs(runtime: Runtime, limit: int = 50) -> list[JobRecord]:
    with runtime.store.read() as s:
        rows = s.scalars(select(Job).order_by(Job.id.desc()).limit(limit)).all()
        return [JobRecord.of(j) for j in rows]


@dataclass(frozen=True)
class JobRecord:
    """A job as services hand it around (a snapshot of its row)."""

    id: int
    kind: str
    params: dict[str, Any]
    status: str
    progress: float
    message: str
    log: str
    error: str | None
    result: dict[str, Any]
    cancel_requested: bool
    attempts: int
    worker_id: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, job: Job) -> JobRecord:
        return cls(job.id, job.kind, dict(job.params or {}), job.status, float(job.progress or 0),
                   job.message or "", job.log or "", job.error, dict(job.result or {}),
                   bool(job.cancel_requested), int(job.attempts or 0), job.worker_id,
                   job.created_at, job.started_at, job.finished_at)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def claim_next(runtime: Runtime, worker_id: str) -> int | None:
    """Atomically move the oldest runnable queued job to running; returns its id or None."""
    load_handlers()
    with runtime.store.session() as s:
        busy = set(
            s.scalars(select(Job.kind).where(Job.status == "running", Job.exclusive)).all()
        )
        queued = s.scalars(
            select(Job).where(Job.status == "queued").order_by(Job.id).limit(20)
        ).all()
        for job in queued:
            if job.exclusive and job.kind in busy:
                continue
            if _claim(s, job.id, worker_id):
                return job.id
    return None


def _claim(s, job_id: int, worker_id: str) -> bool:
    """queued -> running for this worker, atomically (False if another worker was first)."""
    now = utcnow()
    claimed = s.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == "queued")
        .values(
            status="running", worker_id=worker_id, started_at=now, heartbeat_at=now,
            attempts=Job.attempts + 1, message="started",
        )
        .execution_options(synchronize_session=False)
    )
    return claimed.rowcount == 1


def run_inline(runtime: Runtime, job_id: int, poll_s: float = 0.3) -> str:
    """Wait for a job with a tqdm bar, running it in this process unless another worker (the
    server's, say) claimed it first: the CLI's one way to wait. Ctrl-C asks it to cancel.
    Returns the job's end state."""
    from tqdm import tqdm

    with runtime.store.session() as s:
        mine = _claim(s, job_id, f"cli:{os.getpid()}")
    th = None
    if mine:
        th = threading.Thread(target=run_job, args=(runtime, job_id), daemon=True)
        th.start()
    ended = ("done", "failed", "cancelled")
    with tqdm(total=100, unit="%", bar_format="{l_bar}{bar}| {elapsed}<{remaining}") as bar:
        try:
            while True:
                j = get(runtime, job_id)
                bar.n = int(round(100 * j.progress))
                bar.set_description_str((j.message or "")[:40])
                bar.refresh()
                if j.status in ended and (th is None or not th.is_alive()):
                    return j.status
                if th is not None:
                    th.join(poll_s)
                else:
                    time.sleep(poll_s)
        except KeyboardInterrupt:
            cancel(runtime, job_id)
            if th is not None:
                th.join()
            return get(runtime, job_id).status


def run_job(runtime: Runtime, job_id: int) -> str:
    """Run one claimed job to its end state; returns that state."""
    with runtime.store.session() as s:
        job = s.get(Job, job_id)
        kind, params = job.kind, dict(job.params or {})
    spec = HANDLERS.get(kind)
    ctx = JobContext(runtime, job_id, params)
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(runtime, job_id, stop), daemon=True)
    beat.start()
    status, error, result = "done", None, None
    try:
        if spec is None:
            raise JobError(f"no handler for job kind {kind!r}")
        result = spec.fn(ctx) or {}
    except JobCancelled:
        status = "cancelled"
    except JobError as e:
        status, error = "failed", str(e)
    except Exception as e:  # the job fails; the worker lives on
        status, error = "failed", f"{type(e).__name__}: {e}"
        log.exception("job %s (%s) failed", job_id, kind)
        ctx_log = traceback.format_exc(limit=8)
        try:
            ctx.log(ctx_log)
        except Exception:  # noqa: BLE001 - logging the failure must not mask it
            pass
    finally:
        stop.set()
        beat.join(timeout=5)
    with runtime.store.session() as s:
        job = s.get(Job, job_id)
        job.status, job.error, job.finished_at = status, error, utcnow()
        if status == "done":
            job.progress, job.message = 1.0, "done"
            job.result = {**(job.result or {}), **result}
        elif status == "cancelled":
            job.message = "cancelled"
        else:
            job.message = "failed"
    return status


def _heartbeat(runtime: Runtime, job_id: int, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_S):
        try:
            with runtime.store.session() as s:
                s.execute(update(Job).where(Job.id == job_id).values(heartbeat_at=utcnow()))
        except Exception:  # noqa: BLE001 - a missed beat is retried next tick
            log.warning("heartbeat for job %s failed", job_id, exc_info=True)


def recover_stale(runtime: Runtime, stale_after_s: float = STALE_AFTER_S) -> list[int]:
    """Requeue or fail jobs whose worker stopped beating. Returns the ids touched."""
    load_handlers()
    cutoff = utcnow() - timedelta(seconds=stale_after_s)
    touched = []
    with runtime.store.session() as s:
        stale = s.scalars(
            select(Job).where(Job.status == "running", Job.heartbeat_at < cutoff)
        ).all()
        for job in stale:
            spec = HANDLERS.get(job.kind)
            reason = f"worker {job.worker_id} lost (no heartbeat since {job.heartbeat_at:%H:%M:%S})"
            if spec and spec.resumable and job.attempts < MAX_ATTEMPTS and not job.cancel_requested:
                job.status, job.message = "queued", f"requeued: {reason}"
                job.log = (job.log or "") + f"[recovery] requeued: {reason}\n"
            else:
                job.status, job.finished_at = "failed", utcnow()
                job.error = f"interrupted: {reason}"
                job.message = "failed"
            touched.append((job.id, job.kind))
    for job_id, kind in touched:
        spec = HANDLERS.get(kind)
        if spec and spec.on_lost:
            spec.on_lost(runtime, job_id)
    return [job_id for job_id, _ in touched]


class Worker:
    """Claims and runs jobs in a background thread until stopped."""

    def __init__(self, runtime: Runtime, poll_s: float = 0.5, stale_after_s: float = STALE_AFTER_S):
        self.runtime = runtime
        self.poll_s = poll_s
        self.stale_after_s = stale_after_s
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Worker:
        """Run in a daemon thread (`run_forever`)."""
        self._thread = threading.Thread(target=self.run_forever, name="job-worker", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout)

    def run_once(self) -> bool:
        job_id = claim_next(self.runtime, self.worker_id)
        if job_id is None:
            return False
        run_job(self.runtime, job_id)
        return True

    def run_forever(self) -> None:
        """Claim and run jobs until stopped. Torch in this process gets at most
        `server.torch_threads` threads (default: one core left for serving raters)."""
        import time

        import torch

        n = self.runtime.settings.server.effective_torch_threads()
        torch.set_num_threads(min(n, torch.get_num_threads()))
        last_recovery = 0.0

        while not self._stop.is_set():
            try:
                now = time.monotonic()
                if now - last_recovery > self.stale_after_s / 2:
                    recover_stale(self.runtime, self.stale_after_s)
                    last_recovery = now
                if not self.run_once():
                    self._stop.wait(self.poll_s)
            except Exception:  # noqa: BLE001 - e.g. DB briefly unavailable; keep serving
                log.exception("worker loop error")
                self._stop.wait(self.poll_s * 4)


def lower_priority(nice: int) -> None:
    """Lower this process's CPU priority by `nice`. With session autogroups on (Linux,
    /proc/sys/kernel/sched_autogroup_enabled) a nice value only ranks processes within their
    session, so a worker that leads its own session (a service) also lowers its autogroup;
    the server's own worker shares the server's session and needs only os.nice."""
    if nice <= 0:
        return
    os.nice(nice)
    if os.getsid(0) == os.getpid():
        try:
            with open("/proc/self/autogroup", "w") as f:
                f.write(str(min(19, nice)))
        except OSError:  # no autogroups here, or not permitted: os.nice is what there is
            pass


def bind_to_parent(parent_pid: int) -> None:
    """Called by a worker process the server started: on Linux, ask for SIGTERM when its parent
    dies; exit at once if the parent is already gone. (Done by the child itself, not in a
    `preexec_fn`, which is unsafe in a threaded server.)"""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() != parent_pid:
        raise SystemExit(f"parent process {parent_pid} is gone")


class WorkerProcess:
    """The server's job worker as a child process (`python -m backend worker`, same environment,
    so the same settings and store), `nice` steps lower in CPU priority, so jobs neither hold the
    server's GIL nor take its core. On Linux the child gets SIGTERM when the server dies, even by
    SIGKILL. A child that dies (e.g. OOM-killed mid-round) is started again after
    `restart_after_s`; the new one recovers the lost job like any lost worker's. A child that
    keeps dying within a minute (a broken store URL, say) is restarted at doubling intervals, up
    to `max_restart_after_s`, instead of every few seconds forever."""

    STABLE_S = 60.0  # a child that lived this long resets the restart interval

    def __init__(self, nice: int = 10, restart_after_s: float = 5.0,
                 max_restart_after_s: float = 300.0):
        self.nice = nice
        self.restart_after_s = restart_after_s
        self.max_restart_after_s = max_restart_after_s
        self.proc: subprocess.Popen | None = None
        self._started_at = 0.0
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def _spawn(self) -> None:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "backend", "worker", "--parent", str(os.getpid()),
             "--nice", str(self.nice)], cwd=root,
            # Own process group, so a terminal's Ctrl-C reaches only the server (which then
            # stops the worker); the same session, so the nice value counts against the server:
            # with autogroups on, niceness only ranks processes within one session's group.
            process_group=0,
        )
        self._started_at = time.monotonic()

    def start(self) -> WorkerProcess:
        self._spawn()
        self._watcher = threading.Thread(target=self._watch, name="worker-watch", daemon=True)
        self._watcher.start()
        return self

    def _watch(self) -> None:
        delay = self.restart_after_s
        while not self._stop.wait(0.5):
            code = self.proc.poll() if self.proc else None
            if code is None:
                continue
            if time.monotonic() - self._started_at >= self.STABLE_S:
                delay = self.restart_after_s
            log.error("job worker process %s exited with %s; starting a new one in %g s",
                      self.proc.pid, code, delay)
            if self._stop.wait(delay):
                return
            self._spawn()
            delay = min(2 * delay, self.max_restart_after_s)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (SIGINT may be ignored: a server started in the background of a shell
        passes SIG_IGN on to its children), then SIGKILL after `timeout`. A job it was running
        is recovered by the next worker, as any lost worker's."""
        self._stop.set()
        if self._watcher:
            self._watcher.join(5)
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
