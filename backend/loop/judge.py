"""Step 3 of the loop: score samples with each configured AI judge.

A failed judge call (Score.value None) is stored as a failure row with its error, never as a
score; the next judge run retries exactly those rows and updates them in place. Each judgment is
stored under the judge's identity `name@prompt_version` (backend.queries).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import select

from backend import registry
from backend.jobs import JobContext, handler
from backend.loop.transcribe import transcribe
from backend.progress import Progress, noop
from backend.queries import ai_rater
from backend.runtime import Runtime
from db.schema import Judgment, Prompt, Sample, utcnow
from models.interfaces import Score


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



@handler("judge", resumable=True)
def _job_judge(ctx: JobContext) -> dict:
    return judge(ctx.runtime, progress=ctx.progress, **ctx.params)
