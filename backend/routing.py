"""Which rating task a rater gets next (`rating.routing`): where a human vote buys the most.

- `random`: any open task.
- `balanced`: the task with the fewest assignments (ties at random): even coverage.
- `active`: tasks ordered by the weighted count of these reasons (`rating.active_weights`;
  disagreement counts double by default), then as balanced:
  1. the AI judges disagree on it (their sides on an A/B pair differ: one prefers A, another B
     or a tie; for a single clip their scores are 2 or more apart);
  2. near a selection threshold: the clip pair selection would take as a prompt's chosen
     (its version's best by mean AI score) is within `rating.active_threshold_margin` of
     `selection.chosen_min`, or the one it would take as rejected (the worst) is that close
     to `rejected_max`: a vote decides whether the pair is made;
  3. a close race: the two versions' human Bradley-Terry 95% intervals overlap, or one has
     none yet (the Leaderboard cannot order them);
  4. few votes: a version has fewer than `rating.leaderboard_preliminary_votes` counted human
     judgments.
  A reason stops counting once the task has `rating.active_max_votes` assignments (a settled
  majority: the next votes are worth more elsewhere), and a share `rating.active_coverage` of
  assignments is still made the balanced way, so every task keeps being covered. The gold/trap
  share and "never the same task twice to a rater" are applied before any policy
  (`backend.rating.next_task`).

The signals are computed from the store and kept until the store changes (counts of
judgments, tasks and versions key the cache) and `REFRESH_S` have passed, so a vote does not
wait for a Bradley-Terry bootstrap: most requests cost three counts.
"""

from __future__ import annotations

import random
import threading
import time
import weakref
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from sqlalchemy import func, select

from backend import queries, stats
from backend.config import ActiveWeights
from backend.runtime import Runtime
from db.schema import Judgment, ModelVersion, RatingTask, Sample

RACE_RESAMPLES = 300
"""Bootstrap resamples for the race signal: enough to see whether two intervals overlap."""
REFRESH_S = 10.0
"""Signals this young are reused even after new votes (a few votes move no race)."""


@dataclass(frozen=True)
class Signals:
    judges_disagree: frozenset[int]
    """task ids"""
    near_threshold: frozenset[int]
    close_pairs: frozenset[tuple[int, int]]
    """unordered version pairs whose intervals overlap (or are unknown)"""
    few_votes: frozenset[int]
    """version ids"""
    task_versions: dict[int, tuple[int, int | None]]


_cache: weakref.WeakKeyDictionary[Runtime, tuple[tuple, float, Signals]] = \
    weakref.WeakKeyDictionary()
_lock = threading.Lock()


def priority(sig: Signals, task_id: int, w: ActiveWeights) -> float:
    """The weighted count of the four reasons that hold for a task."""
    va, vb = sig.task_versions.get(task_id, (None, None))
    race = vb is not None and va != vb and (min(va, vb), max(va, vb)) in sig.close_pairs
    few = va in sig.few_votes or (vb is not None and vb in sig.few_votes)
    return (w.disagree * (task_id in sig.judges_disagree)
            + w.threshold * (task_id in sig.near_threshold) + w.race * race
            + w.few_votes * few)


def order(rt: Runtime, s, candidates: list[tuple[int, int]], rng: random.Random) -> list[int]:
    """Candidate (task id, load) pairs in the order the configured policy hands them out."""
    policy = rt.settings.rating.routing
    jitter = {tid: rng.random() for tid, _ in candidates}
    if policy == "random":
        return sorted(jitter, key=jitter.get)
    if policy == "balanced" or rng.random() < rt.settings.rating.active_coverage:
        return [t for t, _ in sorted(candidates, key=lambda c: (c[1], jitter[c[0]]))]
    sig = signals(rt, s)
    cap, weights = rt.settings.rating.active_max_votes, rt.settings.rating.active_weights

    def key(c):
        tid, load = c
        return (-(priority(sig, tid, weights) if load < cap else 0.0), load, jitter[tid])

    return [t for t, _ in sorted(candidates, key=key)]


def signals(rt: Runtime, s) -> Signals:
    key = (s.scalar(select(func.count()).select_from(Judgment)),
           s.scalar(select(func.count()).select_from(RatingTask)),
           s.scalar(select(func.count()).select_from(ModelVersion)))
    now = time.monotonic()
    with _lock:
        hit = _cache.get(rt)
        if hit and (hit[0] == key or now - hit[1] < REFRESH_S):
            return hit[2]
    sig = _compute(rt, s)
    with _lock:
        _cache[rt] = (key, now, sig)
    return sig


def _compute(rt: Runtime, s) -> Signals:
    tasks = s.execute(select(RatingTask.id, RatingTask.sample_a_id, RatingTask.sample_b_id)
                      .where(RatingTask.active)).all()
    version_of = dict(s.execute(select(Sample.id, Sample.model_version_id)).all())
    scores: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for a in queries.ai_scores(s):
        scores[a.sample_id][a.judge].append(a.value)
    mean = {sid: {j: float(np.mean(v)) for j, v in by.items()} for sid, by in scores.items()}
    near_ids = _near_threshold(rt, s, {sid: float(np.mean(list(m.values())))
                                      for sid, m in mean.items() if m})

    def near(sid: int) -> bool:
        return sid in near_ids

    disagree, near_t, task_versions = set(), set(), {}
    for tid, a, b in tasks:
        task_versions[tid] = (version_of.get(a), version_of.get(b) if b else None)
        if near(a) or (b is not None and near(b)):
            near_t.add(tid)
        ma, mb = mean.get(a, {}), mean.get(b, {}) if b else {}
        if b is None:
            if len(ma) >= 2 and max(ma.values()) - min(ma.values()) >= 2:
                disagree.add(tid)
            continue
        sides = {int(np.sign(ma[j] - mb[j])) for j in set(ma) & set(mb)}
        if len(sides) >= 2:
            disagree.add(tid)
    close, few = _race(rt, s)
    return Signals(frozenset(disagree), frozenset(near_t), close, few, task_versions)


def _near_threshold(rt: Runtime, s, mean: dict[int, float]) -> set[int]:
    """Clips that pair selection would take as a prompt's chosen (best of its version) or
    rejected (worst) whose mean AI score is within the margin of that threshold."""
    sel, margin = rt.settings.selection, rt.settings.rating.active_threshold_margin
    groups: dict[tuple[int, int], list[tuple[float, int]]] = defaultdict(list)
    for sid, pid, vid in s.execute(select(Sample.id, Sample.prompt_id, Sample.model_version_id)
                                   .where(Sample.id.in_(list(mean)))):
        groups[(pid, vid)].append((mean[sid], sid))
    out = set()
    for clips in groups.values():
        if len(clips) < 2:
            continue
        best, worst = max(clips), min(clips)
        if abs(best[0] - sel.chosen_min) <= margin:
            out.add(best[1])
        if abs(worst[0] - sel.rejected_max) <= margin:
            out.add(worst[1])
    return out


def _race(rt: Runtime, s) -> tuple[frozenset[tuple[int, int]], frozenset[int]]:
    """Version pairs whose human Bradley-Terry intervals overlap or are unknown, and versions
    with few counted human judgments (the Leaderboard's rules, `backend.leaderboard`)."""
    versions = sorted(s.scalars(select(ModelVersion.id)))
    base = s.scalar(select(ModelVersion.id).where(ModelVersion.kind == "baseline")
                    .order_by(ModelVersion.id))
    votes = queries.ab_votes(s)
    n = defaultdict(int)
    for v in votes:
        n[v.version_a] += 1
        if v.version_b != v.version_a:
            n[v.version_b] += 1
    for m in queries.mos_ratings(s):
        n[m.version_id] += 1
    few = frozenset(v for v in versions if n[v] < rt.settings.rating.leaderboard_preliminary_votes)
    comps = [(v.version_a, v.version_b, {"A": 1.0, "B": 0.0, "tie": 0.5}[v.choice])
             for v in votes if v.version_a != v.version_b and v.choice != "both_bad"]
    interval: dict[int, tuple[float, float]] = {}
    in_graph = sorted({c[0] for c in comps} | {c[1] for c in comps})
    if len(in_graph) >= 2:
        index = {vid: k for k, vid in enumerate(in_graph)}
        arr = np.array(comps, dtype=float)
        wins, ties = stats.counts_from_votes(
            np.array([index[int(x)] for x in arr[:, 0]]),
            np.array([index[int(x)] for x in arr[:, 1]]), arr[:, 2], len(in_graph))
        res = stats.bt_bootstrap(wins, ties, reference=index.get(base), ridge=stats.BT_RIDGE,
                                 resamples=RACE_RESAMPLES, seed=0)
        for vid, row in zip(in_graph, res.rows(), strict=True):
            interval[vid] = (row["low"], row["high"])
    close = set()
    for i, a in enumerate(versions):
        for b in versions[i + 1:]:
            ia, ib = interval.get(a), interval.get(b)
            if ia is None or ib is None or (ia[0] <= ib[1] and ib[0] <= ia[1]):
                close.add((a, b))
    return frozenset(close), few
