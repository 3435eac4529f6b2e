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
intervals from `rating.bootstrap_resamples` multinomial resamples of the per-pair counts. Shown on
the arenas' Elo-like scale (`score`: baseline = 1000, 400 points = 10:1 odds). Rows are sorted by
the lower bound; the rank is shared where intervals overlap (`stats.ci_ranks`). MOS and AI score
intervals are cut to the 1-5 scale. A version is listed once it has `rating.leaderboard_min_votes`
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
SCALE = (1.0, 5.0)
"""The rating scale of MOS and AI scores (db/schema's value range)."""
ELO_BASE, ELO_PER_NAT = 1000.0, 400.0 / np.log(10.0)
"""The readable BT scale: baseline at 1000, +400 points = 10 times the odds of winning."""


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


def elo(bt: dict | None) -> dict | None:
    """A BT row (log-odds) on the readable scale."""
    if bt is None:
        return None
    f = lambda x: None if x is None else float(ELO_BASE + ELO_PER_NAT * x)  # noqa: E731
    return {"value": f(bt["value"]), "low": f(bt["low"]), "high": f(bt["high"]), "n": bt["n"]}


def win_matrix(comps: list[tuple[int, int, float]], order: list[int]) -> dict[str, list]:
    """Row version's share of wins (ties half) against the column version, and the number of
    comparisons behind each share (None where the two never met), over the versions in `order`."""
    k = {vid: i for i, vid in enumerate(order)}
    won = np.zeros((len(order), len(order)))
    n = np.zeros((len(order), len(order)), dtype=int)
    for i, j, o in comps:
        if i in k and j in k and i != j:
            a, b = k[i], k[j]
            won[a, b] += o
            won[b, a] += 1 - o
            n[a, b] += 1
            n[b, a] += 1
    share = [[float(won[a, b] / n[a, b]) if n[a, b] else None for b in range(len(order))]
             for a in range(len(order))]
    return {"share": share, "n": n.tolist()}


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

    names = {v.id: v.name for v in versions}
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
            "round_index": v.round_index, "parent": names.get(v.parent_id),
            "n_judgments": n,
            "preliminary": n < cfg.leaderboard_preliminary_votes,
            "win_rate": None if base is None or vid == base.id else {
                **(_est(stats.win_rate(w, lo_, t)) or {"value": None, "low": None,
                                                       "high": None, "n": 0}),
                "wins": w, "losses": lo_, "ties": t,
            },
            "both_bad": both_bad.get(vid, 0),
            "bt": bt.get(vid), "score": elo(bt.get(vid)),
            "mos": {a: _est(stats.mean_t(mos_by[(vid, a)], bounds=SCALE)) for a in ASPECTS
                    if mos_by.get((vid, a))},
            "ai_score": _est(stats.mean_t(ai_by[vid], bounds=SCALE)) if ai_by.get(vid)
            else None,
        }
        rows.append(row)

    def key(r):
        b = r["bt"]
        lo = b["low"] if b and b["low"] is not None else -np.inf
        return (-lo, -(b["value"] if b else -np.inf), r["version"])

    rows.sort(key=key)
    ranked = [r for r in rows if r["bt"]]
    for r, rank in zip(ranked, stats.ci_ranks([r["bt"]["value"] for r in ranked],
                                              [r["bt"]["low"] for r in ranked],
                                              [r["bt"]["high"] for r in ranked]), strict=True):
        r["rank"] = rank
    for r in rows:
        r.setdefault("rank", None)
    order = [r["version_id"] for r in ranked]
    return {
        "source": source, "baseline": base.name if base else None, "rows": rows,
        "matrix": {"versions": [names[v] for v in order], **win_matrix(comps, order)},
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
FAULTS = ("off_topic", "wrong_pronoun", "other_name", "not_fluent", "broken_cause")


def fault_counts(evidence: list[dict]) -> dict[str, int]:
    """How many continuations have each fault the mini judge looks for (its evidence, the
    judgments' `raw`), out of `n`; and how many are content-free (intelligible, but no topic
    word at all: "she smiled and went home" earns up to 4 of 5 from that judge). Empty for
    judges whose evidence is not the mini judge's."""
    ev = [e for e in evidence if isinstance(e, dict) and "on_topic" in e]
    if not ev:
        return {}
    intelligible = [e for e in ev if e["n_words"] >= 3 and e["n_known"] >= max(3, e["n_words"] / 2)]
    return {
        "n": len(ev),
        "content_free": sum(e["on_topic"] + e["off_topic"] == 0 for e in intelligible),
        "off_topic": sum(e["off_topic"] > e["on_topic"] for e in ev),
        "wrong_pronoun": sum(e["wrong_pronouns"] > 0 for e in ev),
        "other_name": sum(bool(e["other_names"]) for e in ev),
        "not_fluent": sum(e["fluency"] < 0.7 for e in ev),
        "broken_cause": sum(bool(e["broken_cause"]) for e in ev),
        "unintelligible": len(ev) - len(intelligible),
    }


def judge_faults(evidence: list[dict]) -> dict:
    """`fault_counts` as shares of n (4 decimals), n itself kept."""
    c = fault_counts(evidence)
    return {k: v if k == "n" else round(v / c["n"], 4) for k, v in c.items()}


def judges_by_role(rt: Runtime) -> dict[str, bool]:
    """Configured judge name -> whether training learns from it (`trains`)."""
    return {j.name: j.trains for j in rt.settings.models.judges}


def judge_label(rt: Runtime, identity: str) -> str:
    """"mini-judge@mini-v1 (trains)" / "... (evaluation only)": which judge a score is by."""
    trains = judges_by_role(rt).get(identity.split("@", 1)[0])
    role = "" if trains is None else " (trains)" if trains else " (evaluation only)"
    return identity + role


Point = tuple[int, int, float, float | None, float | None]
"""(version id, round index, value, CI low, CI high)"""


def fault_rates(rt: Runtime, split: str = "dev") -> dict[int, dict[str, stats.Estimate]]:
    """Per version: the share of its `split` continuations with each fault of the training
    judges' evidence, with Wilson 95% CIs."""
    import json

    trains = [name for name, t in judges_by_role(rt).items() if t]
    with rt.store.read() as s:
        rows = queries.ai_evidence(s, trains, split)
    evidence: dict[int, list[dict]] = defaultdict(list)
    for vid, raw in rows:
        try:
            evidence[vid].append(json.loads(raw))
        except ValueError:
            continue
    out = {}
    for vid, ev in evidence.items():
        c = fault_counts(ev)
        if c:
            out[vid] = {k: stats.wilson(c[k], c["n"]) for k in FAULTS}
    return out


def round_series(rt: Runtime, split: str = "dev") -> dict[str, dict[str, list[Point]]]:
    """The per-round curves' data, panel -> series label -> points ordered by round: "judge
    score" (every judge, labelled with its role), "fault rate" (training judge) and "benchmark
    accuracy", from the latest eval_results of each version on `split`."""
    from backend.loop.evaluate import latest_results

    versions = {v.id: v for v in registry.list_versions(rt)}
    panels: dict[str, dict[str, list[Point]]] = {
        "judge score": defaultdict(list), "fault rate": defaultdict(list),
        "benchmark accuracy": defaultdict(list)}
    for (vid, bench, metric), r in latest_results(rt, split).items():
        if vid not in versions:
            continue
        if bench.startswith("judge:") and metric == "mean_score":
            panel, label = "judge score", judge_label(rt, bench[len("judge:"):])
        elif not bench.startswith("judge:") and metric == "accuracy":
            panel, label = "benchmark accuracy", bench
        else:
            continue
        panels[panel][label].append((vid, versions[vid].round_index, r["value"], r["ci_low"],
                                     r["ci_high"]))
    for vid, faults in fault_rates(rt, split).items():
        if vid in versions:
            for name, e in faults.items():
                panels["fault rate"][name.replace("_", " ")].append(
                    (vid, versions[vid].round_index, e.value, e.low, e.high))
    return {name: {k: sorted(v, key=lambda p: (p[1], p[0])) for k, v in sorted(series.items())}
            for name, series in panels.items()}


def round_curves(rt: Runtime, out_dir: Path | None = None, split: str = "dev") -> list[Path]:
    """The per-round curves (`plots.round_curves`) as PNG files, one per panel."""
    from backend import plots

    out_dir = Path(out_dir) if out_dir else rt.settings.data_dir / "reports" / "curves"
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, series in round_series(rt, split).items():
        path = out_dir / f"{name.replace(' ', '_')}.png"
        save_figure(plots.round_curves(name, series), path, dpi=110)
        paths.append(path)
    return paths
