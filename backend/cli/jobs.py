"""`worker`, `jobs list|show|cancel`, `versions list|lineage`."""

from __future__ import annotations

from backend.cli import common
from backend.cli.common import CLIError, print_json


def cmd_worker(args) -> None:
    from backend import jobs

    jobs.lower_priority(args.nice)
    if args.parent is not None:
        jobs.bind_to_parent(args.parent)
    rt = common.runtime_from(args)
    worker = jobs.Worker(rt, stale_after_s=args.stale_after)
    if args.once:
        jobs.recover_stale(rt, args.stale_after)
        ran = worker.run_once()
        print("ran one job" if ran else "no job queued")
        return
    print(f"worker {worker.worker_id} polling for jobs (Ctrl-C to stop)")
    try:
        worker.run_forever()
    except KeyboardInterrupt:
        print("stopped")


def cmd_jobs_list(args) -> None:
    from backend import jobs

    for j in jobs.list_jobs(common.runtime_from(args), args.limit):
        line = f"{j.id:>5}  {j.kind:<12} {j.status:<9} {j.progress:>5.0%}"
        print(f"{line}  {j.message}")


def cmd_jobs_show(args) -> None:
    from backend import jobs

    try:
        print_json(jobs.get(common.runtime_from(args), args.id).as_dict())
    except ValueError as e:
        raise CLIError(str(e)) from e


def cmd_jobs_cancel(args) -> None:
    from backend import jobs

    try:
        status = jobs.cancel(common.runtime_from(args), args.id)
    except ValueError as e:
        raise CLIError(str(e)) from e
    print(f"job {args.id}: {'cancel requested' if status == 'running' else status}")


def cmd_versions_list(args) -> None:
    from backend import registry

    for v in registry.list_versions(common.runtime_from(args)):
        parent = v.parent_id if v.parent_id is not None else "-"
        print(f"{v.id:>4}  {v.name:<32} {v.kind:<8} parent={parent}", end=" ")
        print(f"round={v.round_index}")


def cmd_versions_lineage(args) -> None:
    from backend import registry

    chain = registry.lineage(common.runtime_from(args), args.version)
    print(" <- ".join(f"{v.name} ({v.kind})" for v in chain))


def add_commands(sub) -> None:
    w = sub.add_parser("worker", help="run the job worker standalone")
    w.add_argument("--once", action="store_true", help="run at most one job, then exit")
    w.add_argument("--stale-after", type=float, default=30.0, help="seconds without heartbeat")
    w.add_argument("--nice", type=int, default=0, help="lower this worker's CPU priority by N")
    w.add_argument("--parent", type=int, default=None, metavar="PID",
                   help="exit when process PID dies (set by the server for its own worker)")
    w.set_defaults(func=cmd_worker)

    jobs = sub.add_parser("jobs", help="list, inspect, cancel jobs").add_subparsers(
        dest="sub", required=True)
    jl = jobs.add_parser("list", help="recent jobs")
    jl.add_argument("--limit", type=int, default=20)
    jl.set_defaults(func=cmd_jobs_list)
    for name, fn in (("show", cmd_jobs_show), ("cancel", cmd_jobs_cancel)):
        jp = jobs.add_parser(name, help=f"{name} a job")
        jp.add_argument("id", type=int)
        jp.set_defaults(func=fn)

    ver = sub.add_parser("versions", help="model-version registry").add_subparsers(
        dest="sub", required=True)
    ver.add_parser("list", help="all versions").set_defaults(func=cmd_versions_list)
    lin = ver.add_parser("lineage", help="a version and its ancestors")
    lin.add_argument("version")
    lin.set_defaults(func=cmd_versions_lineage)
