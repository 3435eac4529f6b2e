"""`config show`, `db upgrade|downgrade`."""

from __future__ import annotations


def cmd_config_show(args) -> None:
    from backend.config import load_settings

    print(load_settings().redacted_json())


def cmd_db_upgrade(args) -> None:
    from backend.config import load_settings
    from db.session import Store

    Store(load_settings().database_url).upgrade(args.revision)
    print(f"database at revision {args.revision}")


def cmd_db_downgrade(args) -> None:
    from backend.config import load_settings
    from db.session import Store, downgrade

    downgrade(Store(load_settings().database_url).engine, args.revision)
    print(f"database downgraded to {args.revision}")


def add_commands(sub) -> None:
    cfg = sub.add_parser("config", help="show the effective settings").add_subparsers(
        dest="sub", required=True)
    cfg.add_parser("show", help="print settings as JSON (secrets masked)").set_defaults(
        func=cmd_config_show)

    db = sub.add_parser("db", help="database schema").add_subparsers(dest="sub", required=True)
    up = db.add_parser("upgrade", help="migrate to a revision (default: head)")
    up.add_argument("revision", nargs="?", default="head")
    up.set_defaults(func=cmd_db_upgrade)
    down = db.add_parser("downgrade", help="migrate down to a revision (e.g. base)")
    down.add_argument("revision")
    down.set_defaults(func=cmd_db_downgrade)
