"""N simulated raters voting against the live server while a DPO round and a generation job run.

Starts the real server (`python -m app`) on 127.0.0.1 over a store seeded through the services
(tests/rating/seed.py: very short clips, so the play gate only waits for the "ended" events), then
for each rater count N runs N threads; each signs in, loads a task and loops: clip A played/ended,
clip B played/ended (waiting `--listen` seconds in between, like a player), vote - through the
same HTTP events the browser sends (tests/reliability/rater_client.py). The vote's reply carries
the next task, as in the browser. A rater stops after `--votes-per-rater` votes or when `--seconds`
have passed (it finishes the vote in hand, so every vote has an answer). `--arrivals spread`
(default): raters start at random moments of a vote cycle and listen 0.75-1.25x `--listen`, as
independent people do; `--arrivals together`: all N move in lockstep, so every step is a burst of
N simultaneous events (the worst case: its p95 is about N x the per-event server time).

Background load, chosen by `--load` (auto = world when possible):
- world: the cached tiny mini-world bundle (tests/mini_world.py; never built here) is linked into
  the data dir; real `round` (generate, judge, DPO, evaluate) and `generate` jobs are kept queued
  through backend.jobs. `--jobs server` (the default deployment): the server's own child worker
  process (`server.worker = "process"`, at `server.worker_nice`) runs one of them, a standalone
  `python -m backend worker` (at `--nice`) the other; `--jobs thread`: the same with the
  server's worker as a thread inside the server process (the deployment before 2026-11-30);
  `--jobs workers`: the server runs with --no-worker and two standalone workers run both;
- cpu: no bundle; two processes burn the CPU instead (torch matmuls on 2 threads, like
  training; a pure-Python loop, like sampling);
- none.

Per N it prints votes/s, p50/p95/p99 vote latency (POST of the vote to its reply, which carries
the next task), votes acknowledged vs judgment rows stored for that phase's raters (exit status 1
if they differ or a row is duplicated), which background jobs ran, and the CPU used by this bench
vs by other processes (the machine is shared); then whether p95 < 250 ms at 32 raters (the
issue's target; reported, never enforced).

    .venv/bin/python -m bench.raters [--raters 8,32,64] [--votes-per-rater 20] [--seconds 30]
        [--listen 0.2] [--arrivals spread|together] [--load auto|world|cpu|none]
        [--jobs server|thread|workers] [--nice 0]
        [--database-url URL] [--data-dir DIR]

`--database-url` (e.g. from scripts/test-postgres.sh) runs server and store on that database: an
empty scratch one (the bench refuses a store that already has users).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from tests.reliability.rater_client import ApiError, CallFailed, Rater  # noqa: E402

PASSWORD = "bench-rater-pass"
CLIP_S = 0.2
TARGET_N, TARGET_P95_MS = 32, 250.0


# --- the store -------------------------------------------------------------------------------
def make_runtime(data_dir: Path, database_url: str):
    """A Runtime on the same settings the server will load from the environment."""
    from backend.config import Settings
    from backend.runtime import Runtime

    return Runtime(Settings(data_dir=data_dir, database_url=database_url, world="mini"))


def cached_bundle() -> Path | None:
    """The tiny mini-world bundle if tests/mini_world.py already built it. Never builds (that
    takes ~15 minutes); a changed models/mini or backend/bootstrap.py means a new path."""
    from backend.world import is_complete
    from tests.mini_world import PRESET, SEED, cached_bundle_path

    path = cached_bundle_path()
    return path if is_complete(path, PRESET, SEED) else None


def require_empty(rt) -> None:
    """Refuse a store that already has users: old tasks (with clips from an earlier run's data
    dir) would be handed out first and the figures would not be this run's."""
    from sqlalchemy import func, select

    from db.schema import User

    with rt.store.session() as s:
        n = s.scalar(select(func.count()).select_from(User))
    if n:
        raise SystemExit(f"the store already has {n} users: give an empty scratch database "
                         "(e.g. dropdb/createdb) or a fresh --data-dir")


def rater_names(tag: str, counts: list[int]) -> dict[int, list[str]]:
    """Fresh users per phase, so each N starts with raters who have seen no task."""
    return {n: [f"bench-{tag}-n{n}-{i:02d}" for i in range(n)] for n in counts}


def seed_store(rt, names: dict[int, list[str]], votes_per_rater: int) -> dict:
    """Prompts of a split of their own ("bench"), two versions with 4 clips of CLIP_S each per
    prompt (4 A/B tasks per prompt): every rater can cast `votes_per_rater` votes on distinct
    tasks. Raters are created through backend.users (Argon2id, like real ones)."""
    from backend import users
    from tests.rating.seed import seed

    per_prompt = 4
    n_prompts = math.ceil(votes_per_rater / per_prompt) + 1
    info = seed(rt, n_prompts=n_prompts, seconds=CLIP_S, raters=(), split="bench",
                samples_per_version=per_prompt, per_prompt_pairs=per_prompt)
    for group in names.values():
        for name in group:
            users.add_user(rt, name, PASSWORD, "rater")
    return info


def stored_votes(rt, names: list[str]) -> tuple[int, int]:
    """(A/B judgment rows, distinct (rater, task) among them) for these users."""
    from sqlalchemy import select

    from db.schema import Judgment, User

    with rt.store.session() as s:
        rows = s.execute(
            select(Judgment.user_id, Judgment.task_id)
            .join(User, User.id == Judgment.user_id)
            .where(Judgment.kind == "ab", User.name.in_(names))
        ).all()
    return len(rows), len({tuple(r) for r in rows})


# --- the server ------------------------------------------------------------------------------
def server_env(data_dir: Path, database_url: str) -> dict:
    env = {**os.environ, "STUDIO_DATA_DIR": str(data_dir), "STUDIO_CONFIG": "/nonexistent.toml",
           "STUDIO_ADMIN_PASSWORD": "bench-admin-pass", "STUDIO_RATING__GOLD_FRACTION": "0",
           "STUDIO_SERVER__SEED_SAMPLES": "0", "GRADIO_ANALYTICS_ENABLED": "False"}
    env.pop("STUDIO_DATABASE_URL", None)
    if database_url:
        env["STUDIO_DATABASE_URL"] = database_url
    return env


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(env: dict, log_path: Path, worker: bool = True, profile: Path | None = None
                 ) -> tuple[subprocess.Popen, str]:
    """`python -m app` on a free loopback port (with or without its job worker; under
    bench/profile_server.py with `profile`); returns once the page answers."""
    port = free_port()
    log = open(log_path, "w")
    runner = (["-m", "bench.profile_server", str(profile)] if profile
              else ["-m", "app"])
    cmd = [sys.executable, *runner, "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(cmd + ([] if worker else ["--no-worker"]), cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + "/", timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit(f"server did not start:\n{log_path.read_text()[-3000:]}")


def stop(proc: subprocess.Popen | None) -> None:
    """Stop one process we started (by its handle), killing it if it does not exit."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# --- machine conditions ------------------------------------------------------------------------
def cpu_seconds(pids: list[int]) -> tuple[float, float, float]:
    """(monotonic time, busy CPU seconds of the whole machine, CPU seconds of `pids`) from /proc:
    the machine is shared, so each phase says how much CPU other people's processes took."""
    hz = os.sysconf("SC_CLK_TCK")
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:9]]
    busy = sum(ticks) - ticks[3] - ticks[4]  # minus idle and iowait
    ours = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            ours += int(fields[11]) + int(fields[12])  # utime + stime
        except OSError:
            pass
    return time.monotonic(), busy / hz, ours / hz


def cpu_use(before: tuple, after: tuple, server_before: tuple, server_after: tuple) -> str:
    wall = after[0] - before[0]
    busy, ours = (after[1] - before[1]) / wall, (after[2] - before[2]) / wall
    server = (server_after[2] - server_before[2]) / wall
    return (f"CPU cores busy {busy:.2f} of {os.cpu_count()}: this bench {ours:.2f} (server "
            f"{server:.2f}), other processes {max(0.0, busy - ours):.2f}")


# --- background load ---------------------------------------------------------------------------
BURN_TORCH = ("import torch\ntorch.set_num_threads(2)\na = torch.randn(384, 384)\n"
              "while True:\n    a = torch.tanh(a @ a)\n")
BURN_PY = "x = 0\nwhile True:\n    x = (x * 31 + 7) % 1000003\n"


class Load:
    """Keeps the background work going and records, once a second, what was running."""

    def __init__(self, mode: str, server_pid: int, nice: int = 0):
        self.mode = mode
        self.server_pid = server_pid
        self.prefix = ["nice", "-n", str(nice)] if nice else []
        """Background processes (standalone workers, burners) run at this niceness."""
        self.procs: list[subprocess.Popen] = []
        self.samples: list[tuple[float, set[str], str]] = []
        self.submitted: list[int] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start_cpu(self) -> Load:
        for code in (BURN_TORCH, BURN_PY):
            self.procs.append(subprocess.Popen([*self.prefix, sys.executable, "-c", code],
                                               cwd=ROOT, stdout=subprocess.DEVNULL))
        return self

    def start_world(self, rt, env: dict, log_path: Path, workers: int) -> Load:
        """`workers` standalone `python -m backend worker` processes (next to the server's own
        worker, if it runs one): two jobs at once need two workers. A keeper thread
        submits a new round / generate job whenever none is queued or running."""
        log = open(log_path, "w")
        for _ in range(workers):
            self.procs.append(subprocess.Popen(
                [*self.prefix, sys.executable, "-m", "backend", "worker"], cwd=ROOT, env=env,
                stdout=log, stderr=subprocess.STDOUT))
        self._thread = threading.Thread(target=self._keep, args=(rt,), daemon=True)
        self._thread.start()
        return self

    def _keep(self, rt) -> None:
        from backend import jobs, registry
        from backend.loop import rounds

        baseline = registry.ensure_baseline(rt).name
        seed = 1000
        while not self._stop.is_set():
            try:
                active = [j for j in jobs.list_jobs(rt, limit=50)
                          if j.status in ("queued", "running")]
                kinds = {j.kind for j in active}
                if "round" not in kinds:
                    self.submitted.append(rounds.start_round(rt, None, "ai"))
                if "generate" not in kinds:
                    seed += 1
                    self.submitted.append(jobs.submit(rt, "generate", {
                        "version": baseline, "split": "test", "limit": 8, "seed": seed}))
                running = {f"{j.kind} in {self._where(rt, j.id)}" for j in active
                           if j.status == "running"}
                stage = next(((j.message or "?").split(":")[0][:32] for j in active
                              if j.kind == "round" and j.status == "running"), "")
                self.samples.append((time.time(), running, stage))
            except Exception as e:  # noqa: BLE001 - report it; the bench itself goes on
                self.errors.append(f"{type(e).__name__}: {e}"[:200])
            self._stop.wait(1.0)

    def _where(self, rt, job_id: int) -> str:
        from db.schema import Job

        with rt.store.session() as s:
            worker = s.get(Job, job_id).worker_id or ""
        pid = worker.split(":")[1] if worker.count(":") >= 2 else ""
        if pid == str(self.server_pid):
            return "server"
        return "server's worker process" if pid in map(str, self.server_children()) else "worker"

    def server_children(self) -> list[int]:
        """The server's child processes (its job worker when `server.worker = "process"`)."""
        out: list[int] = []
        for f in Path(f"/proc/{self.server_pid}/task").glob("*/children"):
            try:
                out += [int(x) for x in f.read_text().split()]
            except OSError:
                pass
        return out

    def pids(self) -> list[int]:
        """Background processes this bench started, the server's worker process included."""
        return [p.pid for p in self.procs] + self.server_children()

    def share(self, t0: float, t1: float) -> str:
        """What ran during [t0, t1]: the share of one-second samples with each kind running."""
        if self.mode != "world":
            return {"cpu": "2 CPU burners (torch matmul x2 threads, Python loop)",
                    "none": "no background load"}[self.mode]
        got = [(kinds, stage) for t, kinds, stage in self.samples if t0 <= t <= t1]
        if not got:
            return "no samples"
        seen = sorted({k for kinds, _ in got for k in kinds})
        pct = ", ".join(f"{k} {100 * sum(k in kinds for kinds, _ in got) / len(got):.0f}%"
                        for k in seen)
        stages = list(dict.fromkeys(stage for _, stage in got if stage))
        return (f"jobs running (share of the phase): {pct or 'none'}; round stages: "
                f"{stages or ['-']}"
                + (f"; keeper errors: {self.errors[-3:]}" if self.errors else ""))

    def job_outcomes(self, rt) -> str:
        """The submitted jobs by kind and final status, with the distinct failure reasons."""
        from collections import Counter

        from backend import jobs

        seen = [jobs.get(rt, jid) for jid in self.submitted]
        counts = Counter(f"{j.kind} {j.status}" for j in seen)
        errors = sorted({(j.error or "")[:100] for j in seen if j.status == "failed"})
        return ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) + (
            f"; failures: {errors}" if errors else "")

    def stop(self, rt=None) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(10)
        if rt is not None and self.mode == "world":
            from backend import jobs

            for j in jobs.list_jobs(rt, limit=100):
                if j.status in ("queued", "running"):
                    jobs.cancel(rt, j.id)
        for p in self.procs:
            stop(p)


# --- one phase ---------------------------------------------------------------------------------
@dataclass
class RaterLog:
    latencies: list[float] = field(default_factory=list)
    saved: int = 0
    replays: int = 0
    refused: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    ran_out: bool = False


def rater_loop(url: str, name: str, votes: int, ready: threading.Barrier, deadline: list[float],
               listen: float, log: RaterLog, spread: bool = True) -> None:
    """Sign in and load a task (untimed), wait for all raters, then play-play-vote until the vote
    budget or the deadline. A refused or failed call is recorded and ends this rater.
    `spread`: raters act independently, as people do: each starts after a random part of one
    vote cycle and listens 0.75-1.25x `listen` per clip (seeded by name); otherwise all raters
    move in lockstep from the same instant (a burst of N simultaneous events per step)."""
    rng = random.Random(f"rater-{name}")
    rater = Rater(url, name, PASSWORD, timeout=120)
    try:
        try:
            rater.login()
            has = rater.load_task()
        finally:
            ready.wait()
        if spread:
            time.sleep(rng.uniform(0, 2 * listen + 0.5))
        while has and len(log.latencies) < votes and time.monotonic() < deadline[0]:
            rater.play_both(listen * rng.uniform(0.75, 1.25) if spread else listen)
            v = rater.vote("A" if len(log.latencies) % 2 else "B")
            log.latencies.append(v.seconds)
            log.saved += v.saved
            log.replays += v.replay
            has = v.has_next
        log.ran_out = not has
    except ApiError as e:
        log.refused.append(str(e)[:200])
    except CallFailed as e:
        log.failed.append(str(e)[:200])
    finally:
        rater.close()


@dataclass
class Phase:
    n: int
    seconds: float
    logs: list[RaterLog]
    stored: int
    distinct: int
    load: str
    cpu: str

    @property
    def latencies_ms(self) -> list[float]:
        return sorted(x * 1000 for log in self.logs for x in log.latencies)

    @property
    def acked(self) -> int:
        return sum(log.saved for log in self.logs)

    @property
    def ok(self) -> bool:
        return self.acked == self.stored == self.distinct and not any(
            log.failed or log.replays for log in self.logs)


def run_phase(url: str, names: list[str], votes: int, seconds: float, listen: float, rt,
              load: Load, spread: bool = True) -> Phase:
    logs = [RaterLog() for _ in names]
    deadline = [math.inf]
    ready = threading.Barrier(len(names) + 1)
    threads = [threading.Thread(target=rater_loop, daemon=True,
                                args=(url, name, votes, ready, deadline, listen, log, spread))
               for name, log in zip(names, logs, strict=True)]
    for t in threads:
        t.start()
    ready.wait()
    ours = [os.getpid(), load.server_pid, *load.pids()]
    cpu0, srv0 = cpu_seconds(ours), cpu_seconds([load.server_pid])
    t0 = time.monotonic()
    deadline[0] = t0 + seconds
    wall0 = time.time()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    cpu = cpu_use(cpu0, cpu_seconds(ours), srv0, cpu_seconds([load.server_pid]))
    stored, distinct = stored_votes(rt, names)
    return Phase(len(names), elapsed, logs, stored, distinct, load.share(wall0, time.time()),
                 cpu)


# --- report ------------------------------------------------------------------------------------
def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile of sorted values."""
    if not values:
        return math.nan
    return values[min(len(values) - 1, max(0, math.ceil(q / 100 * len(values)) - 1))]


def phase_line(p: Phase) -> str:
    lat = p.latencies_ms
    refused = sum(len(log.refused) for log in p.logs)
    failed = sum(len(log.failed) for log in p.logs)
    ran_out = sum(log.ran_out for log in p.logs)
    return (f"N={p.n:3d}  {len(lat) / p.seconds:6.1f} votes/s over {p.seconds:5.1f} s  "
            f"latency ms p50 {pct(lat, 50):6.0f}  p95 {pct(lat, 95):6.0f}  "
            f"p99 {pct(lat, 99):6.0f}  max {lat[-1] if lat else math.nan:6.0f}  | "
            f"votes acknowledged {p.acked}, rows stored {p.stored} (distinct {p.distinct}) "
            f"{'OK' if p.ok else 'MISMATCH'}  | refused {refused}, failed {failed}, "
            f"out of tasks {ran_out}\n        load: {p.load}\n        {p.cpu}")


def report(phases: list[Phase], meta: dict) -> bool:
    print(f"\n== raters bench: {json.dumps(meta)}")
    for p in phases:
        print(phase_line(p))
        for log in p.logs:
            for msg in log.refused + log.failed:
                print(f"        ! {msg}")
    at = next((p for p in phases if p.n == TARGET_N), None)
    if at is not None:
        p95 = pct(at.latencies_ms, 95)
        print(f"target p95 < {TARGET_P95_MS:.0f} ms at {TARGET_N} raters: "
              f"{'met' if p95 < TARGET_P95_MS else 'NOT met'} (p95 {p95:.0f} ms)")
    ok = all(p.ok for p in phases)
    print("votes: " + ("every acknowledged vote stored exactly once" if ok
                       else "LOST, EXTRA OR DUPLICATED VOTES (see MISMATCH)"))
    return ok


def machine() -> dict:
    load1 = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"cpus": os.cpu_count(), "python": platform.python_version(),
            "loadavg_1m_at_start": round(load1, 2) if load1 is not None else None}


# --- main --------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--raters", default="8,32,64", help="comma-separated rater counts")
    ap.add_argument("--votes-per-rater", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=30.0, help="time bound per rater count")
    ap.add_argument("--listen", type=float, default=CLIP_S,
                    help="seconds between a clip's play and end events (the clip plays)")
    ap.add_argument("--arrivals", choices=("spread", "together"), default="spread",
                    help="spread: raters start at random moments of a vote cycle and listen "
                         "0.75-1.25x --listen (independent people); together: all in lockstep "
                         "from one instant (bursts of N simultaneous events)")
    ap.add_argument("--load", choices=("auto", "world", "cpu", "none"), default="auto")
    ap.add_argument("--database-url", default="",
                    help="SQLAlchemy URL of a scratch database (default: SQLite in the data dir)")
    ap.add_argument("--data-dir", type=Path, help="default: a temp dir, removed afterwards")
    ap.add_argument("--jobs", choices=("server", "thread", "workers"), default="server",
                    help="server: the server's child worker process runs jobs (the default "
                         "deployment) plus one standalone worker; thread: the same with the "
                         "server's worker as a thread in the server process; workers: the "
                         "server runs with --no-worker and two standalone workers run them")
    ap.add_argument("--nice", type=int, default=0,
                    help="niceness of the background processes (standalone workers, burners); "
                         "the server's own worker follows server.worker_nice")
    ap.add_argument("--warmup", type=float, default=20.0,
                    help="seconds of background load before the first phase")
    ap.add_argument("--profile", type=Path, default=None,
                    help="profile the server with yappi; writes PROFILE.txt and .pstat at the end")
    return ap.parse_args(argv)


def pick_load(choice: str, data: Path) -> str:
    """world when the cached tiny bundle exists (then linked into the data dir), else cpu for
    auto; an explicit world without the bundle is an error rather than a silent stand-in."""
    bundle = cached_bundle() if choice in ("auto", "world") else None
    if choice == "world" and bundle is None:
        raise SystemExit("--load world: the tiny bundle is not built (run the tests once)")
    if bundle is None:
        return "cpu" if choice == "auto" else choice
    if not (data / "bundle").exists():
        (data / "bundle").symlink_to(bundle, target_is_directory=True)
    return "world"


def start_load(mode: str, rt, env: dict, work: Path, server_pid: int, jobs_in: str,
               nice: int) -> Load:
    load = Load(mode, server_pid, nice)
    if mode == "world":
        load.start_world(rt, env, work / "worker.log", 2 if jobs_in == "workers" else 1)
    elif mode == "cpu":
        load.start_cpu()
    return load


def run(args: argparse.Namespace, counts: list[int], work: Path) -> int:
    data = work / "data"
    data.mkdir(parents=True, exist_ok=True)
    mode = pick_load(args.load, data)
    rt = make_runtime(data, args.database_url)
    server = load = None
    phases: list[Phase] = []
    try:
        require_empty(rt)
        names = rater_names(time.strftime("%H%M%S"), counts)
        seeded = seed_store(rt, names, args.votes_per_rater)
        meta = {**machine(), "store": "postgresql" if args.database_url.startswith("postgres")
                else "sqlite", "load": mode, "clip_s": CLIP_S, "listen_s": args.listen,
                "arrivals": args.arrivals, "votes_per_rater": args.votes_per_rater,
                "seconds": args.seconds,
                "jobs": args.jobs if mode == "world" else "-", "nice": args.nice,
                "ab_tasks": seeded["tasks"]["ab"]}
        print(f"seeded {meta['ab_tasks']} A/B tasks, {sum(map(len, names.values()))} raters "
              f"in {data}; background load: {mode}", flush=True)
        env = server_env(data, args.database_url)
        server_env_ = {**env, "STUDIO_SERVER__WORKER": "thread"} if args.jobs == "thread" else env
        server, url = start_server(server_env_, work / "server.log",
                                   worker=args.jobs != "workers", profile=args.profile)
        print(f"server at {url}", flush=True)
        load = start_load(mode, rt, env, work, server.pid, args.jobs, args.nice)
        time.sleep(args.warmup if mode != "none" else 0)
        for n in counts:
            print(f"-- {n} raters ...", flush=True)
            phases.append(run_phase(url, names[n], args.votes_per_rater, args.seconds,
                                    args.listen, rt, load, args.arrivals == "spread"))
            print(phase_line(phases[-1]), flush=True)
        if mode == "world":
            print("background jobs (status when the last phase ended): "
                  + load.job_outcomes(rt))
    finally:
        if load is not None:
            load.stop(rt)
        stop(server)
        rt.close()
    return 0 if report(phases, meta) else 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    counts = [int(x) for x in args.raters.split(",") if x.strip()]
    work = Path(tempfile.mkdtemp(prefix="bench-raters-")) if args.data_dir is None \
        else args.data_dir
    try:
        return run(args, counts, work)
    finally:
        if args.data_dir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
