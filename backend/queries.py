"""The one definition of a judgment that counts: valid AI scores, human A/B votes, MOS ratings.

Evaluation, the leaderboard, agreement, pair selection and the benches all read judgments
through these functions, so they agree on what is excluded:
- a flagged judgment (its rater failed quality control; kept in the store, never counted);
- an answer to a trap task (its clip is an instruction, not model output: QC only);
- a failed AI judgment (no value, or an error) and a judgment of a trap sample.

An AI judge's identity is `name@prompt_version` (the store's `rater` is `ai:` + identity): the
same judge name with a changed prompt is a different judge, whose scores are never pooled with
the old one's.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, aliased

from db.schema import Judgment, Prompt, RatingTask, Sample

AI_PREFIX = "ai:"


def judge_identity(name: str, prompt_version: str) -> str:
    return f"{name}@{prompt_version}"


def ai_rater(name: str, prompt_version: str) -> str:
    """The `rater` value of an AI judge's judgments."""
    return AI_PREFIX + judge_identity(name, prompt_version)


def identity_of_rater(rater: str) -> str:
    return rater[len(AI_PREFIX):] if rater.startswith(AI_PREFIX) else rater


def not_trap_answer():
    """SQL condition: the judgment is not an answer to a trap task."""
    return or_(Judgment.task_id.is_(None),
               Judgment.task_id.not_in(select(RatingTask.id).where(RatingTask.is_trap)))


@dataclass(frozen=True)
class AIScore:
    judge: str
    """identity, `name@prompt_version`"""
    version_id: int
    prompt_id: int
    sample_id: int
    value: float


@dataclass(frozen=True)
class ABVoteRow:
    choice: str
    """as stored: A = sample_a better, B, tie, both_bad"""
    version_a: int
    version_b: int
    user_id: int | None
    sample_a: int
    sample_b: int
    prompt_id: int
    rater: str


@dataclass(frozen=True)
class MOSRow:
    aspect: str
    value: float
    version_id: int
    user_id: int | None
    sample_id: int
    prompt_id: int
    rater: str


def ai_scores(
    s: Session, *, judges: Iterable[str] | None = None, version_id: int | None = None,
    split: str | None = None, sample_ids: Iterable[int] | None = None, seed: int | None = None,
    prompt_id: int | None = None,
) -> list[AIScore]:
    """Valid AI scores, optionally of some judge identities, one version, prompts of one split,
    one prompt, some samples, or samples drawn with one seed; in sample order."""
    q = (select(Judgment.rater, Sample.model_version_id, Sample.prompt_id, Sample.id,
                Judgment.value)
         .join(Sample, Judgment.sample_id == Sample.id)
         .where(Judgment.kind == "ai", Judgment.value.is_not(None), Judgment.error.is_(None),
                Judgment.sample_b_id.is_(None), Judgment.flagged.is_(False),
                Sample.is_trap.is_(False)))
    if judges is not None:
        q = q.where(Judgment.rater.in_([AI_PREFIX + j for j in judges]))
    if version_id is not None:
        q = q.where(Sample.model_version_id == version_id)
    if sample_ids is not None:
        q = q.where(Sample.id.in_(list(sample_ids)))
    if seed is not None:
        q = q.where(Sample.seed == seed)
    if prompt_id is not None:
        q = q.where(Sample.prompt_id == prompt_id)
    if split is not None:
        q = q.join(Prompt, Sample.prompt_id == Prompt.id).where(Prompt.split == split)
    return [AIScore(identity_of_rater(r), int(v), int(p), int(sid), float(val))
            for r, v, p, sid, val in s.execute(q.order_by(Sample.id, Judgment.id))]


def ai_evidence(s: Session, judge_names: Iterable[str], split: str | None = None
                ) -> list[tuple[int, str]]:
    """(version id, raw evidence text) of the valid AI judgments by judges of these names (any
    prompt version), on prompts of `split` if given: what a judge saw wrong in each sample."""
    q = (select(Sample.model_version_id, Judgment.raw)
         .join(Sample, Judgment.sample_id == Sample.id)
         .where(Judgment.kind == "ai", Judgment.value.is_not(None), Judgment.error.is_(None),
                Judgment.flagged.is_(False), Sample.is_trap.is_(False),
                Judgment.judge_name.in_(list(judge_names)), Judgment.raw.is_not(None)))
    if split is not None:
        q = q.join(Prompt, Sample.prompt_id == Prompt.id).where(Prompt.split == split)
    return [(int(v), raw) for v, raw in s.execute(q.order_by(Judgment.id))]


@dataclass(frozen=True)
class PairVerdict:
    """An AI judge's pairwise verdict on two samples, asked in both orders
    (`backend.loop.judge.judge_pairs`)."""

    judge: str
    key: tuple[int, int]
    """(lower sample id, higher sample id)"""
    side: str
    """"lo", "hi" or "tie" (the two orders disagreed and `judging.order_conflict` is tie)"""


def ai_pair_verdicts(s: Session, *, judges: Iterable[str] | None = None) -> list[PairVerdict]:
    """Counted pairwise AI verdicts: a choice was reached (a failure or a verdict dropped for
    disagreeing orders has none), not flagged, no trap sample."""
    sa, sb = aliased(Sample), aliased(Sample)
    q = (select(Judgment.rater, Judgment.sample_id, Judgment.sample_b_id, Judgment.choice)
         .join(sa, Judgment.sample_id == sa.id).join(sb, Judgment.sample_b_id == sb.id)
         .where(Judgment.kind == "ai", Judgment.choice.is_not(None),
                Judgment.flagged.is_(False), sa.is_trap.is_(False), sb.is_trap.is_(False)))
    if judges is not None:
        q = q.where(Judgment.rater.in_([AI_PREFIX + j for j in judges]))
    out = []
    for rater, a, b, choice in s.execute(q.order_by(Judgment.id)):
        first_is_lo = a < b
        side = "tie" if choice == "tie" else \
            "lo" if (choice == "A") == first_is_lo else "hi"
        out.append(PairVerdict(identity_of_rater(rater), (min(a, b), max(a, b)), side))
    return out


def ai_judges(s: Session) -> list[str]:
    """Identities of the AI judges with at least one stored judgment."""
    raters = s.scalars(select(Judgment.rater).where(Judgment.kind == "ai").distinct())
    return sorted(identity_of_rater(r) for r in raters)


def ab_votes(s: Session, *, split: str | None = None,
             sample_ids: Iterable[int] | None = None) -> list[ABVoteRow]:
    """Counted human A/B votes (not flagged, not trap answers), optionally on prompts of one
    split or involving some samples (on either side)."""
    sa, sb = aliased(Sample), aliased(Sample)
    q = (select(Judgment.choice, sa.model_version_id, sb.model_version_id, Judgment.user_id,
                Judgment.sample_id, Judgment.sample_b_id, sa.prompt_id, Judgment.rater)
         .join(sa, Judgment.sample_id == sa.id).join(sb, Judgment.sample_b_id == sb.id)
         .where(Judgment.kind == "ab", Judgment.flagged.is_(False), not_trap_answer()))
    if split is not None:
        q = q.join(Prompt, sa.prompt_id == Prompt.id).where(Prompt.split == split)
    if sample_ids is not None:
        ids = list(sample_ids)
        q = q.where(or_(Judgment.sample_id.in_(ids), Judgment.sample_b_id.in_(ids)))
    return [ABVoteRow(*row) for row in s.execute(q.order_by(Judgment.id))]


def mos_ratings(s: Session, *, aspects: Iterable[str] | None = None, split: str | None = None,
                sample_ids: Iterable[int] | None = None) -> list[MOSRow]:
    """Counted human MOS ratings (not flagged, not trap answers, with a value)."""
    q = (select(Judgment.aspect, Judgment.value, Sample.model_version_id, Judgment.user_id,
                Judgment.sample_id, Sample.prompt_id, Judgment.rater)
         .join(Sample, Judgment.sample_id == Sample.id)
         .where(Judgment.kind == "mos", Judgment.flagged.is_(False), Judgment.value.is_not(None),
                not_trap_answer()))
    if aspects is not None:
        q = q.where(Judgment.aspect.in_(list(aspects)))
    if sample_ids is not None:
        q = q.where(Judgment.sample_id.in_(list(sample_ids)))
    if split is not None:
        q = q.join(Prompt, Sample.prompt_id == Prompt.id).where(Prompt.split == split)
    return [MOSRow(a, float(v), vid, uid, sid, pid, r)
            for a, v, vid, uid, sid, pid, r in s.execute(q.order_by(Judgment.id))]


@dataclass(frozen=True)
class VoteStatus:
    day: str
    """UTC date of the vote, ISO"""
    kind: str
    excluded: str | None
    """None = counted; else the flag reason, or "trap_answer" (a QC answer, never counted)"""
    qc: str | None
    """the QC check's outcome when the vote answered a gold/trap task: pass, fail, outage"""


def human_vote_status(s: Session) -> list[VoteStatus]:
    """Every stored human judgment (A/B vote, MOS rating) with whether it counts and, if not,
    why: the same rules as `ab_votes` and `mos_ratings`."""
    q = (select(Judgment.created_at, Judgment.kind, Judgment.flag_reason, Judgment.raw,
                RatingTask.is_trap)
         .outerjoin(RatingTask, Judgment.task_id == RatingTask.id)
         .where(Judgment.kind.in_(("ab", "mos")))
         .order_by(Judgment.id))
    out = []
    for created, kind, reason, raw, trap in s.execute(q):
        qc = json.loads(raw).get("qc") if raw else None
        out.append(VoteStatus(created.date().isoformat(), kind,
                              reason or ("trap_answer" if trap else None), qc))
    return out
