"""The loop's steps one by one (`import-prompts`, `generate`, `transcribe`, `judge`) and whole
rounds (`round`). A round runs as a job: queued and left (`--no-wait`) or run here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from backend.cli import common
from backend.cli.common import CLIError, print_json, run_job_here, run_with_bar


def cmd_import_prompts(args) -> None:
    from backend.prompts import import_bundle_prompts

    run_with_bar(args, import_bundle_prompts, "import",
                 bundle_dir=Path(args.bundle) if args.bundle else None, split=args.split)


def cmd_generate(args) -> None:
    from backend import registry
    from backend.loop.generate import generate

    def run(rt, progress):
        version = args.version or registry.ensure_baseline(rt).name
        return generate(rt, version, split=args.split, n=args.n, seed=args.seed,
                        limit=args.limit, progress=progress)

    run_with_bar(args, run, "generate")


def cmd_transcribe(args) -> None:
    from backend.loop.transcribe import transcribe

    run_with_bar(args, transcribe, "transcribe")


def cmd_judge(args) -> None:
    from backend.loop.judge import judge

    run_with_bar(args, judge, "judge", judges=args.judge, version=args.version)


def parse_sets(pairs: list[str]) -> dict[str, Any]:
    """`KEY=VALUE` strings -> round overrides; KEY is a setting (`lr`, `beta`) or
    `section.field` (`dpo.beta`); a value is JSON where it parses, else a string. The round
    checks every key and value against the settings model before anything runs."""
    out: dict[str, Any] = {}
    for kv in pairs:
        k, sep, v = kv.partition("=")
        if not sep or not k:
            raise CLIError(f"--set needs KEY=VALUE, got {kv!r}")
        try:
            value = json.loads(v)
        except json.JSONDecodeError:
            value = v
        section, dot, field = k.partition(".")
        if dot:
            out.setdefault(section, {})[field] = value
        else:
            out[k] = value
    return out


def cmd_round(args) -> None:
    from backend.loop.rounds import start_round

    rt = common.runtime_from(args)
    overrides = parse_sets(args.set)
    if args.steps is not None:
        overrides["steps"] = args.steps
    if args.method is not None:
        overrides["method"] = args.method
    job_id = start_round(rt, args.parent, args.source, args.rounds, args.curriculum,
                         overrides, evaluate=not args.no_eval)
    if args.no_wait:
        print(f"queued round job {job_id} (python -m backend jobs show {job_id})")
        return
    print_json(run_job_here(rt, job_id, "round").result)


def add_commands(sub) -> None:
    from db.schema import PAIR_SOURCES

    ip = sub.add_parser("import-prompts", help="load prompts (a bundle's or your own .jsonl) "
                                               "into the store")
    ip.add_argument("--bundle", default=None, metavar="DIR_OR_JSONL",
                    help="a prompts .jsonl file (one {\"audio\": path, \"split\": ..., "
                         "\"text\": ...} per line, paths relative to it) or a directory with "
                         "prompts/prompts.jsonl (default: <data_dir>/bundle)")
    ip.add_argument("--split", default=None,
                    help="split of rows that name none (train: rounds; dev: evaluation)")
    ip.set_defaults(func=cmd_import_prompts)

    g = sub.add_parser("generate", help="sample continuations with a model version")
    g.add_argument("version", nargs="?", default=None, help="name or id (default: baseline)")
    g.add_argument("--split", default=None)
    g.add_argument("--n", type=int, default=None)
    g.add_argument("--seed", type=int, default=None)
    g.add_argument("--limit", type=int, default=None, help="at most this many prompts")
    g.set_defaults(func=cmd_generate)

    t = sub.add_parser("transcribe", help="ASR over samples and prompts without transcript")
    t.set_defaults(func=cmd_transcribe)

    j = sub.add_parser("judge", help="AI-judge samples (retries failed judgments)")
    j.add_argument("--judge", action="append", default=None, help="judge name (repeatable)")
    j.add_argument("--version", default=None)
    j.set_defaults(func=cmd_judge)

    from db.schema import TRAINING_METHODS

    rp = sub.add_parser("round", help="run training round(s): sample, judge, train (DPO on "
                                      "pairs, online DPO, GRPO or RFT), evaluate")
    rp.add_argument("--parent", default=None, help="version name or id (default: baseline)")
    rp.add_argument("--source", choices=PAIR_SOURCES, default="ai")
    rp.add_argument("--rounds", type=int, default=1)
    rp.add_argument("--curriculum", action="store_true", help="raise thresholds each round")
    rp.add_argument("--method", choices=TRAINING_METHODS, default=None,
                    help="training method (default: training.method; the mini world's "
                         "differs from the paper's dpo where training.mini_overrides says)")
    rp.add_argument("--steps", type=int, default=None, help="training max steps")
    rp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a setting of the method's section (dpo, online_dpo, grpo, "
                         "rft), selection or generation (JSON value), e.g. dpo.beta=0.2, "
                         "lr=1e-4, grpo.num_generations=8, online_dpo.num_generations=4")
    rp.add_argument("--no-eval", action="store_true")
    rp.add_argument("--no-wait", action="store_true", help="queue a job and print its id")
    rp.set_defaults(func=cmd_round)
