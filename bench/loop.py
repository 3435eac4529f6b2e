"""Measure what the Align-SLM loop buys: mean AI-judge score on held-out prompts, baseline vs the
aligned version(s), with a paired bootstrap 95% CI over prompts.

    .venv/bin/python -m bench.loop --world mini --data-dir data [--rounds 3]   # built bundle
    .venv/bin/python -m bench.loop --world tiny                                 # stand-in world

The mini world needs `python -m backend bootstrap` to have built `<data_dir>/bundle`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def heldout_scores(rt, version: str, split: str | None = None, n: int | None = None,
                   seed: int = 1000) -> dict[int, float]:
    """Generate on the held-out split with `version`, judge, and return prompt id -> mean score
    over its continuations (failed judgments excluded)."""
    from backend import queries, registry
    from backend.loop import generate, judge

    split = split or rt.settings.generation.heldout_split
    v = registry.get_version(rt, version)
    generate.generate(rt, v.id, split=split, n=n, seed=seed)
    judge.judge(rt, version=v.id)
    judges = [queries.judge_identity(j.name, j.prompt_version)
              for j in (rt.judge(c.name) for c in rt.settings.models.judges)]
    per: dict[int, list[float]] = {}
    with rt.store.read() as s:
        for a in queries.ai_scores(s, judges=judges, version_id=v.id, split=split, seed=seed):
            per.setdefault(a.prompt_id, []).append(a.value)
    return {p: statistics.fmean(v) for p, v in per.items()}


def paired_bootstrap(base: dict[int, float], new: dict[int, float]) -> dict:
    """Mean of new - base over the prompts both have, with a paired-bootstrap 95% CI."""
    from backend.stats import paired_bootstrap_diff

    keys = sorted(set(base) & set(new))
    est = paired_bootstrap_diff([base[k] for k in keys], [new[k] for k in keys])
    return {"n": len(keys), "base_mean": float(np.mean([base[k] for k in keys])) if keys else None,
            "new_mean": float(np.mean([new[k] for k in keys])) if keys else None,
            "mean_diff": est.value, "ci": [est.low, est.high]}


def measure(rt, rounds: int = 1, curriculum: bool = True, overrides: dict | None = None,
            benchmarks: bool = False) -> dict:
    """Rounds from the baseline, then each version's held-out judge score against the
    baseline's; with `benchmarks`, accuracies on dev and test items pooled and each change in
    points with its paired CI (as bench/align.py reports them)."""
    from backend import registry
    from backend.loop import rounds as rounds_mod
    from bench import align

    base = registry.ensure_baseline(rt).name
    t0 = time.monotonic()
    res = rounds_mod.run_rounds(rt, base, "ai", rounds=rounds, curriculum=curriculum,
                                overrides=overrides or {}, evaluate=False)
    loop_s = time.monotonic() - t0
    base_scores = heldout_scores(rt, base)
    out = {"loop_seconds": round(loop_s, 1), "stopped_early": res["stopped_early"],
           "rounds": []}
    if benchmarks:
        base_items = align.benchmarks(rt, base)
        out["baseline_benchmarks"] = align.accuracy(base_items)
    seconds = {r.id: (r.finished_at - r.created_at).total_seconds()
               for r in rounds_mod.list_rounds(rt) if r.finished_at and r.created_at}
    for r in res["rounds"]:
        cmp = paired_bootstrap(base_scores, heldout_scores(rt, r["version"]))
        row = {"version": r["version"], "n_pairs": r["n_pairs"],
               "round_seconds": seconds.get(r["round_id"]),
               "reward_accuracy_last": r["metrics"].get("reward_accuracy_last"), **cmp}
        if benchmarks:
            items = align.benchmarks(rt, r["version"])
            row["benchmarks"] = align.accuracy(items)
            row["benchmark_change"] = align.benchmark_change(base_items, items)
        out["rounds"].append(row)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--world", choices=["mini", "tiny"], default="mini")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--threads", type=int, default=2,
                    help="torch CPU threads (1 is faster when the machine is shared)")
    ap.add_argument("--no-curriculum", action="store_true",
                    help="keep round 1's selection thresholds in every round")
    ap.add_argument("--max-prompts", type=int, default=None,
                    help="training prompts sampled per round (default: the config's)")
    a = ap.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    overrides = {k: v for k, v in (("steps", a.steps), ("max_prompts", a.max_prompts)) if v}
    with tempfile.TemporaryDirectory() as tmp:
        if a.world == "tiny":
            from tests.loop import tiny
            from tests.loop.conftest import make_tiny_runtime

            lm = tiny.build_tiny_lm_dir(Path(tmp) / "lm")
            rt = make_tiny_runtime(Path(tmp) / "data", lm, n_train=24, n_dev=24)
        else:
            from backend import prompts
            from backend.config import load_settings
            from backend.runtime import Runtime

            kw = {"world": "mini"}
            if a.data_dir:
                kw["data_dir"] = a.data_dir
            rt = Runtime(load_settings(**kw))
            prompts.import_bundle_prompts(rt)
        res = measure(rt, a.rounds, not a.no_curriculum, overrides,
                      benchmarks=a.world == "mini")
    print(json.dumps(res, indent=2))
    for i, r in enumerate(res["rounds"], 1):
        print(f"round {i}: {r['n_pairs']} pairs, held-out judge score {r['base_mean']:.3f} -> "
              f"{r['new_mean']:.3f} (diff {r['mean_diff']:+.3f}, 95% CI "
              f"[{r['ci'][0]:+.3f}, {r['ci'][1]:+.3f}], {r['n']} prompts)")


if __name__ == "__main__":
    main()
