"""Which DPO settings move the held-out judge score? Several settings trained on the same pairs.

The baseline's training-prompt continuations are sampled and judged once (the store keeps them),
so every variant trains on the same preference pairs; each resulting version's held-out
continuations are judged and compared with the baseline's by a paired bootstrap over prompts.
This is how the mini world's DPO defaults (`dpo.mini_overrides`) are chosen: see
docs/results.md.

    .venv/bin/python -m bench.dpo_sweep --data-dir data --threads 1 \\
        "lr=1e-4,steps=80" "lr=1e-4,steps=80,loss_type=sigmoid+sft,loss_weights=1+1"

A variant is comma-separated round settings (the names `python -m backend round --set` takes);
`+` separates list items. The empty variant "" is the configured defaults.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from bench.loop import heldout_scores, paired_bootstrap  # noqa: E402


def _value(text: str):
    if "+" in text:
        return [_value(x) for x in text.split("+")]
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_variant(text: str) -> dict:
    """"lr=1e-4,steps=80,loss_type=sigmoid+sft" -> {"lr": 0.0001, "steps": 80, ...}."""
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, val = part.partition("=")
        if not sep:
            raise SystemExit(f"variant part {part!r} is not key=value")
        out[key.strip()] = _value(val.strip())
    return out


def sweep(rt, variants: list[dict], heldout_n: int | None, seed: int = 1000) -> list[dict]:
    from backend import registry
    from backend.loop import rounds as rounds_mod

    base = registry.ensure_baseline(rt).name
    t0 = time.monotonic()
    base_scores = heldout_scores(rt, base, n=heldout_n, seed=seed)
    print(f"baseline held-out: {len(base_scores)} prompts in {time.monotonic() - t0:.0f} s",
          file=sys.stderr, flush=True)
    rows = []
    for v in variants:
        t0 = time.monotonic()
        res = rounds_mod.run_rounds(rt, base, "ai", rounds=1, overrides=v, evaluate=False)
        if not res["rounds"]:
            rows.append({"variant": v, "error": res["stopped_early"]})
            continue
        r = res["rounds"][0]
        train_s = time.monotonic() - t0
        cmp = paired_bootstrap(base_scores, heldout_scores(rt, r["version"], n=heldout_n,
                                                           seed=seed))
        row = {"variant": v, "version": r["version"], "n_pairs": r["n_pairs"],
               "train_seconds": round(train_s, 1),
               **{k: r["metrics"].get(k) for k in ("reward_accuracy_last", "reward_first",
                                                   "reward_last", "judged_samples")},
               "total_seconds": round(time.monotonic() - t0, 1), **cmp}
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("variants", nargs="*", default=["", "lr=1e-4,steps=80"],
                    help='e.g. "lr=1e-4,steps=80" ("" = the defaults)')
    ap.add_argument("--data-dir", default=None,
                    help="data dir whose bundle/ is the built mini world (default: settings')")
    ap.add_argument("--heldout-n", type=int, default=None,
                    help="continuations per held-out prompt (default: generation.n)")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    import torch

    from backend import prompts
    from backend.config import load_settings
    from backend.runtime import Runtime

    torch.set_num_threads(a.threads)
    kw = {"data_dir": a.data_dir} if a.data_dir else {}
    rt = Runtime(load_settings(world="mini", **kw))
    prompts.import_bundle_prompts(rt)
    rows = sweep(rt, [parse_variant(v) for v in a.variants], a.heldout_n)
    print("\nvariant | pairs | held-out judge score diff [95% CI] | reward acc | seconds")
    for r in rows:
        if "error" in r:
            print(f"{r['variant']} | stopped: {r['error']}")
            continue
        print(f"{r['variant']} | {r['n_pairs']} | {r['mean_diff']:+.3f} "
              f"[{r['ci'][0]:+.3f}, {r['ci'][1]:+.3f}] | {r['reward_accuracy_last'] or 0:.2f} | "
              f"{r['total_seconds']:.0f}")


if __name__ == "__main__":
    main()
