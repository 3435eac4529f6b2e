"""`rating add-traps`: spoken attention-check tasks for rater quality control."""

from __future__ import annotations

from backend.cli import common
from backend.cli.common import CLIError


def cmd_add_traps(args) -> None:
    from backend.traps import AB_TRAPS, TRAPS, add_traps

    unknown = [k for k in args.kind or [] if k not in TRAPS]
    if unknown:
        raise CLIError(f"unknown trap kind {unknown[0]!r}; known: {', '.join(TRAPS)}")
    made = add_traps(common.runtime_from(args), args.n, args.kind or AB_TRAPS)
    for t in made:
        print(f"trap task {t['task_id']}: {t['trap']} (expects {t['answer']}), "
              f"prompt {t['prompt_id']}")


def add_commands(sub) -> None:
    rp = sub.add_parser("rating", help="human rating: quality-control tasks").add_subparsers(
        dest="sub", required=True)
    at = rp.add_parser("add-traps", help="create trap tasks: spoken instructions (espeak-ng) "
                                         "that tell the rater which answer to give")
    at.add_argument("--n", type=int, default=4, help="how many trap tasks")
    at.add_argument("--kind", action="append", default=None,
                    help="trap kind (repeatable; default: every A/B trap kind)")
    at.set_defaults(func=cmd_add_traps)
