"""Step 1 of the loop: sample continuations of prompts with a model version and vocode them.

A continuation is vocoded ALONE (not prompt + continuation): its audio and transcript are then
exactly what the model added, which is what the judge rates given the prompt's own transcript.
Resumable: (prompt, version, seed, index) rows that exist are skipped, so a rerun after a crash
or a cancel only samples what is missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from sqlalchemy import select

from backend import registry
from backend.files import write_wav
from backend.jobs import JobContext, handler
from backend.progress import Progress, noop
from backend.registry import Version
from backend.runtime import Runtime
from db.schema import Prompt, Sample
from models.interfaces import SamplingParams


def sampling_params(rt: Runtime, **overrides: Any) -> SamplingParams:
    g = rt.settings.generation
    base = {k: getattr(g, k) for k in ("n", "temperature", "top_k", "top_p", "max_new_units",
                                       "seed")}
    base.update({k: v for k, v in overrides.items() if v is not None and k in base})
    return SamplingParams(**base)


def select_prompts(
    rt: Runtime, prompt_ids: Sequence[int] | None = None, split: str | None = None,
    limit: int | None = None,
) -> list[int]:
    with rt.store.session() as s:
        q = select(Prompt.id).order_by(Prompt.id)
        if prompt_ids:
            q = q.where(Prompt.id.in_(list(prompt_ids)))
        if split:
            q = q.where(Prompt.split == split)
        ids = list(s.scalars(q))
    return ids[:limit] if limit else ids


def sample_continuations(rt: Runtime, version: Version, prompt_units: Sequence[Sequence[int]],
                         params: SamplingParams) -> list[list[list[int]]]:
    """`params.n` continuations (unit lists) of each prompt by `version`, in memory."""
    adapter = rt.adapter(version)
    return rt.lm(version).sample([list(u) for u in prompt_units], params, adapter=adapter)


def vocode(vocoder, conts: Sequence[Sequence[int]], group: int = 8) -> list:
    """Waves of continuations, each vocoded alone in what it says. A vocoder with
    `decode_batch` gets groups of similar length (sorted, so little padding): about 2x less
    CPU than one at a time for the mini Griffin-Lim vocoder (bench/throughput.py)."""
    batch = getattr(vocoder, "decode_batch", None)
    if batch is None:
        return [vocoder.decode(list(u)) for u in conts]
    order = sorted(range(len(conts)), key=lambda i: len(conts[i]))
    waves: list = [None] * len(conts)
    for g in range(0, len(order), group):
        idx = order[g:g + group]
        for i, w in zip(idx, batch([list(conts[i]) for i in idx]), strict=True):
            waves[i] = w
    return waves


def generate(
    rt: Runtime, version: int | str, prompt_ids: Sequence[int] | None = None,
    split: str | None = None, n: int | None = None, seed: int | None = None,
    limit: int | None = None, progress: Progress | None = None, **param_overrides: Any,
) -> dict:
    """Sample `n` continuations per prompt with a model version, vocode them and store Sample
    rows. Resumable: (prompt, version, seed, index) rows that exist are skipped."""
    progress = progress or noop
    ver = registry.get_version(rt, version)
    params = sampling_params(rt, n=n, seed=seed, **param_overrides)
    pids = select_prompts(rt, prompt_ids, split, limit)
    if not pids:
        raise ValueError(f"no prompts selected (split={split!r}); import prompts first")
    with rt.store.session() as s:
        have: dict[int, set[int]] = {}
        for pid, idx in s.execute(select(Sample.prompt_id, Sample.index).where(
            Sample.model_version_id == ver.id, Sample.seed == params.seed,
            Sample.prompt_id.in_(pids),
        )):
            have.setdefault(pid, set()).add(idx)
        todo = [p for p in pids if len(have.get(p, ())) < params.n]
        units_of = dict(s.execute(select(Prompt.id, Prompt.units).where(Prompt.id.in_(todo))).all())
    bs = max(1, rt.settings.generation.batch_size)
    out_dir = rt.settings.audio_dir / "samples" / ver.name
    made = 0
    progress(0.0, f"{len(todo)} of {len(pids)} prompts to sample")
    if todo:
        rt.check_unit_layout()
    vocoder = rt.vocoder if todo else None
    for b in range(0, len(todo), bs):
        batch = todo[b : b + bs]
        conts = sample_continuations(rt, ver, [units_of[p] for p in batch], params)
        new = [(pid, i, units) for pid, cs in zip(batch, conts, strict=True)
               for i, units in enumerate(cs) if i not in have.get(pid, ())]
        rows = []
        for (pid, i, units), wave in zip(new, vocode(vocoder, [u for *_, u in new]),
                                         strict=True):
            path = out_dir / f"{pid}_{params.seed}_{i}.wav"
            write_wav(path, wave, vocoder.sample_rate)
            rows.append(Sample(
                prompt_id=pid, model_version_id=ver.id, seed=params.seed, index=i,
                sampling_params=_params_dict(params), units=[int(u) for u in units],
                audio_path=str(path),
            ))
        with rt.store.session() as s:
            s.add_all(rows)
        made += len(rows)
        progress((b + len(batch)) / len(todo), f"sampled {b + len(batch)}/{len(todo)} prompts")
    return {"version": ver.name, "prompts": len(pids), "new_samples": made,
            "skipped_prompts": len(pids) - len(todo)}


def _params_dict(p: SamplingParams) -> dict:
    return asdict(p)



@handler("generate", resumable=True)
def _job_generate(ctx: JobContext) -> dict:
    p = dict(ctx.params)
    version = p.pop("version", None) or registry.ensure_baseline(ctx.runtime).name
    return generate(ctx.runtime, version, progress=ctx.progress, **p)
