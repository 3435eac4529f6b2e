"""Which training method makes the aligned model better? Every method on the same world, the same
training prompts and the same held-out prompts, in one run.

For the baseline and for each method's version(s): held-out continuations (dev split, a fixed
seed) judged by every configured judge — the training judge and the evaluation judge training
never sees — with a paired bootstrap 95% CI over prompts against the baseline; diversity across
a prompt's continuations (distinct-2, self-BLEU); the share of content-free continuations and
the training judge's fault rates (mini world: read from its evidence); benchmark accuracy
(sWUGGY, sBLIMP, sSC, tSC; dev and test items pooled, a change with its paired CI); wall time
and judged samples each method used.

    .venv/bin/python -m bench.align --data-dir D [--methods dpo grpo] [--rounds 1]
        [--variant "grpo:lr=1e-3,steps=80"] [--heldout-n 4] [--threads 1]

Writes bench/results/align.json (or --out) and, with --plot, a figure next to it. A method is
`dpo` or `grpo` with the configured defaults (the mini world's overrides applied), or a
variant `method:key=value,...` with round settings on top (names as `backend round --set`;
`rounds=N` runs that method N rounds instead of --rounds).
The first method runs on a store without samples, so its wall time includes the baseline's
training-prompt sampling; `dpo` is run first by default for that reason (it needs them).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from bench.dpo_sweep import parse_variant

BENCHMARKS = ("swuggy", "sblimp", "ssc", "tsc")
ROOT = Path(__file__).resolve().parents[1]


# --- held-out measures ---------------------------------------------------------------------
def heldout(rt, version: str, n: int, seed: int) -> dict:
    """Sample, transcribe and judge `n` held-out continuations per prompt with `version`, and
    read back per judge: prompt id -> mean score, plus transcripts and judge evidence."""
    from sqlalchemy import select

    from backend import queries, registry
    from backend.loop import generate, judge
    from db.schema import Judgment, Prompt, Sample

    split = rt.settings.generation.heldout_split
    v = registry.get_version(rt, version)
    t0 = time.monotonic()
    generate.generate(rt, v.id, split=split, n=n, seed=seed)
    judge.judge(rt, version=v.id)
    seconds = time.monotonic() - t0
    scores: dict[str, dict[int, float]] = {}
    for cfg in rt.settings.models.judges:
        jd = rt.judge(cfg.name)
        ident = queries.judge_identity(jd.name, jd.prompt_version)
        per: dict[int, list[float]] = {}
        with rt.store.read() as s:
            for a in queries.ai_scores(s, judges=[ident], version_id=v.id, split=split,
                                       seed=seed):
                per.setdefault(a.prompt_id, []).append(a.value)
        scores[cfg.name] = {p: statistics.fmean(x) for p, x in per.items()}
    train_judge = rt.judge(None)
    rater = queries.ai_rater(train_judge.name, train_judge.prompt_version)
    with rt.store.read() as s:
        rows = s.execute(
            select(Sample.prompt_id, Sample.transcript, Judgment.raw)
            .join(Prompt, Sample.prompt_id == Prompt.id)
            .outerjoin(Judgment, (Judgment.sample_id == Sample.id) & (Judgment.rater == rater))
            .where(Sample.model_version_id == v.id, Sample.seed == seed, Prompt.split == split)
        ).all()
    texts: dict[int, list[str]] = {}
    evidence = []
    for pid, text, raw in rows:
        texts.setdefault(pid, []).append(text or "")
        if raw:
            try:
                evidence.append(json.loads(raw))
            except ValueError:
                pass
    return {"scores": scores, "texts": texts, "evidence": evidence,
            "sample_seconds": round(seconds, 1)}


def diversity(texts: dict[int, list[str]]) -> dict:
    """Across each prompt's continuations (mean over prompts): distinct-2 = unique word bigrams
    / all bigrams; self-BLEU-2 = share of a continuation's bigrams found in the prompt's other
    continuations (1 = every continuation repeats the others)."""
    d2, sb = [], []
    for conts in texts.values():
        grams = [[tuple(w[i:i + 2]) for i in range(len(w) - 1)]
                 for w in (t.split() for t in conts)]
        pooled = [g for gs in grams for g in gs]
        if pooled:
            d2.append(len(set(pooled)) / len(pooled))
        for i, gs in enumerate(grams):
            others = {g for j, o in enumerate(grams) if j != i for g in o}
            if gs and others:
                sb.append(sum(g in others for g in gs) / len(gs))
    return {"distinct_2": _mean(d2), "self_bleu_2": _mean(sb)}


def faults(evidence: list[dict]) -> dict:
    """The training judge's fault rates (the Leaderboard's definition)."""
    from backend.leaderboard import judge_faults

    return judge_faults(evidence)


def benchmarks(rt, version: str) -> dict[str, dict[str, float]]:
    """Per benchmark, each item's outcome (1 = the good item more likely) on dev and test
    pooled (keys `split/id`): 150 items instead of dev's 100, and the per-item outcomes a
    paired CI of a change needs."""
    from backend.loop.evaluate import evaluate_version, latest_results
    from backend.registry import get_version

    vid = get_version(rt, version).id
    out: dict[str, dict[str, float]] = {}
    for split in ("dev", "test"):
        evaluate_version(rt, version, benchmarks=list(BENCHMARKS), split=split, judge=False)
        for (v, bench, metric), r in latest_results(rt, split).items():
            if v == vid and metric == "accuracy" and bench in BENCHMARKS:
                d = r["details"]
                out.setdefault(bench, {}).update(
                    {f"{split}/{i}": o for i, o in zip(d["ids"], d["outcomes"], strict=True)})
    return out


def accuracy(outcomes: dict[str, dict[str, float]] | None) -> dict[str, float] | None:
    return None if outcomes is None else {
        k: round(float(np.mean(list(v.values()))), 4) for k, v in outcomes.items()}


def benchmark_change(base: dict[str, dict[str, float]], new: dict[str, dict[str, float]]
                     ) -> dict[str, dict]:
    """Accuracy change in points on the items both were scored on, paired bootstrap 95% CI."""
    from backend.stats import paired_bootstrap_diff

    out = {}
    for k in sorted(set(base) & set(new)):
        keys = sorted(set(base[k]) & set(new[k]))
        est = paired_bootstrap_diff([base[k][i] for i in keys], [new[k][i] for i in keys])
        out[k] = {"n_items": len(keys), "points": round(100 * est.value, 2),
                  "ci": [round(100 * est.low, 2), round(100 * est.high, 2)]}
    return out


def compare(base: dict[int, float], new: dict[int, float]) -> dict:
    from backend.stats import paired_bootstrap_diff

    keys = sorted(set(base) & set(new))
    est = paired_bootstrap_diff([base[k] for k in keys], [new[k] for k in keys])
    return {"n_prompts": len(keys), "base": _mean([base[k] for k in keys]),
            "new": _mean([new[k] for k in keys]), "diff": est.value, "ci": [est.low, est.high]}


def _mean(xs) -> float | None:
    return round(float(np.mean(xs)), 4) if len(xs) else None


def describe(rt, name: str, h: dict, bench: dict | None) -> dict:
    return {"version": name, "sample_seconds": h["sample_seconds"],
            "mean": {j: _mean(list(s.values())) for j, s in h["scores"].items()},
            "diversity": diversity(h["texts"]), "faults": faults(h["evidence"]),
            "benchmarks": bench}


# --- methods -------------------------------------------------------------------------------
def parse_method(text: str) -> tuple[str, dict]:
    """"grpo" or "grpo:lr=1e-3,steps=80" -> ("grpo:lr=1e-3,steps=80", overrides)."""
    method, _, rest = text.partition(":")
    return text, {"method": method, **parse_variant(rest)}


def judged_samples(rt, round_rows: list[dict], method: str) -> int:
    """Judged samples a method's rounds consumed: an online method counts what its trainer
    scored; an offline one the training-split samples of its parents it selected pairs from."""
    from sqlalchemy import func, select

    from db.schema import Prompt, Sample, TrainingRound

    total = 0
    for r in round_rows:
        if method in ("grpo", "online-dpo"):
            total += int(r["metrics"].get("judged_samples") or 0)
            continue
        with rt.store.read() as s:
            parent = s.get(TrainingRound, r["round_id"]).parent_version_id
            total += s.scalar(select(func.count()).select_from(Sample).join(Prompt).where(
                Sample.model_version_id == parent,
                Prompt.split == rt.settings.generation.train_split)) or 0
    return total


def round_finished(rt, round_id: int):
    """When a training round's row says it finished (UTC, as the store keeps it). The row is
    made after the round's training prompts were sampled and judged, so its own created_at
    would leave that, most of a round's time, out."""
    from db.schema import TrainingRound

    with rt.store.read() as s:
        return s.get(TrainingRound, round_id).finished_at


def run(rt, methods: list[str], rounds: int, heldout_n: int, seed: int,
        with_benchmarks: bool = True, save=None) -> dict:
    """`save(partial)` is called after the baseline and after each evaluated round, so a bench
    stopped part way leaves what it measured."""
    from backend import registry
    from backend.loop import rounds as rounds_mod
    from db.schema import utcnow

    base = registry.ensure_baseline(rt).name
    h0 = heldout(rt, base, heldout_n, seed)
    b0 = benchmarks(rt, base) if with_benchmarks else None
    out = {"baseline": describe(rt, base, h0, accuracy(b0)), "methods": []}
    print(f"baseline: {out['baseline']['mean']}", file=sys.stderr, flush=True)
    save = save or (lambda partial: None)
    save(out)
    for text in methods:
        label, ov = parse_method(text)
        n_rounds = int(ov.pop("rounds", rounds))
        t0, started = time.monotonic(), utcnow()
        res = rounds_mod.run_rounds(rt, base, "ai", rounds=n_rounds, curriculum=False,
                                    overrides=ov, evaluate=False)
        wall = time.monotonic() - t0
        row = {"method": label, "overrides": ov, "wall_seconds": round(wall, 1),
               "stopped_early": res["stopped_early"],
               "judged_samples": judged_samples(rt, res["rounds"], ov["method"]),
               "rounds": []}
        out["methods"].append(row)
        spent = {"wall_seconds": 0.0, "judged_samples": 0}
        for r in res["rounds"]:
            # sampling, judging and training up to this round's end (the held-out evaluation
            # of earlier rounds runs after all of them, so it is not counted)
            spent["wall_seconds"] = (round_finished(rt, r["round_id"]) - started).total_seconds()
            spent["judged_samples"] += judged_samples(rt, [r], ov["method"])
            h = heldout(rt, r["version"], heldout_n, seed)
            b = benchmarks(rt, r["version"]) if with_benchmarks else None
            d = describe(rt, r["version"], h, accuracy(b))
            d["vs_baseline"] = {j: compare(h0["scores"][j], h["scores"][j]) for j in h["scores"]}
            if with_benchmarks:
                d["benchmark_change"] = benchmark_change(b0, b)
            d["n_pairs"] = r["n_pairs"]
            d["cumulative"] = {k: round(v, 1) for k, v in spent.items()}
            d["train_metrics"] = {k: v for k, v in r["metrics"].items()
                                  if isinstance(v, int | float | type(None))}
            row["rounds"].append(d)
            print(json.dumps({"method": label, "version": r["version"],
                              "vs_baseline": d["vs_baseline"]}), file=sys.stderr, flush=True)
            save(out)
    return out


# --- report --------------------------------------------------------------------------------
def table(res: dict) -> str:
    judges = list(res["baseline"]["mean"])
    head = ["method", "round", "wall s (so far)", "judged (so far)"] + \
        [f"{j} diff [95% CI]" for j in judges] + \
        ["distinct-2", "self-BLEU-2", "content-free",
         "sWUGGY / sBLIMP / sSC / tSC (points [95% CI])"]
    b = res["baseline"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    lines.append("| baseline | | | | " + " | ".join(f"{b['mean'][j]:.3f}" for j in judges)
                 + f" | {b['diversity']['distinct_2']} | {b['diversity'].get('self_bleu_2', '-')}"
                 + f" | {b['faults'].get('content_free')} | |")
    for m in res["methods"]:
        for i, r in enumerate(m["rounds"], 1):
            spent = _spent(m, r)
            cells = [m["method"], str(i), f"{spent['wall_seconds']:.0f}",
                     str(spent["judged_samples"])]
            for j in judges:
                c = r["vs_baseline"][j]
                cells.append(f"{c['diff']:+.3f} [{c['ci'][0]:+.3f}, {c['ci'][1]:+.3f}]")
            div = r["diversity"]
            cells += [str(div["distinct_2"]), str(div.get("self_bleu_2", "-")),
                      str(r["faults"].get("content_free"))]
            ch = r.get("benchmark_change") or {}
            cells.append(" / ".join(
                f"{ch[k]['points']:+.1f} [{ch[k]['ci'][0]:+.1f}, {ch[k]['ci'][1]:+.1f}]"
                if k in ch else "-" for k in BENCHMARKS))
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _spent(method: dict, rnd: dict) -> dict:
    """Wall seconds and judged samples a method had used by the end of a round (results of
    older runs, without per-round figures, give the method's total)."""
    return rnd.get("cumulative") or {k: method[k] for k in ("wall_seconds", "judged_samples")}


def plot(res: dict, path: Path) -> None:
    """Held-out score change (95% CI, each judge) of every round of every method against the
    wall time and the judged samples it had used by then."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from backend.files import save_figure

    judges = list(res["baseline"]["mean"])
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    for ax, xkey, xlabel in ((axes[0], "wall_seconds", "wall time, s"),
                             (axes[1], "judged_samples", "judged samples used")):
        span = max([m[xkey] for m in res["methods"]] + [1])
        for i, m in enumerate(m for m in res["methods"] if m["rounds"]):
            color = colors[i % len(colors)]
            xs = [_spent(m, r)[xkey] for r in m["rounds"]]
            for k, (j, marker) in enumerate(zip(judges, "os^v", strict=False)):
                cs = [r["vs_baseline"][j] for r in m["rounds"]]
                x = [v + 0.01 * span * k for v in xs]
                y = [c["diff"] for c in cs]
                ax.plot(x, y, "-", color=color, lw=0.8, alpha=0.6)
                ax.errorbar(x, y, yerr=[[c["diff"] - c["ci"][0] for c in cs],
                                        [c["ci"][1] - c["diff"] for c in cs]],
                            fmt=marker, color=color, capsize=3,
                            label=m["method"] if k == 0 else None)
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xlabel(xlabel)
    shapes = {"o": "circles", "s": "squares", "^": "triangles", "v": "inverted triangles"}
    axes[0].set_title(", ".join(f"{shapes[mk]}: {j}" for j, mk in zip(judges, "os^v",
                                                                     strict=False)), fontsize=8)
    axes[0].set_ylabel("held-out judge score vs baseline (95% CI)")
    axes[1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", required=True,
                    help="data dir whose bundle/ is the built mini world")
    ap.add_argument("--methods", nargs="+", default=["dpo", "grpo"])
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--heldout-n", type=int, default=4,
                    help="continuations per held-out prompt")
    ap.add_argument("--seed", type=int, default=1000, help="held-out sampling seed")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-benchmarks", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "align.json"))
    ap.add_argument("--plot", action="store_true", help="also write <out>.png")
    a = ap.parse_args()
    import torch

    from backend import prompts
    from backend.config import load_settings
    from backend.runtime import Runtime
    from backend.world import read_manifest

    torch.set_num_threads(a.threads)
    rt = Runtime(load_settings(world="mini", data_dir=a.data_dir))
    prompts.import_bundle_prompts(rt)
    t0 = time.monotonic()
    man = read_manifest(rt.settings.bundle_dir) or {}
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def save(res: dict, done: bool = False) -> None:
        res["world"] = {**{k: man.get(k) for k in ("preset", "seed", "code_hash")},
                        "units_digest": man.get("components", {}).get("tokenizer", {})
                        .get("units_digest")}
        res["settings"] = {"rounds": a.rounds, "heldout_n": a.heldout_n, "seed": a.seed,
                           "threads": a.threads, "complete": done,
                           "total_seconds": round(time.monotonic() - t0, 1)}
        tmp = out.with_suffix(".part")
        tmp.write_text(json.dumps(res, indent=2, default=str) + "\n")
        tmp.replace(out)

    res = run(rt, a.methods, a.rounds, a.heldout_n, a.seed, not a.no_benchmarks, save)
    save(res, done=True)
    if a.plot:
        plot(res, out.with_suffix(".png"))
    print(table(res))


if __name__ == "__main__":
    main()
