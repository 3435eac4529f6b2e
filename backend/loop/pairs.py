"""Step 4 of the loop: preference pairs. Selection strategies are small pure functions over plain
dataclasses (no DB); `select_pairs` loads what they need from the store.

- `select_ai_pairs`: the paper's AI feedback: per prompt, chosen = highest-scored continuation,
  rejected = lowest, kept when chosen >= chosen_min and rejected <= rejected_max, after a
  repetition filter dropping continuations whose bigram auto-BLEU > autobleu_max.
- `curriculum_thresholds`: round r raises both thresholds by (r - 1) * step (paper: 3/1 -> 4/2).
- alternatives the paper compares against: `select_likelihood_pairs` (transcript likelihood under
  a smoothed word-bigram LM, or the unit LM's own mean log-prob) and `select_asr_pairs` (share of
  recognizable words in the transcript).
- human feedback: `human_ab_pairs` (majority of A/B votes, ties dropped), `human_mos_pairs`
  (best vs worst MOS per prompt, difference above a margin).
- `mix_pairs`: combine sources with weights. Every pair keeps its provenance.
- `select_pairs(rt, ...)`: a round's pairs: loads candidates and human feedback from the store
  (through backend.queries) and applies the configured strategy; with source `both`/`auto`
  only the training judges that agree with people enough (`backend.trust`), `auto` weighing
  each by its agreement.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from backend import queries
from backend.queries import judge_identity
from backend.trust import JudgeUse, judges_for_pairs
from db.schema import MEANING_ASPECTS, Prompt, Sample

if TYPE_CHECKING:
    from backend.config import SelectionConfig
    from backend.runtime import Runtime


@dataclass(frozen=True)
class Candidate:
    """One sampled continuation with whatever feedback is known about it."""

    sample_id: int
    prompt_id: int
    units: tuple[int, ...] = ()
    transcript: str | None = None
    scores: dict[str, float] = field(default_factory=dict)
    """AI judge name -> score (failed judgments are simply absent)."""
    logprob: float | None = None
    """Mean per-unit log-prob under the unit LM, when computed."""


@dataclass(frozen=True)
class Pair:
    prompt_id: int
    chosen_id: int
    rejected_id: int
    source: str
    margin: float | None = None
    provenance: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Thresholds:
    chosen_min: float = 3.0
    rejected_max: float = 1.0
    autobleu_max: float = 0.3


@dataclass(frozen=True)
class ABVote:
    """A human A/B vote; `choice` in A (sample_a better), B, tie, both_bad."""

    prompt_id: int
    sample_a: int
    sample_b: int
    choice: str
    rater: str = ""


@dataclass(frozen=True)
class MOSRating:
    prompt_id: int
    sample_id: int
    value: float
    rater: str = ""


# --- repetition filter ----------------------------------------------------------------------
def tokens_of(c: Candidate, on: str = "words") -> list[str]:
    if on == "words" and c.transcript is not None:
        return c.transcript.split()
    return [str(u) for u in c.units]


def auto_bleu(tokens: Sequence[Any], n: int = 2) -> float:
    """Bigram auto-BLEU (GSLM, Lakhotia et al. 2021): the share of a sequence's n-grams that occur
    elsewhere in the same sequence. 0 = no repetition, 1 = every n-gram repeats. Sequences
    shorter than n+1 tokens have no repeated n-gram by definition (0)."""
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    if len(grams) < 2:
        return 0.0
    counts = Counter(grams)
    return sum(1 for g in grams if counts[g] > 1) / len(grams)


def repetition_filter(
    cands: Iterable[Candidate], autobleu_max: float, on: str = "words"
) -> tuple[list[Candidate], list[Candidate]]:
    """Split into (kept, dropped) by auto-BLEU <= autobleu_max."""
    kept, dropped = [], []
    for c in cands:
        (kept if auto_bleu(tokens_of(c, on)) <= autobleu_max else dropped).append(c)
    return kept, dropped


# --- thresholds -----------------------------------------------------------------------------
def curriculum_thresholds(
    base: Thresholds, round_index: int, step: float = 1.0, score_min: float = 1.0,
    score_max: float = 5.0,
) -> Thresholds:
    """Round 1 uses `base`; each later round raises chosen_min and rejected_max by `step`
    (paper: 3/1 then 4/2), clamped to the judge's scale."""
    k = max(0, round_index - 1) * step

    def clamp(x: float) -> float:
        return min(score_max, max(score_min, x))

    return replace(base, chosen_min=clamp(base.chosen_min + k),
                   rejected_max=clamp(base.rejected_max + k))


# --- generic best-vs-worst per prompt --------------------------------------------------------
def _by_prompt(cands: Iterable[Candidate]) -> dict[int, list[Candidate]]:
    groups: dict[int, list[Candidate]] = defaultdict(list)
    for c in cands:
        groups[c.prompt_id].append(c)
    return dict(sorted(groups.items()))


def _best_worst(group: list[tuple[float, Candidate]]) -> tuple[tuple[float, Candidate], ...]:
    # deterministic: ties go to the lower sample id
    best = max(group, key=lambda x: (x[0], -x[1].sample_id))
    worst = min(group, key=lambda x: (x[0], x[1].sample_id))
    return best, worst


def mean_score(c: Candidate, judges: Sequence[str] | None = None,
               weights: Mapping[str, float] | None = None) -> float | None:
    """Mean score over `judges` (all when None), weighted by `weights` (judge -> weight,
    1 when absent)."""
    vals = [(v, (weights or {}).get(k, 1.0)) for k, v in c.scores.items()
            if judges is None or k in judges]
    total = sum(w for _, w in vals)
    return sum(v * w for v, w in vals) / total if vals and total > 0 else None


def select_ai_pairs(
    cands: Iterable[Candidate], th: Thresholds, judges: Sequence[str] | None = None,
    autobleu_on: str = "words", round_index: int = 1,
    weights: Mapping[str, float] | None = None,
) -> list[Pair]:
    """The paper's selection. A candidate's score is the mean over the given judges (all when
    None), weighted by `weights` when given; candidates without any score are ignored."""
    kept, dropped = repetition_filter(cands, th.autobleu_max, autobleu_on)
    pairs = []
    for pid, group in _by_prompt(kept).items():
        scored = [(s, c) for c in group if (s := mean_score(c, judges, weights)) is not None]
        if len(scored) < 2:
            continue
        (sc, ch), (sr, rj) = _best_worst(scored)
        if ch.sample_id == rj.sample_id or sc <= sr:
            continue
        if sc >= th.chosen_min and sr <= th.rejected_max:
            pairs.append(Pair(pid, ch.sample_id, rj.sample_id, "ai", sc - sr, {
                "strategy": "ai_score", "judges": sorted(judges or ch.scores),
                **({"judge_weights": dict(weights)} if weights else {}),
                "chosen_score": sc, "rejected_score": sr, "round": round_index,
                "thresholds": {"chosen_min": th.chosen_min, "rejected_max": th.rejected_max,
                               "autobleu_max": th.autobleu_max},
                "n_candidates": len(group),
                "n_dropped_repetitive": sum(1 for d in dropped if d.prompt_id == pid),
            }))
    return pairs


# --- likelihood-based alternative -------------------------------------------------------------
class WordBigramLM:
    """Add-k smoothed word-bigram LM (with <s>/</s>), fitted on whatever transcripts exist."""

    def __init__(self, texts: Iterable[str], k: float = 0.1):
        self.k = k
        self.uni: Counter[str] = Counter()
        self.bi: Counter[tuple[str, str]] = Counter()
        for t in texts:
            w = ["<s>", *_words(t), "</s>"]
            self.uni.update(w[:-1])
            self.bi.update(zip(w[:-1], w[1:], strict=False))
        self.vocab = {w for w, _ in self.bi} | {w for _, w in self.bi} | {"<unk>"}

    def logprob(self, a: str, b: str) -> float:
        v = len(self.vocab)
        return math.log((self.bi[(a, b)] + self.k) / (self.uni[a] + self.k * v))

    def perplexity(self, text: str) -> float:
        w = ["<s>", *_words(text), "</s>"]
        lp = sum(self.logprob(a, b) for a, b in zip(w[:-1], w[1:], strict=False))
        return math.exp(-lp / (len(w) - 1))


def _words(text: str | None) -> list[str]:
    return re.findall(r"[\w']+", (text or "").lower())


def select_likelihood_pairs(
    cands: Iterable[Candidate], autobleu_max: float = 0.3, margin: float = 0.0,
    lm: WordBigramLM | None = None, use_unit_logprob: bool = False, autobleu_on: str = "words",
) -> list[Pair]:
    """Per prompt: chosen = most likely continuation, rejected = least likely, when their score
    differs by more than `margin`. Score = -log perplexity of the transcript under `lm` (fitted
    on the candidates' own transcripts when None), or the unit LM's mean log-prob."""
    cands = list(cands)
    kept, _ = repetition_filter(cands, autobleu_max, autobleu_on)
    if not use_unit_logprob and lm is None:
        lm = WordBigramLM(c.transcript for c in cands if c.transcript)
    pairs = []
    for pid, group in _by_prompt(kept).items():
        scored = []
        for c in group:
            if use_unit_logprob:
                if c.logprob is not None:
                    scored.append((c.logprob, c))
            elif c.transcript and _words(c.transcript):
                scored.append((-math.log(lm.perplexity(c.transcript)), c))
        if len(scored) < 2:
            continue
        (sc, ch), (sr, rj) = _best_worst(scored)
        if sc - sr > margin and ch.sample_id != rj.sample_id:
            pairs.append(Pair(pid, ch.sample_id, rj.sample_id, "ai", sc - sr, {
                "strategy": "unit_logprob" if use_unit_logprob else "word_bigram_likelihood",
                "chosen_score": sc, "rejected_score": sr, "margin_min": margin,
            }))
    return pairs


# --- ASR-based alternative -------------------------------------------------------------------
def recognizable_share(text: str | None, vocabulary: set[str]) -> float:
    words = _words(text)
    return sum(w in vocabulary for w in words) / len(words) if words else 0.0


def select_asr_pairs(
    cands: Iterable[Candidate], vocabulary: set[str], autobleu_max: float = 0.3,
    margin: float = 0.0, autobleu_on: str = "words",
) -> list[Pair]:
    """Per prompt: chosen = highest share of words the recognizer output that are in the
    vocabulary (e.g. the corpus' words), rejected = lowest; kept when they differ by > margin."""
    vocab = {w.lower() for w in vocabulary}
    kept, _ = repetition_filter(cands, autobleu_max, autobleu_on)
    pairs = []
    for pid, group in _by_prompt(kept).items():
        scored = [(recognizable_share(c.transcript, vocab), c) for c in group if c.transcript]
        if len(scored) < 2:
            continue
        (sc, ch), (sr, rj) = _best_worst(scored)
        if sc - sr > margin and ch.sample_id != rj.sample_id:
            pairs.append(Pair(pid, ch.sample_id, rj.sample_id, "ai", sc - sr, {
                "strategy": "asr_recognizable_share", "chosen_score": sc,
                "rejected_score": sr, "margin_min": margin,
            }))
    return pairs


# --- human feedback --------------------------------------------------------------------------
def human_ab_pairs(votes: Iterable[ABVote], min_votes: int = 1) -> list[Pair]:
    """Majority over the decisive votes (A or B) of each unordered sample pair, with at least
    `min_votes` decisive votes; ties (equal counts) are dropped, as are tie/both_bad votes."""
    tally: dict[tuple[int, int], Counter] = defaultdict(Counter)
    prompt: dict[tuple[int, int], int] = {}
    raters: dict[tuple[int, int], set[str]] = defaultdict(set)
    for v in votes:
        if v.choice not in ("A", "B") or v.sample_a == v.sample_b:
            continue
        winner, loser = (v.sample_a, v.sample_b) if v.choice == "A" else (v.sample_b, v.sample_a)
        key = (min(winner, loser), max(winner, loser))
        tally[key][winner] += 1
        prompt[key] = v.prompt_id
        raters[key].add(v.rater)
    pairs = []
    for key in sorted(tally):
        c = tally[key]
        a, b = key
        n = c[a] + c[b]
        if n < min_votes or c[a] == c[b]:
            continue
        ch, rj = (a, b) if c[a] > c[b] else (b, a)
        pairs.append(Pair(prompt[key], ch, rj, "human", (c[ch] - c[rj]) / n, {
            "strategy": "human_ab_majority", "votes_for": c[ch], "votes_against": c[rj],
            "min_votes": min_votes, "raters": sorted(raters[key]),
        }))
    return pairs


def human_mos_pairs(ratings: Iterable[MOSRating], margin: float = 1.0) -> list[Pair]:
    """Per prompt: the best vs the worst sample by mean MOS, kept when the difference > margin."""
    per: dict[int, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    raters: dict[int, set[str]] = defaultdict(set)
    for r in ratings:
        per[r.prompt_id][r.sample_id].append(r.value)
        raters[r.sample_id].add(r.rater)
    pairs = []
    for pid in sorted(per):
        means = {s: sum(v) / len(v) for s, v in per[pid].items()}
        if len(means) < 2:
            continue
        ch = max(means, key=lambda s: (means[s], -s))
        rj = min(means, key=lambda s: (means[s], s))
        if means[ch] - means[rj] > margin:
            pairs.append(Pair(pid, ch, rj, "human", means[ch] - means[rj], {
                "strategy": "human_mos", "chosen_mos": means[ch], "rejected_mos": means[rj],
                "n_ratings": {str(ch): len(per[pid][ch]), str(rj): len(per[pid][rj])},
                "margin_min": margin, "raters": sorted(raters[ch] | raters[rj]),
            }))
    return pairs


# --- mixing ----------------------------------------------------------------------------------
def mix_pairs(groups: dict[str, list[Pair]], weights: dict[str, float] | None = None) -> list[Pair]:
    """Union of several sources' pairs. Weight 0 drops a source. The same two samples found by
    several sources are merged into one pair whose direction has the larger summed weight
    (exact tie: dropped); provenance lists every contributing source."""
    weights = weights or {}
    by_key: dict[tuple[int, int], list[tuple[str, Pair, float]]] = defaultdict(list)
    for src, pairs in groups.items():
        w = float(weights.get(src, 1.0))
        if w <= 0:
            continue
        for p in pairs:
            key = (min(p.chosen_id, p.rejected_id), max(p.chosen_id, p.rejected_id))
            by_key[key].append((src, p, w))
    out = []
    for key in sorted(by_key):
        entries = by_key[key]
        votes: Counter[int] = Counter()
        for _, p, w in entries:
            votes[p.chosen_id] += w
        a, b = key
        if votes[a] == votes[b]:
            continue
        ch = a if votes[a] > votes[b] else b
        agreeing = [(s, p, w) for s, p, w in entries if p.chosen_id == ch]
        first = agreeing[0][1]
        sources = sorted({s for s, _, _ in entries})
        kinds = {p.source for _, p, _ in entries}
        out.append(Pair(first.prompt_id, ch, first.rejected_id,
                        kinds.pop() if len(kinds) == 1 else "both", first.margin, {
                            **first.provenance,
                            "sources": sources,
                            "weights": {s: w for s, _, w in entries},
                            "agree": len(agreeing) == len(entries),
                            **({"parts": [{"source": s, **p.provenance} for s, p, _ in entries]}
                               if len(entries) > 1 else {}),
                        }))
    return out


# --- candidates from the store --------------------------------------------------------------
def ai_candidates(rt: Runtime, version_id: int, split: str, judges: list[str]) -> list[Candidate]:
    """The version's samples on `split` with the valid scores of the configured judges `judges`
    (names; each scored under its current prompt version), keyed by judge name. An empty
    continuation (no units: nothing to prefer or reject) is never a candidate, whatever a judge
    scored it: it would be every prompt's ideal "rejected"."""
    name_of = {judge_identity(rt.judge(n).name, rt.judge(n).prompt_version): n for n in judges}
    with rt.store.session() as s:
        rows = s.execute(
            select(Sample.id, Sample.prompt_id, Sample.units, Sample.transcript)
            .join(Prompt, Sample.prompt_id == Prompt.id)
            .where(Sample.model_version_id == version_id, Prompt.split == split,
                   Sample.is_trap.is_(False))
            .order_by(Sample.id)
        ).all()
        scores: dict[int, dict[str, float]] = {}
        for a in queries.ai_scores(s, judges=list(name_of), version_id=version_id, split=split):
            scores.setdefault(a.sample_id, {})[name_of[a.judge]] = a.value
    return [Candidate(sid, pid, tuple(units), tx, scores.get(sid, {}))
            for sid, pid, units, tx in rows if units]


def human_feedback(rt: Runtime, split: str) -> tuple[list[ABVote], list[MOSRating]]:
    """Counted A/B votes and meaning MOS ratings on prompts of `split` (backend.queries)."""
    with rt.store.read() as s:
        votes = [ABVote(v.prompt_id, v.sample_a, v.sample_b, v.choice, v.rater)
                 for v in queries.ab_votes(s, split=split)]
        mos = [MOSRating(m.prompt_id, m.sample_id, m.value, m.rater)
               for m in queries.mos_ratings(s, aspects=MEANING_ASPECTS, split=split)]
    return votes, mos


def reference_texts(rt: Runtime) -> list[str]:
    with rt.store.session() as s:
        return [t for t in s.scalars(select(Prompt.reference_text)) if t]


def select_pairs(
    rt: Runtime, source: str, version_id: int | None, sel: SelectionConfig, th: Thresholds,
    round_index: int, split: str, uses: Sequence[JudgeUse] | None = None,
) -> list[Pair]:
    """A round's pairs from `source`. The AI side uses the training judges that `uses`
    (default: `backend.trust.judges_for_pairs`) marks used, with its weights (`auto`); none
    used = no AI pairs."""
    groups: dict[str, list[Pair]] = {}
    judges: list[str] = []
    weights = None
    if source != "human":
        uses = judges_for_pairs(rt, source) if uses is None else uses
        judges = [u.name for u in uses if u.used]
        weights = {u.name: u.weight for u in uses if u.used} if source == "auto" else None
    if source != "human" and (judges or sel.strategy != "ai"):
        cands = ai_candidates(rt, version_id, split, judges)
        if sel.strategy == "ai":
            groups["ai"] = select_ai_pairs(cands, th, judges, sel.autobleu_on, round_index,
                                           weights)
        elif sel.strategy == "likelihood":
            texts = reference_texts(rt)
            lm = WordBigramLM(texts) if texts else None
            groups["ai"] = select_likelihood_pairs(cands, th.autobleu_max, sel.likelihood_margin,
                                                   lm, autobleu_on=sel.autobleu_on)
        else:
            vocab = {w for t in reference_texts(rt) for w in t.lower().split()}
            groups["ai"] = select_asr_pairs(cands, vocab, th.autobleu_max, sel.asr_margin,
                                            sel.autobleu_on)
    if source in ("human", "both", "auto"):
        votes, mos = human_feedback(rt, split)
        groups["human"] = mix_pairs({"ab": human_ab_pairs(votes, sel.human_min_votes),
                                     "mos": human_mos_pairs(mos, sel.mos_margin)})
    return mix_pairs(groups, {"ai": sel.ai_weight, "human": sel.human_weight})


def best_of_k(cands: Iterable[Candidate], min_score: float, per_prompt: int,
              judges: Sequence[str] | None = None) -> list[Candidate]:
    """Rejection sampling's selection (method rft): per prompt, its best-scored continuations
    (mean over `judges`) that reach `min_score`, at most `per_prompt` of them, best first
    (ties: lower sample id). Empty continuations are never imitated."""
    by_prompt: dict[int, list[tuple[float, Candidate]]] = {}
    for c in cands:
        s = mean_score(c, judges)
        if s is not None and s >= min_score and c.units:
            by_prompt.setdefault(c.prompt_id, []).append((s, c))
    out: list[Candidate] = []
    for pid in sorted(by_prompt):
        ranked = sorted(by_prompt[pid], key=lambda x: (-x[0], x[1].sample_id))
        out += [c for _, c in ranked[:per_prompt]]
    return out
