"""How far each AI judge can be trusted: its measured agreement with the human majority, per
judge identity (`name@prompt_version`) and per round, and which judges a round's pairs may use.

Items (only counted judgments, `backend.queries`):
- "ab": an unordered pair of samples with a human A/B majority (more decisive votes for one
  side; a draw or only tie/both_bad votes is no majority). The judge's side is its pairwise
  verdict when it made one (`backend.loop.judge.judge_pairs`), else the order of its mean
  scores of the two samples (equal = tie). Cohen's kappa on the sides; Spearman's rho between
  the judge's margin and the human share of votes for the first sample.
- "mos": a sample with human meaningfulness ratings. Quadratic-weighted Cohen's kappa between
  the judge's rounded mean score and the rounded median human rating (the majority view on an
  ordinal scale); Spearman's rho between the judge's mean and the human mean.

Intervals: percentile bootstrap over items (`backend.stats`). A round's figures use the items
whose newest sample comes from a version of that round (round 0 = the baseline), so a judge
that stops agreeing with people on trained outputs (the judge being gamed) shows up.

Gate (`judges_for_pairs`): with pair source `both` or `auto` a training judge is used only when
its `judging.agreement_metric` on `judging.agreement_on` items over all rounds reaches
`judging.min_agreement` with at least `judging.min_overlap` items; `both` then averages the
used judges equally, `auto` weighs each by its agreement. Source `ai` uses every training judge
(the paper's setting) and still records their agreement. Each round stores these records.

Under `rating.routing = "active"` people rate more of the items judges disagree on, which are
harder: measured agreement is then lower than on a random sample of items, so the gate errs on
the side of not trusting a judge.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from sqlalchemy import select

from backend import queries, registry, stats
from backend.runtime import Runtime
from db.schema import MEANING_ASPECTS, Judgment

ALL_ROUNDS = None


@dataclass(frozen=True)
class Agreement:
    """One judge's agreement with the human majority on one kind of item."""

    n: int
    kappa: stats.Estimate | None
    spearman: stats.Estimate | None

    def metric(self, name: str) -> stats.Estimate | None:
        return self.kappa if name == "kappa" else self.spearman


@dataclass(frozen=True)
class JudgeTrust:
    judge: str
    """identity, `name@prompt_version`"""
    round_index: int | None
    """None = all rounds"""
    ab: Agreement
    mos: Agreement


@dataclass(frozen=True)
class JudgeUse:
    """Whether a round's pairs use a training judge, with what weight, and why."""

    name: str
    judge: str
    used: bool
    weight: float
    reason: str
    metric: str
    on: str
    agreement: dict[str, Any] | None
    """the gating figure at the time: value, low, high, n (None when undefined)"""
    n_items: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- items ------------------------------------------------------------------------------------
def _round_score(x: float) -> int:
    return int(min(5, max(1, np.floor(x + 0.5))))


def _load(rt: Runtime) -> tuple[list, list, list, list, dict[int, int]]:
    with rt.store.read() as s:
        ab = queries.ab_votes(s)
        mos = queries.mos_ratings(s, aspects=MEANING_ASPECTS)
        ai = queries.ai_scores(s)
        verdicts = queries.ai_pair_verdicts(s)
    rounds = {v.id: v.round_index for v in registry.list_versions(rt)}
    return ab, mos, ai, verdicts, rounds


def ab_items(ab_rows) -> dict[tuple[int, int], tuple[str, float, int]]:
    """(low sample id, high sample id) -> (human majority "lo"/"hi", share of decisive votes
    for lo, the two samples' version ids) for pairs with a majority."""
    tally: dict[tuple[int, int], list[int]] = defaultdict(lambda: [0, 0])
    version: dict[tuple[int, int], int] = {}
    for v in ab_rows:
        if v.choice not in ("A", "B") or v.sample_a == v.sample_b:
            continue
        key = (min(v.sample_a, v.sample_b), max(v.sample_a, v.sample_b))
        winner = v.sample_a if v.choice == "A" else v.sample_b
        tally[key][0 if winner == key[0] else 1] += 1
        version[key] = (v.version_a, v.version_b)
    out = {}
    for key, (lo, hi) in tally.items():
        if lo != hi:
            out[key] = ("lo" if lo > hi else "hi", lo / (lo + hi), version[key])
    return out


def _judge_side(key, scores: dict[int, float], verdict: str | None) -> tuple[str, float] | None:
    """The judge's side on an A/B item and its margin for lo: its pairwise verdict, else the
    order of its scores; None when it judged neither way."""
    if verdict is not None:
        return verdict, {"lo": 1.0, "hi": -1.0, "tie": 0.0}[verdict]
    lo, hi = key
    if lo not in scores or hi not in scores:
        return None
    d = scores[lo] - scores[hi]
    return ("lo" if d > 0 else "hi" if d < 0 else "tie"), d


def _agreement(x_labels, y_labels, x_values, y_values, weights, resamples, seed) -> Agreement:
    return Agreement(len(x_labels),
                     stats.kappa_bootstrap(x_labels, y_labels, weights, resamples, seed=seed),
                     stats.spearman_bootstrap(x_values, y_values, resamples, seed=seed))


def judge_trust(rt: Runtime, seed: int = 0) -> list[JudgeTrust]:
    """Every judge's agreement with the human majority: over all rounds, then per round that
    has items. See the module docstring."""
    ab, mos, ai, verdicts, version_round = _load(rt)
    resamples = rt.settings.judging.bootstrap_resamples
    items = ab_items(ab)
    scores: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    version_of: dict[int, int] = {}
    for a in ai:
        scores[a.judge][a.sample_id].append(a.value)
        version_of[a.sample_id] = a.version_id
    human: dict[int, list[float]] = defaultdict(list)
    for m in mos:
        human[m.sample_id].append(m.value)
        version_of[m.sample_id] = m.version_id
    pair_verdict: dict[str, dict[tuple[int, int], str]] = defaultdict(dict)
    for v in verdicts:
        pair_verdict[v.judge][v.key] = v.side
    judges = sorted(set(scores) | set(pair_verdict))

    def round_of_item(key) -> int:
        return max(version_round.get(v, 0) for v in items[key][2])

    out = []
    for j in judges:
        mean = {sid: float(np.mean(v)) for sid, v in scores[j].items()}
        ab_rows = []  # (round, judge side, human side, judge margin, human share)
        for key, (side, share, _) in sorted(items.items()):
            got = _judge_side(key, mean, pair_verdict[j].get(key))
            if got is not None:
                ab_rows.append((round_of_item(key), got[0], side, got[1], share))
        mos_rows = []  # (round, judge label, human label, judge mean, human mean)
        for sid in sorted(set(mean) & set(human)):
            h = human[sid]
            mos_rows.append((version_round.get(version_of[sid], 0), _round_score(mean[sid]),
                             _round_score(float(np.median(h))), mean[sid], float(np.mean(h))))
        rounds = sorted({r[0] for r in ab_rows} | {r[0] for r in mos_rows})
        for rnd in [ALL_ROUNDS, *rounds]:
            a = [r for r in ab_rows if rnd is None or r[0] == rnd]
            m = [r for r in mos_rows if rnd is None or r[0] == rnd]
            out.append(JudgeTrust(
                j, rnd,
                _agreement([r[1] for r in a], [r[2] for r in a], [r[3] for r in a],
                           [r[4] for r in a], None, resamples, seed),
                _agreement([r[1] for r in m], [r[2] for r in m], [r[3] for r in m],
                           [r[4] for r in m], "quadratic", resamples, seed),
            ))
    return out


# --- the gate ---------------------------------------------------------------------------------
def _est(e: stats.Estimate | None) -> dict[str, Any] | None:
    return None if e is None else {"value": e.value, "low": e.low, "high": e.high, "n": e.n}


def judges_for_pairs(rt: Runtime, source: str) -> list[JudgeUse]:
    """Which training judges (`trains = true`) a round with pair `source` uses, with weights and
    the reason. See the module docstring."""
    cfg = rt.settings.judging
    overall = {t.judge: t for t in judge_trust(rt) if t.round_index is ALL_ROUNDS}
    out = []
    for jc in rt.settings.models.judges:
        if not jc.trains:
            continue
        jd = rt.judge(jc.name)
        ident = queries.judge_identity(jd.name, jd.prompt_version)
        t = overall.get(ident)
        agree = getattr(t, cfg.agreement_on) if t else Agreement(0, None, None)
        est = agree.metric(cfg.agreement_metric)
        what = f"{cfg.agreement_metric} on {cfg.agreement_on} items"
        common = dict(name=jc.name, judge=ident, metric=cfg.agreement_metric,
                      on=cfg.agreement_on, agreement=_est(est), n_items=agree.n)
        if source == "ai":
            out.append(JudgeUse(used=True, weight=1.0, reason="source ai: every training "
                                "judge, agreement not checked", **common))
        elif agree.n < cfg.min_overlap:
            out.append(JudgeUse(used=False, weight=0.0, reason=(
                f"only {agree.n} item(s) rated by people too, need {cfg.min_overlap}"),
                **common))
        elif est is None:
            out.append(JudgeUse(used=False, weight=0.0, reason=(
                f"{what} undefined (no variation in the labels)"), **common))
        elif est.value < cfg.min_agreement or est.value <= 0:
            out.append(JudgeUse(used=False, weight=0.0, reason=(
                f"{what} {est.value:.3g} below the minimum {cfg.min_agreement:.3g}"),
                **common))
        else:
            weight = float(est.value) if source == "auto" else 1.0
            out.append(JudgeUse(used=True, weight=weight, reason=(
                f"{what} {est.value:.3g} >= {cfg.min_agreement:.3g}"
                + (", weighted by it" if source == "auto" else "")), **common))
    return out


# --- position bias ----------------------------------------------------------------------------
@dataclass(frozen=True)
class PositionBias:
    """How often a judge's two answers on one pair (each order once) disagree."""

    judge: str
    n: int
    """pairs answered in both orders"""
    inconsistent: stats.Estimate
    """share whose two orders disagree (Wilson 95% CI)"""
    first_position: stats.Estimate
    """share where it preferred whichever came first both times"""


def position_bias(rt: Runtime) -> list[PositionBias]:
    """Per judge identity, from its stored pairwise verdicts (`judge_pairs`)."""
    with rt.store.read() as s:
        rows = s.execute(select(Judgment.rater, Judgment.raw).where(
            Judgment.kind == "ai", Judgment.sample_b_id.is_not(None),
            Judgment.raw.is_not(None))).all()
    per: dict[str, list[dict]] = defaultdict(list)
    for rater, raw in rows:
        per[queries.identity_of_rater(rater)].append(json.loads(raw))
    return [PositionBias(j, len(v), stats.wilson(sum(not r["consistent"] for r in v), len(v)),
                         stats.wilson(sum(bool(r["first_position"]) for r in v), len(v)))
            for j, v in sorted(per.items())]
