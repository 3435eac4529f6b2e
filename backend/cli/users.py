"""`users add|passwd|list|role`."""

from __future__ import annotations

import getpass
import secrets
import sys

from backend.cli import common
from backend.cli.common import CLIError


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
    info = users.add_user(common.runtime_from(args), args.name, password, role=args.role)
    print(f"created {info.role} {info.name!r} (id {info.id})")
    if generated:
        print(f"password: {password}")


def cmd_users_list(args) -> None:
    from backend import users

    for u in users.list_users(common.runtime_from(args)):
        print(f"{u['id']:>4}  {u['name']:<24} {u['role']:<6} {'active' if u['active'] else 'off'}")


def cmd_users_passwd(args) -> None:
    from backend import users

    rt = common.runtime_from(args)
    users.find_user(rt, args.name)
    password, generated = _read_password(args)
    users.set_password(rt, args.name, password)
    print(f"password of {args.name!r} changed" + (f": {password}" if generated else ""))


def cmd_users_role(args) -> None:
    from backend import users

    info = users.set_role(common.runtime_from(args), args.name, args.role)
    print(f"{info.name!r} is now {info.role}")


def add_commands(sub) -> None:
    from db.schema import ROLES

    users = sub.add_parser("users", help="manage users").add_subparsers(dest="sub", required=True)
    add = users.add_parser("add", help="create a user")
    add.add_argument("name")
    add.add_argument("--role", choices=ROLES, default="rater")
    passwd = users.add_parser("passwd", help="set a user's password")
    for sp in (add, passwd):
        g = sp.add_mutually_exclusive_group()
        g.add_argument("--password-stdin", action="store_true", help="read it from stdin")
        g.add_argument("--generate", action="store_true", help="generate and print one")
    add.set_defaults(func=cmd_users_add)
    passwd.add_argument("name")
    passwd.set_defaults(func=cmd_users_passwd)
    users.add_parser("list", help="list users").set_defaults(func=cmd_users_list)
    role = users.add_parser("role", help="change a user's role")
    role.add_argument("name")
    role.add_argument("role", choices=ROLES)
    role.set_defaults(func=cmd_users_role)
