"""Step 3 of the loop: score samples with each configured AI judge.

A failed judge call (Score.value None) is stored as a failure row with its error, never as a
score; the next judge run retries exactly those rows and updates them in place. Each judgment is
stored under the judge's identity `name@prompt_version` (backend.queries).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import select

from backend import registry
from backend.jobs import JobContext, handler
from backend.loop.transcribe import transcribe
from backend.progress import Progress, noop
from backend.queries import ai_rater
from backend.runtime import Runtime
from db.schema import Judgment, Prompt, RatingTask, Sample, utcnow
from models.interfaces import Score, Verdict


def rater_key(judge) -> str:
    """The store's `rater` of a built judge's judgments."""
    return ai_rater(judge.name, judge.prompt_version)


def judge(
    rt: Runtime, judges: Sequence[str] | None = None, sample_ids: Sequence[int] | None = None,
    version: int | str | None = None, progress: Progress | None = None, batch: int = 32,
) -> dict:
    """Score samples with each judge. Samples already scored by a judge (same prompt version)
    are skipped; failure rows are retried and updated. Missing transcripts are made first."""
    progress = progress or noop
    names = list(judges) if judges else [j.name for j in rt.settings.models.judges]
    transcribe(rt, sample_ids=sample_ids, version=version)
    vid = registry.get_version(rt, version).id if version is not None else None
    stats = {"scored": 0, "failed": 0, "skipped": 0}
    plan = []
    for name in names:
        jd = rt.judge(name)
        rater = rater_key(jd)
        with rt.store.session() as s:
            q = select(Sample.id, Prompt.transcript, Prompt.reference_text, Sample.transcript) \
                .join(Prompt, Sample.prompt_id == Prompt.id).where(Sample.is_trap.is_(False))
            if sample_ids is not None:
                q = q.where(Sample.id.in_(list(sample_ids)))
            if vid is not None:
                q = q.where(Sample.model_version_id == vid)
            rows = s.execute(q.order_by(Sample.id)).all()
            done = dict(s.execute(select(Judgment.task_key, Judgment.value).where(
                Judgment.rater == rater, Judgment.kind == "ai")).all())
        for sid, ptx, pref, ctx in rows:
            key = f"sample:{sid}"
            if done.get(key) is not None:
                stats["skipped"] += 1
                continue
            plan.append((jd, rater, sid, key, ptx if ptx is not None else (pref or ""), ctx or ""))
    total = len(plan)
    progress(0.0, f"{total} judgments to make")
    for b in range(0, total, batch):
        chunk = plan[b : b + batch]
        conc = {j.name: j for j in rt.settings.models.judges}
        workers = max(1, min(conc[c[0].name].concurrency if c[0].name in conc else 1
                             for c in chunk))
        with ThreadPoolExecutor(workers) as ex:
            scores = list(ex.map(lambda c: safe_score(c[0], c[4], c[5]), chunk))
        with rt.store.session() as s:
            for (jd, rater, sid, key, _, _), sc in zip(chunk, scores, strict=True):
                row = s.scalar(select(Judgment).where(Judgment.rater == rater,
                                                      Judgment.task_key == key))
                if row is None:
                    row = Judgment(kind="ai", rater=rater, task_key=key, sample_id=sid)
                    s.add(row)
                ok = sc.value is not None and sc.error is None
                row.judge_name, row.prompt_version = jd.name, jd.prompt_version
                row.value = float(sc.value) if ok else None
                row.error = None if ok else (sc.error or "judge returned no score")
                row.rationale, row.raw, row.cost = sc.rationale, sc.raw, dict(sc.cost or {})
                row.created_at = utcnow()
                stats["scored" if ok else "failed"] += 1
        progress((b + len(chunk)) / total, f"judged {b + len(chunk)}/{total}")
    return stats


def safe_score(jd, prompt_text: str, cont_text: str) -> Score:
    """The judge's score, or a failed Score carrying the error: a crashing judge is a failed
    judgment, never a crash of the step."""
    try:
        return jd.score(prompt_text, cont_text)
    except Exception as e:  # noqa: BLE001 - a crashing judge is a failed judgment, not a crash
        return Score(None, judge=jd.name, prompt_version=jd.prompt_version,
                     error=f"{type(e).__name__}: {e}")



# --- pairwise verdicts, in both orders ---------------------------------------------------------
def pair_key(lo: int, hi: int) -> str:
    return f"pair:{lo}:{hi}"


def judge_pairs(rt: Runtime, judges: Sequence[str] | None = None,
                task_ids: Sequence[int] | None = None, progress: Progress | None = None) -> dict:
    """Ask each configured judge that can compare (`compare`, models.interfaces.PairwiseJudge)
    which continuation of each A/B rating task is better, in both orders: LLM judges favour a
    position, so one order alone would measure the slot as much as the speech. Two answers that
    name the same sample (or both a tie) are the verdict; two that disagree count as a tie, or
    are dropped (`judging.order_conflict`: stored with the reason, never counted). Stored as
    kind "ai" with `choice` in terms of the lower sample id (A) and the higher (B), both answers
    in `raw`. Pairs already judged are skipped; failed ones are asked again."""
    progress = progress or noop
    names = list(judges) if judges else [j.name for j in rt.settings.models.judges]
    comparers = [jd for jd in (rt.judge(n) for n in names) if hasattr(jd, "compare")]
    with rt.store.read() as s:
        q = (select(RatingTask.sample_a_id, RatingTask.sample_b_id)
             .where(RatingTask.kind == "ab", RatingTask.active,
                    RatingTask.gold_answer.is_(None)).order_by(RatingTask.id))
        if task_ids is not None:
            q = q.where(RatingTask.id.in_(list(task_ids)))
        pairs = sorted({(min(a, b), max(a, b)) for a, b in s.execute(q)})
        text = {sid: (ptx if ptx is not None else (pref or ""), ctx or "")
                for sid, ptx, pref, ctx in s.execute(
                    select(Sample.id, Prompt.transcript, Prompt.reference_text,
                           Sample.transcript).join(Prompt, Sample.prompt_id == Prompt.id)
                    .where(Sample.id.in_([x for p in pairs for x in p])))}
        done = {(r, k) for r, k in s.execute(
            select(Judgment.rater, Judgment.task_key).where(
                Judgment.kind == "ai", Judgment.sample_b_id.is_not(None),
                Judgment.raw.is_not(None)))}
    plan = [(jd, lo, hi) for jd in comparers for lo, hi in pairs
            if (rater_key(jd), pair_key(lo, hi)) not in done]
    stats = {"judged": 0, "inconsistent": 0, "failed": 0,
             "skipped": len(comparers) * len(pairs) - len(plan)}
    conflict = rt.settings.judging.order_conflict
    for k, (jd, lo, hi) in enumerate(plan):
        prompt = text[lo][0]
        first = safe_compare(jd, prompt, text[lo][1], text[hi][1])  # lo shown first
        second = safe_compare(jd, prompt, text[hi][1], text[lo][1])  # hi shown first
        row = _pair_row(rt, jd, lo, hi)
        with rt.store.session() as s:
            row = s.merge(row)
            if first.choice is None or second.choice is None:
                row.choice, row.raw = None, None
                row.error = first.error or second.error
                stats["failed"] += 1
            else:
                lo_first = {"A": "A", "B": "B", "tie": "tie"}[first.choice]
                hi_first = {"A": "B", "B": "A", "tie": "tie"}[second.choice]  # in lo/hi terms
                agree = lo_first == hi_first
                row.raw = json.dumps({"lo_first": first.choice, "hi_first": second.choice,
                                      "consistent": agree,
                                      "first_position": first.choice == second.choice == "A"
                                      or first.choice == second.choice == "B",
                                      "rationale": first.rationale})
                if agree:
                    row.choice, row.error = lo_first, None
                elif conflict == "tie":
                    row.choice, row.error = "tie", None
                else:
                    row.choice, row.error = None, "dropped: the two orders disagree"
                stats["judged"] += 1
                stats["inconsistent"] += not agree
            row.created_at = utcnow()
        progress((k + 1) / len(plan), f"compared {k + 1}/{len(plan)}")
    return stats


def _pair_row(rt: Runtime, jd, lo: int, hi: int) -> Judgment:
    rater, key = rater_key(jd), pair_key(lo, hi)
    with rt.store.read() as s:
        existing = s.scalar(select(Judgment).where(Judgment.rater == rater,
                                                   Judgment.task_key == key))
        if existing is not None:
            return existing
    return Judgment(kind="ai", rater=rater, task_key=key, sample_id=lo, sample_b_id=hi,
                    judge_name=jd.name, prompt_version=jd.prompt_version)


def safe_compare(jd, prompt_text: str, first: str, second: str) -> Verdict:
    """The judge's verdict, or a failed one carrying the error (never a crash of the step)."""
    try:
        v = jd.compare(prompt_text, first, second)
    except Exception as e:  # noqa: BLE001 - a crashing judge is a failed verdict
        return Verdict(None, error=f"{type(e).__name__}: {e}")
    if v.choice not in ("A", "B", "tie"):
        return Verdict(None, raw=v.raw, error=v.error or f"unknown answer {v.choice!r}")
    return v


@handler("judge_pairs", resumable=True)
def _job_judge_pairs(ctx: JobContext) -> dict:
    return judge_pairs(ctx.runtime, progress=ctx.progress, **ctx.params)


@handler("judge", resumable=True)
def _job_judge(ctx: JobContext) -> dict:
    return judge(ctx.runtime, progress=ctx.progress, **ctx.params)
