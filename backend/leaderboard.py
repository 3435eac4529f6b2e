"""The numbers of the Leaderboard tab, computed from stored judgments (flagged ones excluded
everywhere; AI judgments without a value are failures and are skipped).

Sources
- "human": A/B votes and MOS ratings by people.
- "ai": AI judge scores (every judge); <judge name>: that judge only.
- "all": both.

Comparisons feeding the win rates and Bradley-Terry:
- every human A/B vote between samples of two different versions (tie = half a win each;
  both_bad is excluded and counted separately);
- from AI scores: for each prompt and each pair of versions with judged samples on it, the
  version whose samples have the higher mean score wins (equal means = tie). One comparison per
  prompt and pair, so many samples of one prompt do not count as independent evidence.

Bradley-Terry: `backend.stats` (ties as half-wins), baseline pinned at 0 (log-odds scale), a weak
ridge prior (`RIDGE`, a Gaussian with sd 10) so a version that never lost stays finite; 95 %
intervals from `rating.bootstrap_resamples` multinomial resamples of the per-pair counts. Rows are
sorted by the lower bound. A version is listed once it has `rating.leaderboard_min_votes`
judgments in the chosen source (A/B votes it is part of + its MOS ratings + its AI scores), and is
marked preliminary below `rating.leaderboard_preliminary_votes`.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from backend import queries, registry, stats
from backend.files import save_figure
from backend.rating import rater_report
from backend.runtime import Runtime
from db.schema import ASPECTS

log = logging.getLogger(__name__)

RIDGE = stats.BT_RIDGE


# --- loading ----------------------------------------------------------------------------------
def _ab_votes(rt: Runtime) -> list[queries.ABVoteRow]:
    with rt.store.read() as s:
        return queries.ab_votes(s)


def _mos(rt: Runtime) -> list[queries.MOSRow]:
    with rt.store.read() as s:
        return queries.mos_ratings(s)


def _ai(rt: Runtime, judge: str | None = None) -> list[queries.AIScore]:
    with rt.store.read() as s:
        return queries.ai_scores(s, judges=[judge] if judge else None)


def judge_names(rt: Runtime) -> list[str]:
    """Identities (`name@prompt_version`) of the judges with stored judgments: each is a
    leaderboard source of its own."""
    with rt.store.read() as s:
        return queries.ai_judges(s)


# --- comparisons ------------------------------------------------------------------------------
def ai_comparisons(ai_rows: list[tuple]) -> list[tuple[int, int, float]]:
    """(version i, version j, outcome for i) per prompt and version pair from mean AI scores."""
    per: dict[int, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for a in ai_rows:
        per[a.prompt_id][a.version_id].append(a.value)
    out = []
    for _pid, by_v in per.items():
        vids = sorted(by_v)
        means = {v: float(np.mean(by_v[v])) for v in vids}
        for a in range(len(vids)):
            for b in range(a + 1, len(vids)):
                i, j = vids[a], vids[b]
                o = 1.0 if means[i] > means[j] else 0.0 if means[i] < means[j] else 0.5
                out.append((i, j, o))
    return out


def human_comparisons(ab_rows: list[tuple]) -> tuple[list[tuple[int, int, float]], dict]:
    """A/B votes between different versions as (i, j, outcome); both_bad counts per version."""
    out, both_bad = [], defaultdict(int)
    for v in ab_rows:
        choice, va, vb = v.choice, v.version_a, v.version_b
        if va == vb:
            continue
        if choice == "both_bad":
            both_bad[va] += 1
            both_bad[vb] += 1
            continue
        out.append((va, vb, {"A": 1.0, "B": 0.0, "tie": 0.5}[choice]))
    return out, both_bad


# --- the table --------------------------------------------------------------------------------
def _est(e: stats.Estimate | None) -> dict | None:
    if e is None or e.n == 0:
        return None
    return {"value": e.value, "low": e.low, "high": e.high, "n": e.n}


def leaderboard(rt: Runtime, source: str = "all", seed: int = 0) -> dict[str, Any]:
    """Per model version: win rate vs baseline, Bradley-Terry strength with bootstrap CI, MOS
    per aspect, AI judge mean score, number of judgments. See the module docstring."""
    cfg = rt.settings.rating
    versions = registry.list_versions(rt)
    base = next((v for v in versions if v.kind == "baseline"), None)
    human = source in ("all", "human")
    use_ai = source != "human"
    judge = None if source in ("all", "human", "ai") else source
    if judge and judge not in judge_names(rt):
        raise ValueError(f"unknown source {source!r}: use all, human, ai or a judge name "
                         f"({', '.join(judge_names(rt)) or 'none judged yet'})")

    ab = _ab_votes(rt) if human else []
    mos = _mos(rt) if human else []
    ai = _ai(rt, judge) if use_ai else []
    comps, both_bad = human_comparisons(ab)
    comps += ai_comparisons(ai)

    n_judg: dict[int, int] = defaultdict(int)
    for v in ab:
        n_judg[v.version_a] += 1
        if v.version_b != v.version_a:
            n_judg[v.version_b] += 1
    for m in mos:
        n_judg[m.version_id] += 1
    for a in ai:
        n_judg[a.version_id] += 1

    # Bradley-Terry over versions that took part in any comparison
    bt: dict[int, dict] = {}
    in_graph = sorted({c[0] for c in comps} | {c[1] for c in comps})
    if len(in_graph) >= 2:
        index = {vid: k for k, vid in enumerate(in_graph)}
        arr = np.array(comps, dtype=float)
        wins, ties = stats.counts_from_votes(
            np.array([index[int(v)] for v in arr[:, 0]]),
            np.array([index[int(v)] for v in arr[:, 1]]), arr[:, 2], len(in_graph))
        ref = index.get(base.id) if base else None
        res = stats.bt_bootstrap(wins, ties, reference=ref, ridge=RIDGE,
                                 resamples=cfg.bootstrap_resamples, seed=seed)
        for vid, row in zip(in_graph, res.rows(), strict=True):
            bt[vid] = row

    # win rate vs baseline
    wr: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])
    if base:
        for i, j, o in comps:
            if base.id not in (i, j) or i == j:
                continue
            other, o_other = (j, 1 - o) if i == base.id else (i, o)
            k = 0 if o_other == 1.0 else 1 if o_other == 0.0 else 2
            wr[other][k] += 1

    mos_by: dict[tuple[int, str], list[float]] = defaultdict(list)
    for m in mos:
        mos_by[(m.version_id, m.aspect)].append(m.value)
    ai_by: dict[int, list[float]] = defaultdict(list)
    for a in ai:
        ai_by[a.version_id].append(a.value)

    rows, unlisted = [], []
    for v in versions:
        vid = v.id
        n = n_judg.get(vid, 0)
        if n < cfg.leaderboard_min_votes:
            unlisted.append({"version": v.name, "n_judgments": n})
            continue
        w, lo_, t = wr.get(vid, [0, 0, 0])
        row = {
            "version": v.name, "version_id": vid, "kind": v.kind,
            "round_index": v.round_index, "n_judgments": n,
            "preliminary": n < cfg.leaderboard_preliminary_votes,
            "win_rate": None if base is None or vid == base.id else {
                **(_est(stats.win_rate(w, lo_, t)) or {"value": None, "low": None,
                                                       "high": None, "n": 0}),
                "wins": w, "losses": lo_, "ties": t,
            },
            "both_bad": both_bad.get(vid, 0),
            "bt": bt.get(vid),
            "mos": {a: _est(stats.mean_t(mos_by[(vid, a)])) for a in ASPECTS
                    if mos_by.get((vid, a))},
            "ai_score": _est(stats.mean_t(ai_by[vid])) if ai_by.get(vid) else None,
        }
        rows.append(row)

    def key(r):
        b = r["bt"]
        lo = b["low"] if b and b["low"] is not None else -np.inf
        return (-lo, -(b["value"] if b else -np.inf), r["version"])

    rows.sort(key=key)
    return {
        "source": source, "baseline": base.name if base else None, "rows": rows,
        "unlisted": unlisted, "n_comparisons": len(comps),
        "n_ab_votes": len(ab), "n_mos": len(mos), "n_ai": len(ai),
        "min_votes": cfg.leaderboard_min_votes,
        "preliminary_votes": cfg.leaderboard_preliminary_votes,
        "bootstrap_resamples": cfg.bootstrap_resamples,
        "method": ("Bradley-Terry (ties as half-wins, baseline = 0, log-odds), 95% CI from "
                   "multinomial resampling of per-pair outcome counts; win rate: ties half, "
                   "both_bad excluded, Wilson 95% CI; MOS and AI score: mean, t 95% CI."),
    }


# --- agreement --------------------------------------------------------------------------------
def _round_score(x: float) -> int:
    return int(min(5, max(1, np.floor(x + 0.5))))


def agreement(rt: Runtime) -> dict[str, Any]:
    """AI judge vs humans on samples rated by both (per judge and MOS aspect: Cohen's kappa on
    rounded scores, unweighted and quadratic, and Spearman's rho on the per-sample means), and
    inter-rater agreement among humans (Krippendorff's alpha per MOS aspect, ordinal and
    interval; nominal alpha and Fleiss' kappa on A/B votes of the same sample pair)."""
    mos = _mos(rt)
    ai = _ai(rt)
    human_mean: dict[tuple[str, int], list[float]] = defaultdict(list)
    for m in mos:
        human_mean[(m.aspect, m.sample_id)].append(m.value)
    ai_mean: dict[tuple[str, int], list[float]] = defaultdict(list)
    for a in ai:
        ai_mean[(a.judge, a.sample_id)].append(a.value)
    judges = sorted({j for j, _ in ai_mean})
    aspects = sorted({a for a, _ in human_mean})
    ai_vs_human = []
    for j in judges:
        for a in aspects:
            sids = sorted(s for (jj, s) in ai_mean if jj == j and (a, s) in human_mean)
            if not sids:
                continue
            x = [float(np.mean(ai_mean[(j, s)])) for s in sids]
            y = [float(np.mean(human_mean[(a, s)])) for s in sids]
            rx, ry = [_round_score(v) for v in x], [_round_score(v) for v in y]
            rho, p = stats.spearman(x, y)
            ai_vs_human.append({
                "judge": j, "aspect": a, "n_samples": len(sids),
                "cohen_kappa": stats.cohen_kappa(rx, ry),
                "cohen_kappa_quadratic": stats.cohen_kappa(rx, ry, "quadratic"),
                "spearman": rho, "spearman_p": p,
                "exact_agreement": float(np.mean(np.array(rx) == np.array(ry))),
            })

    inter = []
    for a in aspects:
        raters = sorted({r.user_id for r in mos if r.aspect == a})
        sids = sorted({r.sample_id for r in mos if r.aspect == a})
        ri, si = {u: k for k, u in enumerate(raters)}, {s: k for k, s in enumerate(sids)}
        m = np.full((len(raters), len(sids)), np.nan)
        for r in mos:
            if r.aspect == a:
                m[ri[r.user_id], si[r.sample_id]] = r.value
        multi = int(((~np.isnan(m)).sum(axis=0) >= 2).sum())
        inter.append({
            "what": f"mos:{a}", "raters": len(raters), "units_with_2plus": multi,
            "alpha_ordinal": stats.krippendorff_alpha(m, "ordinal"),
            "alpha_interval": stats.krippendorff_alpha(m, "interval"),
        })
    ab = _ab_votes(rt)
    if ab:
        codes = {"A": 0.0, "B": 1.0, "tie": 2.0, "both_bad": 3.0}
        flip = {"A": "B", "B": "A", "tie": "tie", "both_bad": "both_bad"}
        units: dict[tuple[int, int], dict[int, str]] = defaultdict(dict)
        for v in ab:
            sa, sb = v.sample_a, v.sample_b
            key, c = ((sa, sb), v.choice) if sa < sb else ((sb, sa), flip[v.choice])
            units[key][v.user_id] = c
        raters = sorted({u for d in units.values() for u in d})
        ri = {u: k for k, u in enumerate(raters)}
        keys = sorted(units)
        m = np.full((len(raters), len(keys)), np.nan)
        table = np.zeros((len(keys), 4))
        for k, key in enumerate(keys):
            for uid, c in units[key].items():
                m[ri[uid], k] = codes[c]
                table[k, int(codes[c])] += 1
        counts = table.sum(axis=1)
        multi = counts >= 2
        fleiss = None
        if multi.any() and np.all(counts[multi] == counts[multi][0]):
            fleiss = stats.fleiss_kappa(table[multi])
        inter.append({
            "what": "ab", "raters": len(raters), "units_with_2plus": int(multi.sum()),
            "alpha_nominal": stats.krippendorff_alpha(m, "nominal"), "fleiss_kappa": fleiss,
        })
    return {"ai_vs_human": ai_vs_human, "inter_rater": inter}


def rater_quality(rt: Runtime) -> list[dict]:
    """Per rater: gold-task accuracy with a Wilson 95% CI (from backend.rating's QC record)."""
    out = []
    for r in rater_report(rt):
        ok, n = (int(x) for x in str(r.get("gold", "0/0")).split("/"))
        out.append({**r, "gold_ci": _est(stats.gold_accuracy(ok, n)) if n else None})
    return out


# --- per-round curves -------------------------------------------------------------------------
def round_curves(rt: Runtime, out_dir: Path | None = None, split: str = "dev") -> list[Path]:
    """PNG plots of the judge score and the benchmark accuracies per training round (latest
    eval_results of each version on `split`, 95% CIs as error bars)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from backend.loop.evaluate import latest_results

    out_dir = Path(out_dir) if out_dir else rt.settings.data_dir / "reports" / "curves"
    out_dir.mkdir(parents=True, exist_ok=True)
    versions = {v.id: v for v in registry.list_versions(rt)}
    latest = latest_results(rt, split)
    panels = {
        "judge_score.png": ("judge score (mean, 95% CI)",
                            lambda b, m: b.startswith("judge:") and m == "mean_score"),
        "accuracy.png": ("benchmark accuracy (95% CI)",
                         lambda b, m: not b.startswith("judge:") and m == "accuracy"),
    }
    paths = []
    for fname, (title, want) in panels.items():
        series: dict[str, list[tuple[int, float, float, float]]] = defaultdict(list)
        for (vid, bench, metric), r in latest.items():
            if vid not in versions or not want(bench, metric):
                continue
            lo = r["ci_low"] if r["ci_low"] is not None else r["value"]
            hi = r["ci_high"] if r["ci_high"] is not None else r["value"]
            series[bench].append((versions[vid].round_index, r["value"], lo, hi))
        fig, ax = plt.subplots(figsize=(5, 3.4))
        for k, (bench, pts) in enumerate(sorted(series.items())):
            pts.sort()
            x = np.array([p[0] for p in pts]) + 0.04 * (k - len(series) / 2)
            y = np.array([p[1] for p in pts])
            err = [y - np.array([p[2] for p in pts]), np.array([p[3] for p in pts]) - y]
            ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=bench)
        if not series:
            ax.text(0.5, 0.5, "no evaluations yet", ha="center", va="center",
                    transform=ax.transAxes)
        ax.set_xlabel("round (0 = baseline)")
        ax.set_title(title, fontsize=9)
        ax.xaxis.get_major_locator().set_params(integer=True)
        if series:
            ax.legend(fontsize=7)
        fig.tight_layout()
        save_figure(fig, out_dir / fname, dpi=110)
        paths.append(out_dir / fname)
    return paths
