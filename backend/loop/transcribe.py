"""Step 2 of the loop: ASR over samples (and prompts) that have no transcript yet, batched."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sqlalchemy import select

from backend import registry
from backend.files import read_wav
from backend.jobs import JobContext, handler
from backend.progress import Progress, noop
from backend.runtime import Runtime
from db.schema import Prompt, Sample


def transcribe_waves(rt: Runtime, waves: Sequence[tuple[np.ndarray, int]]) -> list[str]:
    """Transcripts of in-memory (wave, sample rate) pairs, one ASR call per sample rate."""
    texts: list[str] = [""] * len(waves)
    for sr in sorted({sr for _, sr in waves}):
        idx = [k for k, (_, r) in enumerate(waves) if r == sr]
        for k, t in zip(idx, rt.asr.transcribe([waves[k][0] for k in idx], sr), strict=True):
            texts[k] = t
    return texts


def transcribe(
    rt: Runtime, sample_ids: Sequence[int] | None = None, prompts: bool = True,
    version: int | str | None = None, progress: Progress | None = None,
) -> dict:
    """ASR over samples (and prompts) that have no transcript yet, batched."""
    progress = progress or noop
    vid = registry.get_version(rt, version).id if version is not None else None
    with rt.store.session() as s:
        q = select(Sample.id, Sample.audio_path).where(
            Sample.transcript.is_(None), Sample.audio_path.is_not(None), Sample.is_trap.is_(False)
        )
        if sample_ids is not None:
            q = q.where(Sample.id.in_(list(sample_ids)))
        if vid is not None:
            q = q.where(Sample.model_version_id == vid)
        todo = [("s", i, p) for i, p in s.execute(q.order_by(Sample.id))]
        if prompts:
            todo += [("p", i, p) for i, p in s.execute(
                select(Prompt.id, Prompt.audio_path).where(Prompt.transcript.is_(None))
            )]
    bs = max(1, rt.settings.models.asr.batch_size)
    for b in range(0, len(todo), bs):
        batch = todo[b : b + bs]
        texts = transcribe_waves(rt, [read_wav(p) for _, _, p in batch])
        with rt.store.session() as s:
            for (kind, rid, _), text in zip(batch, texts, strict=True):
                row = s.get(Sample if kind == "s" else Prompt, rid)
                row.transcript = (text or "").strip()
        progress((b + len(batch)) / len(todo), f"transcribed {b + len(batch)}/{len(todo)}")
    return {"transcribed": len(todo)}


@handler("transcribe", resumable=True)
def _job_transcribe(ctx: JobContext) -> dict:
    return transcribe(ctx.runtime, progress=ctx.progress, **ctx.params)
