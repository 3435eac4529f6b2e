"""`python -m backend ...`: thin commands over the service functions.

Each pipeline module contributes its commands through `add_cli(subparsers)`; bad input ends in a
one-line `error: ...` on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import getpass
import importlib
import json
import logging
import os
import secrets
import sys
from collections.abc import Callable

CLI_MODULES = [
    "backend.bootstrap",
    "backend.pipeline",
    "backend.rounds",
    "backend.evaluation",
    "backend.exports",
    "backend.traps",
]


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def runtime_from(args):
    from backend.runtime import Runtime

    return Runtime()


def _print(obj) -> None:
    print(json.dumps(obj, indent=2, default=str))


# --- config -----------------------------------------------------------------------------------
def cmd_config_show(args) -> None:
    from backend.config import load_settings

    print(load_settings().redacted_json())


# --- db ---------------------------------------------------------------------------------------
def cmd_db_upgrade(args) -> None:
    from backend.config import load_settings
    from db.session import Store

    store = Store(load_settings().database_url)
    store.upgrade(args.revision)
    print(f"database at revision {args.revision}")


def cmd_db_downgrade(args) -> None:
    from backend.config import load_settings
    from db.session import Store, downgrade

    store = Store(load_settings().database_url)
    downgrade(store.engine, args.revision)
    print(f"database downgraded to {args.revision}")


# --- users ------------------------------------------------------------------------------------
def _read_password(args) -> tuple[str, bool]:
    if args.generate:
        return secrets.token_urlsafe(12), True
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n"), False
    if not sys.stdin.isatty():
        raise CLIError("no password: use --password-stdin, --generate or run in a terminal")
    first = getpass.getpass("password: ")
    if first != getpass.getpass("again: "):
        raise CLIError("passwords do not match")
    return first, False


def cmd_users_add(args) -> None:
    from backend import users

    password, generated = _read_password(args)
    info = users.add_user(runtime_from(args), args.name, password, role=args.role)
    print(f"created {info.role} {info.name!r} (id {info.id})")
    if generated:
        print(f"password: {password}")


def cmd_users_list(args) -> None:
    from backend import users

    for u in users.list_users(runtime_from(args)):
        print(f"{u['id']:>4}  {u['name']:<24} {u['role']:<6} {'active' if u['active'] else 'off'}")


def cmd_users_passwd(args) -> None:
    from backend import users

    rt = runtime_from(args)
    users.find_user(rt, args.name)
    password, generated = _read_password(args)
    users.set_password(rt, args.name, password)
    print(f"password of {args.name!r} changed" + (f": {password}" if generated else ""))


def cmd_users_role(args) -> None:
    from backend import users

    info = users.set_role(runtime_from(args), args.name, args.role)
    print(f"{info.name!r} is now {info.role}")


# --- jobs -------------------------------------------------------------------------------------
def cmd_worker(args) -> None:
    from backend import jobs

    if args.nice:
        os.nice(args.nice)
    if args.parent is not None:
        jobs.bind_to_parent(args.parent)
    rt = runtime_from(args)
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

    for j in jobs.list_jobs(runtime_from(args), args.limit):
        line = f"{j['id']:>5}  {j['kind']:<12} {j['status']:<9} {j['progress']:>5.0%}"
        print(f"{line}  {j['message']}")


def cmd_jobs_show(args) -> None:
    from backend import jobs

    try:
        _print(jobs.get(runtime_from(args), args.id))
    except ValueError as e:
        raise CLIError(str(e)) from e


def cmd_jobs_cancel(args) -> None:
    from backend import jobs

    try:
        status = jobs.cancel(runtime_from(args), args.id)
    except ValueError as e:
        raise CLIError(str(e)) from e
    print(f"job {args.id}: {'cancel requested' if status == 'running' else status}")


# --- versions ---------------------------------------------------------------------------------
def cmd_versions_list(args) -> None:
    from backend import registry

    for v in registry.list_versions(runtime_from(args)):
        parent = v["parent_id"] if v["parent_id"] is not None else "-"
        print(f"{v['id']:>4}  {v['name']:<32} {v['kind']:<8} parent={parent}", end=" ")
        print(f"round={v['round_index']}")


def cmd_versions_lineage(args) -> None:
    from backend import registry

    chain = registry.lineage(runtime_from(args), args.version)
    print(" <- ".join(f"{v['name']} ({v['kind']})" for v in chain))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m backend", description="Align-SLM Studio backend")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    cfg = sub.add_parser("config", help="show the effective settings").add_subparsers(
        dest="sub", required=True
    )
    cfg.add_parser("show", help="print settings as JSON (secrets masked)").set_defaults(
        func=cmd_config_show
    )

    db = sub.add_parser("db", help="database schema").add_subparsers(dest="sub", required=True)
    up = db.add_parser("upgrade", help="migrate to a revision (default: head)")
    up.add_argument("revision", nargs="?", default="head")
    up.set_defaults(func=cmd_db_upgrade)
    down = db.add_parser("downgrade", help="migrate down to a revision (e.g. base)")
    down.add_argument("revision")
    down.set_defaults(func=cmd_db_downgrade)

    users = sub.add_parser("users", help="manage users").add_subparsers(dest="sub", required=True)
    add = users.add_parser("add", help="create a user")
    add.add_argument("name")
    add.add_argument("--role", choices=["admin", "rater"], default="rater")
    for sp in (add, passwd := users.add_parser("passwd", help="set a user's password")):
        g = sp.add_mutually_exclusive_group()
        g.add_argument("--password-stdin", action="store_true", help="read it from stdin")
        g.add_argument("--generate", action="store_true", help="generate and print one")
    add.set_defaults(func=cmd_users_add)
    passwd.add_argument("name")
    passwd.set_defaults(func=cmd_users_passwd)
    users.add_parser("list", help="list users").set_defaults(func=cmd_users_list)
    role = users.add_parser("role", help="change a user's role")
    role.add_argument("name")
    role.add_argument("role", choices=["admin", "rater"])
    role.set_defaults(func=cmd_users_role)

    w = sub.add_parser("worker", help="run the job worker standalone")
    w.add_argument("--once", action="store_true", help="run at most one job, then exit")
    w.add_argument("--stale-after", type=float, default=30.0, help="seconds without heartbeat")
    w.add_argument("--nice", type=int, default=0, help="lower this worker's CPU priority by N")
    w.add_argument("--parent", type=int, default=None, metavar="PID",
                   help="exit when process PID dies (set by the server for its own worker)")
    w.set_defaults(func=cmd_worker)

    jobs = sub.add_parser("jobs", help="list, inspect, cancel jobs").add_subparsers(
        dest="sub", required=True
    )
    jl = jobs.add_parser("list", help="recent jobs")
    jl.add_argument("--limit", type=int, default=20)
    jl.set_defaults(func=cmd_jobs_list)
    for name, fn in (("show", cmd_jobs_show), ("cancel", cmd_jobs_cancel)):
        jp = jobs.add_parser(name, help=f"{name} a job")
        jp.add_argument("id", type=int)
        jp.set_defaults(func=fn)

    ver = sub.add_parser("versions", help="model-version registry").add_subparsers(
        dest="sub", required=True
    )
    ver.add_parser("list", help="all versions").set_defaults(func=cmd_versions_list)
    lin = ver.add_parser("lineage", help="a version and its ancestors")
    lin.add_argument("version")
    lin.set_defaults(func=cmd_versions_lineage)

    for name in CLI_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise
            continue
        add_cli: Callable | None = getattr(module, "add_cli", None)
        if add_cli:
            add_cli(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    from pydantic import ValidationError

    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING)
    try:
        args.func(args)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        print(f"error: bad config: {where}: {first['msg']}", file=sys.stderr)
        return 2
    except (CLIError, ValueError, FileNotFoundError, PermissionError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
