"""`export judgments|pairs`."""

from __future__ import annotations

from pathlib import Path

from backend.cli import common
from backend.cli.common import CLIError


def cmd_export(args) -> None:
    from backend.exports import ExportError, export_judgments, export_pairs

    rt = common.runtime_from(args)
    out = Path(args.out) if args.out else None
    try:
        if args.what == "judgments":
            if args.round is not None:
                raise ExportError("--round applies to pairs only")
            path = export_judgments(rt, args.format, out, args.include_flagged)
        else:
            path = export_pairs(rt, args.format, args.round, out)
    except ExportError as e:
        raise CLIError(str(e)) from e
    print(f"exported {args.what} ({args.format}) to {path}")


def add_commands(sub) -> None:
    from backend.exports import FORMATS

    ex = sub.add_parser("export", help="export judgments or preference pairs")
    ex.add_argument("what", choices=["judgments", "pairs"])
    ex.add_argument("--format", choices=FORMATS, default="csv")
    ex.add_argument("--round", type=int, default=None, help="training round id (pairs only)")
    ex.add_argument("--out", default="", help="output path (default: data/exports/...)")
    ex.add_argument("--include-flagged", action="store_true",
                    help="also export judgments of raters who failed quality control")
    ex.set_defaults(func=cmd_export)
