"""`python -m app [--host H] [--port N] [--root-path /x]`: serve Align-SLM Studio."""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no phoning home, before gradio
os.environ.setdefault("GRADIO_RUN_HISTORY", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Gradio rebuilds a pandas table of its last 10 000 events after *every* event for its monitoring
# summary (measured: ~14 ms of server CPU per event under load); refresh it every 1000 instead.
os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", "1000")

import argparse  # noqa: E402
import logging  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402

log = logging.getLogger("app")


def startup(rt) -> dict:
    """First admin, bundle prompts + baseline (mini world, when the bundle is built) or the
    configured LM's baseline (real world), rating tasks from stored samples. Returns what
    happened, for the console; a broken bundle or model is reported, not fatal, so an operator
    can still sign in and see why."""
    from backend import health, prompts, rating, registry, users, world

    report: dict = {}
    report["one_time_password"] = users.ensure_first_admin(rt)
    real = rt.settings.world == "real"
    info = {} if real else world.bundle_info(rt.settings)
    built = "error" not in info
    problems = health.check(rt) if built or real else []
    if problems:
        report["problems"] = problems
        log.error("unusable model files (the app serves anyway):\n%s", health.describe(problems))
    if real:
        report.update(start_real_world(rt, problems))
    elif built and (rt.settings.bundle_dir / "prompts").exists():
        try:
            report["prompts"] = prompts.import_bundle_prompts(rt)
            report["baseline"] = registry.ensure_baseline(rt).name
            if not problems:
                report["seeding_jobs"] = queue_first_samples(rt, report["baseline"])
        except Exception as e:  # noqa: BLE001 - serve anyway, say why
            report["bundle_error"] = f"{type(e).__name__}: {e}"
    else:
        report["bundle"] = info.get("error", "no prompts in the bundle")
    try:
        report["rating_tasks"] = rating.sync_tasks(rt)
    except Exception as e:  # noqa: BLE001
        report["rating_tasks_error"] = f"{type(e).__name__}: {e}"
    return report


def start_real_world(rt, problems: list[dict]) -> dict:
    """The real world has no bundle: register the configured LM as the baseline, say how many
    prompts are stored (or how to import some), seed samples as the mini world does."""
    from backend import prompts, registry

    if any(p["component"] == "unit_lm" for p in problems):
        return {"baseline": "none: the unit LM does not load (see problems)"}
    out: dict = {"baseline": registry.ensure_baseline(rt).name}
    n = prompts.count_prompts(rt)
    if not n:
        out["prompts"] = ("none stored: python -m backend import-prompts --bundle "
                          "PROMPTS.jsonl --split train (docs/real-weights.md)")
        return out
    out["prompts"] = {"stored": n}
    if not problems:
        out["seeding_jobs"] = queue_first_samples(rt, out["baseline"])
    return out


def queue_first_samples(rt, baseline: str) -> list[int]:
    """On a fresh world, queue baseline continuations of a few held-out prompts and their AI
    judging (run by the worker), so Listen and Leaderboard show real output from the start;
    then (`server.first_round`) one default training round, so Listen can compare baseline
    and aligned without anyone acting."""
    from backend import jobs, prompts
    from backend.loop import rounds
    from backend.loop.generate import select_prompts

    n = rt.settings.server.seed_samples
    if n <= 0 or prompts.count_samples(rt) > 0:
        return []
    if not select_prompts(rt, split="test", limit=1):  # own prompts may have train/dev only
        return []
    if any(j.kind in ("generate", "judge", "round") for j in jobs.list_jobs(rt, limit=200)):
        return []
    ids = [
        jobs.submit(rt, "generate", {"version": baseline, "split": "test", "limit": n}),
        jobs.submit(rt, "judge", {"version": baseline}),
    ]
    if rt.settings.server.first_round and not rounds.list_rounds(rt, 1):
        ids.append(rounds.start_round(rt, baseline, "ai"))
    return ids


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m app", description=__doc__)
    ap.add_argument("--host")
    ap.add_argument("--port", type=int)
    ap.add_argument("--root-path")
    ap.add_argument("--no-worker", action="store_true",
                    help="run no job worker (neither thread nor child process)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)

    from backend.config import load_settings
    from backend.runtime import Runtime

    rt = Runtime(load_settings())  # upgrades the schema
    report = startup(rt)
    otp = report.pop("one_time_password", None)
    if otp:
        name = os.environ.get("STUDIO_ADMIN_USER", "admin")
        print(f"First admin created: user {name!r}, one-time password: {otp}", flush=True)
        print("Change it with `python -m backend users passwd`.", flush=True)
    print(f"startup: {report}", flush=True)

    worker = worker_proc = None
    mode = "off" if args.no_worker else rt.settings.server.worker
    if mode == "thread":
        from backend.jobs import Worker

        worker = Worker(rt).start()
    elif mode == "process":
        from backend.jobs import WorkerProcess

        worker_proc = WorkerProcess(rt.settings.server.worker_nice).start()
        print(f"job worker: process {worker_proc.pid} (nice +{rt.settings.server.worker_nice})",
              flush=True)

    from app.main import build_app, launch_kwargs

    s = rt.settings.server
    demo = build_app(rt)
    demo.queue(default_concurrency_limit=8)
    kw = launch_kwargs(rt, args.host or s.host, args.port or s.port,
                       args.root_path if args.root_path is not None else s.root_path)
    # SIGTERM (docker stop, systemd, kill) shuts down like Ctrl-C: Gradio closes its server and
    # the `finally` below stops the job worker and closes the store, instead of dying mid-write.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        demo.launch(**kw)
    finally:
        if worker:
            worker.stop()
        if worker_proc:
            worker_proc.stop()
        rt.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
