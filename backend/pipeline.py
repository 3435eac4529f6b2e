"""The data side of the Align-SLM loop: import prompts, generate, transcribe, AI-judge.

Every step is a plain service function `step(rt, ..., progress=None) -> dict` (the CLI passes a
tqdm callback, jobs pass `ctx.progress`, which raises `JobCancelled`), and a resumable job that
skips work already stored, so a rerun after a crash or a cancel only does what is missing.

Choices:
- A continuation is vocoded ALONE (not prompt + continuation): its audio and transcript are then
  exactly what the model added, which is what the judge rates given the prompt's own transcript
  (transcribed from the prompt audio). The Listen tab plays prompt then continuation.
- Audio is written to a temp file in the same directory, fsynced and renamed, so a killed job
  never leaves a truncated wav behind a row.
- A failed judge call (Score.value None) is stored as a failure row with its error, never as a
  score; the next judge run retries exactly those rows and updates them in place.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from backend import registry
from backend.jobs import JobContext, handler
from backend.runtime import Runtime
from db.schema import Judgment, ModelVersion, Prompt, Sample, utcnow
from models.interfaces import SamplingParams

log = logging.getLogger(__name__)

Progress = Callable[[float, str], None]


def _noop(frac: float, msg: str = "") -> None:
    pass


# --- files -----------------------------------------------------------------------------------
def write_wav_atomic(path: Path, wave: np.ndarray, sr: int) -> None:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{uuid.uuid4().hex[:8]}-{path.name}"
    try:
        sf.write(str(tmp), np.asarray(wave, dtype=np.float32), sr, format="WAV", subtype="FLOAT")
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    import soundfile as sf

    wave, sr = sf.read(str(path), dtype="float32", always_2d=False)
    if wave.ndim > 1:
        wave = wave.mean(axis=1)
    return wave, sr


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# --- prompts and baseline --------------------------------------------------------------------
def _first(d: dict, keys: Sequence[str], default=None):
    for k in keys:
        if d.get(k) not in (None, ""):
            return d[k]
    return default


def import_bundle_prompts(
    rt: Runtime, bundle_dir: Path | None = None, progress: Progress | None = None,
    source: str = "bundle",
) -> dict:
    """Load `<bundle>/prompts/prompts.jsonl` (+ its wavs) into the prompts table. Idempotent:
    a prompt whose (source, audio sha256) is stored is skipped. Audio is copied into
    `<data_dir>/audio/prompts/`, tokenized with `rt.tokenizer`, `reference_text` from the jsonl.
    Accepted keys: audio|audio_path|wav|path|file, text|reference_text|transcript, split, id."""
    progress = progress or _noop
    bundle = Path(bundle_dir or rt.settings.bundle_dir)
    index = bundle / "prompts" / "prompts.jsonl"
    if not index.exists():
        raise FileNotFoundError(f"no prompt index at {index} (run `python -m backend bootstrap`)")
    rows = [json.loads(x) for x in index.read_text().splitlines() if x.strip()]
    dest_dir = rt.settings.audio_dir / "prompts"
    dest_dir.mkdir(parents=True, exist_ok=True)
    with rt.store.session() as s:
        known = set(s.scalars(select(Prompt.audio_sha256).where(Prompt.source == source)))
    added = skipped = 0
    tok = None
    for i, row in enumerate(rows):
        rel = _first(row, ("audio", "audio_path", "wav", "path", "file"))
        if rel is None:
            raise ValueError(f"{index}:{i + 1}: no audio path")
        src = Path(rel)
        if not src.is_absolute():
            src = (index.parent / rel) if (index.parent / rel).exists() else bundle / rel
        digest = _sha256(src)
        if digest in known:
            skipped += 1
            continue
        tok = tok or rt.tokenizer
        wave, sr = read_wav(src)
        units = tok.encode(wave, sr)
        dst = dest_dir / f"{digest[:16]}{src.suffix or '.wav'}"
        if not dst.exists():
            tmp = dest_dir / f".tmp-{uuid.uuid4().hex[:8]}"
            shutil.copyfile(src, tmp)
            os.replace(tmp, dst)
        meta = {k: v for k, v in row.items() if k not in ("audio", "audio_path", "wav", "path",
                                                          "file", "text", "reference_text")}
        with rt.store.session() as s:
            s.add(Prompt(
                audio_path=str(dst), audio_sha256=digest, duration_s=max(len(wave) / sr, 1e-3),
                units=[int(u) for u in units], transcript=None,
                reference_text=_first(row, ("text", "reference_text", "transcript")),
                source=source, split=str(row.get("split", "test")), meta=meta,
            ))
        known.add(digest)
        added += 1
        progress((i + 1) / len(rows), f"imported {added} prompts")
    return {"added": added, "skipped": skipped, "total": len(rows)}


def ensure_baseline(rt: Runtime) -> dict:
    """Register the configured base unit LM as the baseline version (idempotent): an existing
    baseline with the same base weights is returned as is."""
    cfg = rt.settings.models.unit_lm
    base_ref = str(cfg.path)
    with rt.store.session() as s:
        v = s.scalar(select(ModelVersion).where(
            ModelVersion.kind == "baseline", ModelVersion.base_ref == base_ref
        ).order_by(ModelVersion.id))
        if v is not None:
            return registry.version_dict(v)
        taken = set(s.scalars(select(ModelVersion.name)))
    stem = "mini-base" if rt.settings.world == "mini" else (Path(base_ref).name or "baseline")
    name, k = stem, 2
    while name in taken:
        name, k = f"{stem}-{k}", k + 1
    return registry.create_baseline(rt, name, base_ref, config=cfg.model_dump(mode="json"))


# --- generate --------------------------------------------------------------------------------
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


def generate(
    rt: Runtime, version: int | str, prompt_ids: Sequence[int] | None = None,
    split: str | None = None, n: int | None = None, seed: int | None = None,
    limit: int | None = None, progress: Progress | None = None, **param_overrides: Any,
) -> dict:
    """Sample `n` continuations per prompt with a model version, vocode them and store Sample
    rows. Resumable: (prompt, version, seed, index) rows that exist are skipped."""
    progress = progress or _noop
    ver = registry.get_version(rt, version)
    params = sampling_params(rt, n=n, seed=seed, **param_overrides)
    pids = select_prompts(rt, prompt_ids, split, limit)
    if not pids:
        raise ValueError(f"no prompts selected (split={split!r}); import prompts first")
    with rt.store.session() as s:
        have: dict[int, set[int]] = {}
        for pid, idx in s.execute(select(Sample.prompt_id, Sample.index).where(
            Sample.model_version_id == ver["id"], Sample.seed == params.seed,
            Sample.prompt_id.in_(pids),
        )):
            have.setdefault(pid, set()).add(idx)
        todo = [p for p in pids if len(have.get(p, ())) < params.n]
        units_of = dict(s.execute(select(Prompt.id, Prompt.units).where(Prompt.id.in_(todo))).all())
    bs = max(1, rt.settings.generation.batch_size)
    out_dir = rt.settings.audio_dir / "samples" / ver["name"]
    made = 0
    progress(0.0, f"{len(todo)} of {len(pids)} prompts to sample")
    adapter = rt.adapter(ver)
    vocoder = rt.vocoder if todo else None
    for b in range(0, len(todo), bs):
        batch = todo[b : b + bs]
        with rt.lm_lock:
            conts = rt.unit_lm.sample([units_of[p] for p in batch], params, adapter=adapter)
        rows = []
        for pid, cs in zip(batch, conts, strict=True):
            for i, units in enumerate(cs):
                if i in have.get(pid, ()):
                    continue
                path = out_dir / f"{pid}_{params.seed}_{i}.wav"
                write_wav_atomic(path, vocoder.decode(list(units)), vocoder.sample_rate)
                rows.append(Sample(
                    prompt_id=pid, model_version_id=ver["id"], seed=params.seed, index=i,
                    sampling_params=_params_dict(params), units=[int(u) for u in units],
                    audio_path=str(path),
                ))
        with rt.store.session() as s:
            s.add_all(rows)
        made += len(rows)
        progress((b + len(batch)) / len(todo), f"sampled {b + len(batch)}/{len(todo)} prompts")
    return {"version": ver["name"], "prompts": len(pids), "new_samples": made,
            "skipped_prompts": len(pids) - len(todo)}


def _params_dict(p: SamplingParams) -> dict:
    from dataclasses import asdict

    return asdict(p)


# --- transcribe ------------------------------------------------------------------------------
def transcribe(
    rt: Runtime, sample_ids: Sequence[int] | None = None, prompts: bool = True,
    version: int | str | None = None, progress: Progress | None = None,
) -> dict:
    """ASR over samples (and prompts) that have no transcript yet, batched."""
    progress = progress or _noop
    vid = registry.get_version(rt, version)["id"] if version is not None else None
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
    asr = rt.asr if todo else None
    for b in range(0, len(todo), bs):
        batch = todo[b : b + bs]
        loaded = [read_wav(p) for _, _, p in batch]
        # one call per sample rate (normally one)
        texts: list[str | None] = [None] * len(batch)
        for sr in sorted({sr for _, sr in loaded}):
            idx = [k for k, (_, r) in enumerate(loaded) if r == sr]
            for k, t in zip(idx, asr.transcribe([loaded[k][0] for k in idx], sr), strict=True):
                texts[k] = t
        with rt.store.session() as s:
            for (kind, rid, _), text in zip(batch, texts, strict=True):
                row = s.get(Sample if kind == "s" else Prompt, rid)
                row.transcript = (text or "").strip()
        progress((b + len(batch)) / len(todo), f"transcribed {b + len(batch)}/{len(todo)}")
    return {"transcribed": len(todo)}


# --- judge -----------------------------------------------------------------------------------
def rater_key(judge) -> str:
    return f"ai:{judge.name}@{judge.prompt_version}"


def judge(
    rt: Runtime, judges: Sequence[str] | None = None, sample_ids: Sequence[int] | None = None,
    version: int | str | None = None, progress: Progress | None = None, batch: int = 32,
) -> dict:
    """Score samples with each judge. Samples already scored by a judge (same prompt version)
    are skipped; failure rows are retried and updated. Missing transcripts are made first."""
    progress = progress or _noop
    names = list(judges) if judges else [j.name for j in rt.settings.models.judges]
    transcribe(rt, sample_ids=sample_ids, version=version)
    vid = registry.get_version(rt, version)["id"] if version is not None else None
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
            scores = list(ex.map(lambda c: _safe_score(c[0], c[4], c[5]), chunk))
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


def _safe_score(jd, prompt_text: str, cont_text: str):
    from models.interfaces import Score

    try:
        return jd.score(prompt_text, cont_text)
    except Exception as e:  # noqa: BLE001 - a crashing judge is a failed judgment, not a crash
        return Score(None, judge=jd.name, prompt_version=jd.prompt_version,
                     error=f"{type(e).__name__}: {e}")


# --- jobs ------------------------------------------------------------------------------------
@handler("import_prompts", resumable=True)
def _job_import(ctx: JobContext) -> dict:
    return import_bundle_prompts(ctx.runtime, ctx.params.get("bundle_dir"), ctx.progress)


@handler("generate", resumable=True)
def _job_generate(ctx: JobContext) -> dict:
    p = dict(ctx.params)
    version = p.pop("version", None) or ensure_baseline(ctx.runtime)["name"]
    return generate(ctx.runtime, version, progress=ctx.progress, **p)


@handler("transcribe", resumable=True)
def _job_transcribe(ctx: JobContext) -> dict:
    return transcribe(ctx.runtime, progress=ctx.progress, **ctx.params)


@handler("judge", resumable=True)
def _job_judge(ctx: JobContext) -> dict:
    return judge(ctx.runtime, progress=ctx.progress, **ctx.params)


# --- CLI -------------------------------------------------------------------------------------
def tqdm_progress(desc: str) -> tuple[Progress, Callable[[], None]]:
    from tqdm import tqdm

    bar = tqdm(total=1000, desc=desc, unit="‰", leave=False)

    def update(frac: float, msg: str = "") -> None:
        bar.n = int(frac * 1000)
        if msg:
            bar.set_postfix_str(msg[:60])
        bar.refresh()

    return update, bar.close


def _run(args, fn, desc, **kw) -> None:
    from backend.cli import runtime_from

    rt = runtime_from(args)
    update, close = tqdm_progress(desc)
    try:
        print(json.dumps(fn(rt, progress=update, **kw), indent=2, default=str))
    finally:
        close()


def add_cli(sub) -> None:
    g = sub.add_parser("generate", help="sample continuations with a model version")
    g.add_argument("version", nargs="?", default=None, help="name or id (default: baseline)")
    g.add_argument("--split", default=None)
    g.add_argument("--n", type=int, default=None)
    g.add_argument("--seed", type=int, default=None)
    g.add_argument("--limit", type=int, default=None, help="at most this many prompts")

    def cmd_generate(args):
        from backend.cli import runtime_from

        rt = runtime_from(args)
        version = args.version or ensure_baseline(rt)["name"]
        update, close = tqdm_progress("generate")
        try:
            res = generate(rt, version, split=args.split, n=args.n, seed=args.seed,
                           limit=args.limit, progress=update)
        finally:
            close()
        print(json.dumps(res, indent=2))

    g.set_defaults(func=cmd_generate)

    t = sub.add_parser("transcribe", help="ASR over samples and prompts without transcript")
    t.set_defaults(func=lambda a: _run(a, transcribe, "transcribe"))

    j = sub.add_parser("judge", help="AI-judge samples (retries failed judgments)")
    j.add_argument("--judge", action="append", default=None, help="judge name (repeatable)")
    j.add_argument("--version", default=None)
    j.set_defaults(func=lambda a: _run(a, judge, "judge", judges=a.judge, version=a.version))

    ip = sub.add_parser("import-prompts", help="load the mini bundle's prompts into the store")
    ip.add_argument("--bundle", default=None, help="bundle dir (default: <data_dir>/bundle)")
    ip.set_defaults(func=lambda a: _run(a, import_bundle_prompts, "import",
                                        bundle_dir=a.bundle and Path(a.bundle)))
