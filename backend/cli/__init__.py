"""`python -m backend ...` (console script `studio`): thin commands over the service functions.

One module per area adds its commands (`COMMANDS`, in help order); bad input ends in a one-line
`error: ...` on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from backend.cli import evaluate, exports, jobs, loop, rating, system, users, world
from backend.cli.common import CLIError

COMMANDS = (system, users, jobs, world, loop, evaluate, exports, rating)

__all__ = ["CLIError", "COMMANDS", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    prog = "studio" if Path(sys.argv[0]).name == "studio" else "python -m backend"
    p = argparse.ArgumentParser(prog=prog, description="Align-SLM Studio backend")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.add_commands(sub)
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
