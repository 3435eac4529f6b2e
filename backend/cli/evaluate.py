"""`evaluate` (a version's benchmarks and judge score, as a job) and `report` (baseline vs
aligned versions with paired-bootstrap CIs)."""

from __future__ import annotations

from pathlib import Path

from backend.cli import common
from backend.cli.common import CLIError, run_job_here


def cmd_evaluate(args) -> None:
    from backend import jobs, registry
    from backend.loop.evaluate import (
        BENCHMARKS,
        bench_list,
        benchmark_roots,
        find_benchmark,
        fmt_ci,
    )

    rt = common.runtime_from(args)
    v = registry.get_version(rt, args.version)
    benches = bench_list(args.bench)
    roots = ", ".join(str(r) for r in benchmark_roots(rt))
    for b in benches or []:
        if not find_benchmark(rt, b, args.split):
            raise CLIError(f"benchmark {b}/{args.split}.item not found under {roots} "
                           f"(known names: {', '.join(BENCHMARKS)})")
    params = {"version": v.name, "split": args.split, "benchmarks": benches}
    job_id = jobs.submit(rt, "evaluate", params)
    if not args.wait:
        print(f"queued evaluate job {job_id}")
        return
    for r in run_job_here(rt, job_id, "evaluate").result.get("results", []):
        ci = fmt_ci(r["ci_low"], r["ci_high"], False)
        print(f"{r['benchmark']:<24} {r['metric']:<14} {r['value']:.4f} {ci} n={r['n']}")
    print(f"report: {rt.settings.data_dir / 'reports' / v.name / 'report.md'}")


def cmd_report(args) -> None:
    from backend.loop.evaluate import compare_versions, fmt_ci, write_comparison

    rt = common.runtime_from(args)
    rows = compare_versions(rt, split=args.split)
    path = write_comparison(rt, rows, Path(args.out) if args.out else None, args.split)
    for r in rows:
        ci = fmt_ci(r["ci_low"], r["ci_high"], False)
        print(f"{r['version']:<28} {r['benchmark']:<20} {r['metric']:<14} "
              f"{r['diff']:+.4f} {ci}{' *' if r['significant'] else ''}")
    print(f"report: {path}")


def cmd_convert_benchmark(args) -> None:
    from backend.benchmarks import ConversionError, convert
    from backend.cli.common import print_json
    from backend.config import load_settings

    out = Path(args.out) if args.out else load_settings().data_dir / "benchmarks"
    try:
        print_json(convert(args.name, Path(args.source), args.split, out))
    except ConversionError as e:
        raise CLIError(str(e)) from e


def add_commands(sub) -> None:
    from backend.benchmarks import CONVERTIBLE

    cb = sub.add_parser("convert-benchmark", help="lay out a published benchmark set (ZeroSpeech "
                                                  "2021 sWUGGY/sBLIMP, spoken/topic StoryCloze) "
                                                  "for evaluate")
    cb.add_argument("name", choices=CONVERTIBLE)
    cb.add_argument("source", help="swuggy/sblimp: the ZeroSpeech 2021 dataset root (holding "
                                   "lexical/ and syntactic/); ssc/tsc: the folder of "
                                   "<n>_correct.wav / <n>_incorrect.wav")
    cb.add_argument("--split", default="dev", help="split to write (for ZeroSpeech: to read)")
    cb.add_argument("--out", default="", help="benchmarks root (default: <data_dir>/benchmarks)")
    cb.set_defaults(func=cmd_convert_benchmark)

    ev = sub.add_parser("evaluate", help="benchmark accuracies + judge score of a version")
    ev.add_argument("version", help="model version name or id")
    ev.add_argument("--bench", default="",
                    help="comma list (default: every benchmark found of swuggy, sblimp, ssc, tsc)")
    ev.add_argument("--split", default="dev")
    g = ev.add_mutually_exclusive_group()
    g.add_argument("--wait", dest="wait", action="store_true", default=True,
                   help="run the job here with a progress bar (default)")
    g.add_argument("--no-wait", dest="wait", action="store_false", help="only queue the job")
    ev.set_defaults(func=cmd_evaluate)
    rp = sub.add_parser("report", help="baseline vs aligned versions with paired-bootstrap CIs")
    rp.add_argument("--out", default="", help="output directory (default: data/reports/comparison)")
    rp.add_argument("--split", default="dev")
    rp.set_defaults(func=cmd_report)
