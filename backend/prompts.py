"""Prompts: import of a bundle's prompt set, upload (validated, normalized, tokenized), look-ups
for the Listen tab, and live continuation of an uploaded clip.

Upload rules: WAV, FLAC or MP3 (read by libsndfile), at most `rating.max_upload_mb` and
`rating.max_upload_seconds`; empty, unreadable, zero-length and NaN/Inf audio is refused with a
clear message. Accepted audio is mixed to mono, resampled to 16 kHz, stored as 16-bit WAV under
`<data_dir>/audio/prompts/<sha256>.wav` (the client's file name is never used), written
atomically, tokenized with `rt.tokenizer`, and recorded as a `Prompt` row. Any failure leaves
neither a file nor a row behind.
"""

from __future__ import annotations

import io
import json
import os
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import String, cast, func, or_, select

from backend.files import (
    atomic_copy_file,
    atomic_write_bytes,
    read_wav,
    sha256_bytes,
    sha256_file,
    wav_bytes,
    write_wav,
)
from backend.jobs import JobContext, handler
from backend.progress import Progress, noop
from backend.runtime import Runtime, UnitLayoutError
from db.schema import Judgment, ModelVersion, Prompt, Sample

TARGET_SR = 16000
FORMATS = {"WAV", "WAVEX", "RF64", "FLAC", "MP3"}


class PromptError(ValueError):
    """A refused upload; the message is shown to the user as is."""


# --- validation ------------------------------------------------------------------------------
def decode_audio(rt: Runtime, data: bytes) -> tuple[np.ndarray, float]:
    """Validate and normalize uploaded bytes: mono float32 at 16 kHz and its duration (s)."""
    import soundfile as sf

    cfg = rt.settings.rating
    if data is None or len(data) == 0:
        raise PromptError("the file is empty")
    if len(data) > cfg.max_upload_mb * 1024 * 1024:
        raise PromptError(f"the file is larger than {cfg.max_upload_mb:g} MB")
    try:
        info = sf.info(io.BytesIO(data))
    except Exception:  # noqa: BLE001 - libsndfile says "not audio" in many ways
        raise PromptError("not a readable audio file: upload WAV, FLAC or MP3") from None
    if info.format not in FORMATS:
        raise PromptError(f"unsupported audio format {info.format}: upload WAV, FLAC or MP3")
    if info.frames <= 0 or info.samplerate <= 0:
        raise PromptError("the audio has no samples (zero length)")
    if info.samplerate < 8000:
        raise PromptError(f"sample rate {info.samplerate} Hz is too low (at least 8 kHz)")
    duration = info.frames / info.samplerate
    if duration > cfg.max_upload_seconds:
        raise PromptError(
            f"the clip is {duration:.1f} s long; at most {cfg.max_upload_seconds:g} s allowed"
        )
    try:
        wave, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception:  # noqa: BLE001
        raise PromptError("the audio could not be decoded (corrupt file?)") from None
    if wave.size == 0:
        raise PromptError("the audio has no samples (zero length)")
    if not np.isfinite(wave).all():
        raise PromptError("the audio contains invalid samples (NaN or infinity)")
    mono = wave.mean(axis=1)
    if sr != TARGET_SR:
        from math import gcd

        from scipy.signal import resample_poly

        g = gcd(int(sr), TARGET_SR)
        mono = resample_poly(mono, TARGET_SR // g, int(sr) // g).astype(np.float32)
    if mono.size == 0:
        raise PromptError("the audio has no samples (zero length)")
    peak = float(np.max(np.abs(mono)))
    if peak > 1.0:
        mono = mono / peak
    return mono.astype(np.float32), mono.size / TARGET_SR


def read_upload(rt: Runtime, path: str | os.PathLike) -> bytes:
    """Read an uploaded temp file, checking its size before reading it."""
    p = Path(path)
    if not p.is_file():
        raise PromptError("no file received")
    limit = rt.settings.rating.max_upload_mb * 1024 * 1024
    if p.stat().st_size > limit:
        raise PromptError(f"the file is larger than {rt.settings.rating.max_upload_mb:g} MB")
    return p.read_bytes()


def _tokenize(rt: Runtime, wave: np.ndarray, tokenizer=None) -> list[int]:
    try:
        tok = tokenizer if tokenizer is not None else rt.tokenizer
    except Exception as e:  # noqa: BLE001 - missing bundle, model package not built yet, ...
        raise PromptError(
            "the speech tokenizer is not available (is the world built? run "
            f"`python -m backend bootstrap`): {type(e).__name__}"
        ) from None
    try:
        units = tok.encode(wave, TARGET_SR)
    except Exception as e:  # noqa: BLE001
        raise PromptError(f"tokenizing the audio failed: {type(e).__name__}: {e}") from None
    units = [int(u) for u in units]
    if not units:
        raise PromptError("the audio gave no speech units (silence?)")
    return units


def cut_prompt(rt: Runtime, wave: np.ndarray, sr: int) -> tuple[np.ndarray, float | None]:
    """A prompt's first `generation.prompt_seconds` (the paper prompts with 3 s of speech), and
    the original duration when it was longer (None when kept whole; 0 s keeps every prompt
    whole)."""
    limit = rt.settings.generation.prompt_seconds
    if not limit or wave.size <= int(round(limit * sr)):
        return wave, None
    return wave[: int(round(limit * sr))], wave.size / sr


# --- a bundle's prompt set --------------------------------------------------------------------
def _first(d: dict, keys: Sequence[str], default=None):
    for k in keys:
        if d.get(k) not in (None, ""):
            return d[k]
    return default


def import_bundle_prompts(
    rt: Runtime, bundle_dir: Path | None = None, progress: Progress | None = None,
    source: str = "bundle", split: str | None = None,
) -> dict:
    """Load a prompt index (+ its wavs) into the prompts table: `<dir>/prompts/prompts.jsonl`
    for a directory (the mini world's bundle by default), or a `.jsonl` file given directly
    (one's own prompts). Idempotent: a prompt whose (source, audio sha256) is stored is skipped.
    Audio is copied into `<data_dir>/audio/prompts/`, tokenized with `rt.tokenizer`.
    Accepted keys: audio|audio_path|wav|path|file (relative to the index's folder),
    text|reference_text|transcript, split, id. A row without `split` takes `split`; a split
    that nothing reads (rounds read `generation.train_split`, evaluation
    `generation.heldout_split`, and `test` is kept aside) is refused before anything is stored."""
    progress = progress or noop
    given = Path(bundle_dir or rt.settings.bundle_dir)
    index = given if given.suffix == ".jsonl" else given / "prompts" / "prompts.jsonl"
    bundle = given.parent if given.suffix == ".jsonl" else given
    if not index.exists():
        raise FileNotFoundError(f"no prompt index at {index} (run `python -m backend bootstrap` "
                                "for the mini world's, or give a prompts .jsonl file)")
    rows = [json.loads(x) for x in index.read_text().splitlines() if x.strip()]
    gen = rt.settings.generation
    splits = (gen.train_split, gen.heldout_split, "test")
    for i, row in enumerate(rows):
        row_split = row.get("split", split)
        if row_split is None:
            raise ValueError(f"{index}:{i + 1}: no split: give each row a \"split\" or pass "
                             f"one for all (--split {gen.train_split})")
        if row_split not in splits:
            raise ValueError(f"{index}:{i + 1}: split {row_split!r} is read by nothing "
                             f"(known: {', '.join(splits)})")
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
        digest = sha256_file(src)
        if digest in known:
            skipped += 1
            continue
        tok = tok or rt.tokenizer
        wave, sr = read_wav(src)
        wave, cut_from = cut_prompt(rt, wave, sr)
        units = tok.encode(wave, sr)
        dst = dest_dir / f"{digest[:16]}{'.wav' if cut_from else src.suffix or '.wav'}"
        if not dst.exists():
            if cut_from:  # the stored clip is what the model is prompted with
                write_wav(dst, wave, sr, "PCM_16")
            else:
                atomic_copy_file(src, dst)
        meta = {k: v for k, v in row.items() if k not in ("audio", "audio_path", "wav", "path",
                                                          "file", "text", "reference_text")}
        if cut_from:
            meta["cut_from_s"] = round(cut_from, 3)
        with rt.store.session() as s:
            s.add(Prompt(
                audio_path=str(dst), audio_sha256=digest, duration_s=max(len(wave) / sr, 1e-3),
                units=[int(u) for u in units], transcript=None,
                reference_text=_first(row, ("text", "reference_text", "transcript")),
                source=source, split=str(row.get("split", split)), meta=meta,
            ))
        known.add(digest)
        added += 1
        progress((i + 1) / len(rows), f"imported {added} prompts")
    return {"added": added, "skipped": skipped, "total": len(rows)}


@handler("import_prompts", resumable=True)
def _job_import(ctx: JobContext) -> dict:
    return import_bundle_prompts(ctx.runtime, ctx.params.get("bundle_dir"), ctx.progress)


# --- upload ----------------------------------------------------------------------------------
def upload_prompt(
    rt: Runtime,
    data: bytes,
    user_id: int | None = None,
    source: str = "upload",
    split: str = "test",
    reference_text: str | None = None,
    tokenizer=None,
) -> dict:
    """Validate, store and tokenize an uploaded clip. Returns the prompt as a dict with
    `duplicate=True` when the same audio was uploaded before (nothing new is stored)."""
    wave, _ = decode_audio(rt, data)
    wave, cut_from = cut_prompt(rt, wave, TARGET_SR)
    duration = wave.size / TARGET_SR
    wav = wav_bytes(wave, TARGET_SR)
    digest = sha256_bytes(wav)
    with rt.store.session() as s:
        dup = s.scalar(select(Prompt).where(Prompt.source == source,
                                            Prompt.audio_sha256 == digest))
        if dup is not None:
            return {**prompt_dict(dup), "duplicate": True}
    units = _tokenize(rt, wave, tokenizer)
    dest = rt.settings.audio_dir / "prompts" / f"{digest}.wav"
    created = not dest.exists()
    if created:
        atomic_write_bytes(dest, wav)
    try:
        with rt.store.session() as s:
            p = Prompt(
                audio_path=str(dest), audio_sha256=digest, duration_s=max(duration, 1e-3),
                units=units, transcript=None,
                reference_text=(reference_text or None), source=source, split=split,
                meta={"uploaded": True, **({"cut_from_s": round(cut_from, 3)} if cut_from
                                           else {})}, created_by=user_id,
            )
            s.add(p)
            s.flush()
            return {**prompt_dict(p), "duplicate": False}
    except Exception:
        if created:
            dest.unlink(missing_ok=True)
        raise


def prompt_dict(p: Prompt) -> dict[str, Any]:
    return {
        "id": p.id, "audio_path": p.audio_path, "duration_s": p.duration_s,
        "n_units": len(p.units or []), "transcript": p.transcript,
        "reference_text": p.reference_text, "source": p.source, "split": p.split,
    }


# --- look-ups for Listen ---------------------------------------------------------------------
def count_prompts(rt: Runtime) -> int:
    with rt.store.read() as s:
        return int(s.scalar(select(func.count()).select_from(Prompt)) or 0)


def count_samples(rt: Runtime) -> int:
    with rt.store.read() as s:
        return int(s.scalar(select(func.count()).select_from(Sample)) or 0)


def search_prompts(rt: Runtime, query: str = "", limit: int = 50) -> list[dict]:
    """Prompts whose id, transcript or reference text matches `query` (all when empty)."""
    q = (query or "").strip()
    with rt.store.read() as s:
        stmt = select(Prompt).order_by(Prompt.id).limit(limit)
        if q:
            like = f"%{q.lower()}%"
            stmt = stmt.where(or_(
                func.lower(func.coalesce(Prompt.transcript, "")).like(like),
                func.lower(func.coalesce(Prompt.reference_text, "")).like(like),
                cast(Prompt.id, String) == q.lstrip("#"),
            ))
        return [prompt_dict(p) for p in s.scalars(stmt)]


def random_prompt_id(rt: Runtime, with_samples: bool = True) -> int | None:
    with rt.store.read() as s:
        stmt = select(Prompt.id)
        if with_samples:
            stmt = stmt.where(Prompt.id.in_(select(Sample.prompt_id)))
        ids = list(s.scalars(stmt))
        if not ids and with_samples:
            ids = list(s.scalars(select(Prompt.id)))
    return random.choice(ids) if ids else None


def prompt_view(rt: Runtime, prompt_id: int, per_version: int = 2) -> dict | None:
    """A prompt and, per model version (baseline first), up to `per_version` continuations
    with transcripts, the training judge's per-word faults (`fault_marks`) and ratings (AI mean
    score, human MOS, A/B record)."""
    from backend.rating import sample_ratings

    with rt.store.read() as s:
        p = s.get(Prompt, int(prompt_id))
        if p is None:
            return None
        rows = s.execute(
            select(Sample, ModelVersion.name, ModelVersion.kind, ModelVersion.round_index)
            .join(ModelVersion, Sample.model_version_id == ModelVersion.id)
            .where(Sample.prompt_id == p.id, Sample.is_trap.is_(False))
            .order_by(ModelVersion.kind != "baseline", ModelVersion.id, Sample.index, Sample.id)
        ).all()
        versions: dict[str, dict] = {}
        for smp, name, kind, rnd in rows:
            v = versions.setdefault(name, {"name": name, "kind": kind, "round": rnd,
                                           "id": smp.model_version_id, "samples": [],
                                           "n_samples": 0})
            v["n_samples"] += 1
            if len(v["samples"]) < per_version:
                v["samples"].append({"id": smp.id, "audio_path": smp.audio_path,
                                     "transcript": smp.transcript, "index": smp.index})
        judges = _training_judge_identities(rt, s)
        for v in versions.values():
            v["ai_mean"] = _prompt_means(s, judges, v["id"], p.id).get(p.id)
        view = {"prompt": prompt_dict(p), "versions": list(versions.values())}
    ids = [x["id"] for v in view["versions"] for x in v["samples"]]
    ratings = sample_ratings(rt, ids)
    ptext = view["prompt"].get("transcript") or view["prompt"].get("reference_text") or ""
    for v in view["versions"]:
        for x in v["samples"]:
            x["ratings"] = ratings.get(x["id"], {})
            x["faults"] = fault_marks(rt, ptext, x["transcript"])
    return view


def training_judge_names(rt: Runtime) -> list[str]:
    return [j.name for j in rt.settings.models.judges if j.trains]


def _training_judge_identities(rt: Runtime, s) -> list[str]:
    """Every stored identity (name and prompt version) of the training judges."""
    from backend import queries

    return [queries.judge_identity(name, pv) for name, pv in s.execute(
        select(Judgment.judge_name, Judgment.prompt_version).where(
            Judgment.kind == "ai", Judgment.judge_name.in_(training_judge_names(rt)))
        .distinct())]


def _prompt_means(s, judges: list[str], version_id: int | None,
                  prompt_id: int | None = None) -> dict[int, float]:
    """Prompt id -> the training judges' mean score over a version's continuations of it (one
    prompt or all): what Listen's featured gain and each card's "mean of n" are computed from."""
    from backend import queries

    per: dict[int, list[float]] = {}
    rows = queries.ai_scores(s, judges=judges, version_id=version_id,
                             prompt_id=prompt_id) if version_id else []
    for a in rows:
        per.setdefault(a.prompt_id, []).append(a.value)
    return {pid: float(np.mean(x)) for pid, x in per.items()}


def featured_prompt(rt: Runtime) -> dict | None:
    """The prompt Listen opens on: among prompts with continuations of both the baseline and
    the newest aligned version that has any, the one where that version gained most over the
    baseline by the training judges' mean score (ties: the lowest id). Without such a version,
    the first prompt with judged baseline continuations (or any continuations).
    Returns {"prompt_id", "baseline", "aligned" (name or None), "gain" (or None)}."""
    from backend import registry

    versions = registry.list_versions(rt)
    base = next((v for v in versions if v.kind == "baseline"), None)
    with rt.store.read() as s:
        with_samples = set(s.scalars(select(Sample.model_version_id).where(
            Sample.is_trap.is_(False)).distinct()))
        aligned = max((v for v in versions if v.kind == "aligned" and v.id in with_samples),
                      key=lambda v: v.id, default=None)
        judges = _training_judge_identities(rt, s)

        def means(v) -> dict[int, float]:
            return _prompt_means(s, judges, v.id if v else None)

        def prompts_of(v) -> set[int]:
            return set(s.scalars(select(Sample.prompt_id).where(
                Sample.model_version_id == v.id, Sample.is_trap.is_(False)))) if v else set()

        b, a = means(base), means(aligned)
        both = sorted(set(b) & set(a), key=lambda pid: (-(a[pid] - b[pid]), pid))
        if aligned and both:
            pid = both[0]
            return {"prompt_id": pid, "baseline": base.name, "aligned": aligned.name,
                    "gain": a[pid] - b[pid]}
        shared = sorted(prompts_of(base) & prompts_of(aligned)) if aligned else []
        if shared:
            return {"prompt_id": shared[0], "baseline": base.name, "aligned": aligned.name,
                    "gain": None}
        first = sorted(b) or sorted(prompts_of(base)) or sorted(
            s.scalars(select(Sample.prompt_id).where(Sample.is_trap.is_(False)).distinct()))
    if not first:
        return None
    return {"prompt_id": first[0], "baseline": base.name if base else None, "aligned": None,
            "gain": None}


def fault_marks(rt: Runtime, prompt_text: str, text: str | None
                ) -> list[tuple[str, str | None]] | None:
    """Each word of a continuation with the fault the training judge counts it as (off topic,
    wrong pronoun, other name), for judges that can say so per word (the mini judge); None
    otherwise (or when no judge can be built)."""
    if not text:
        return None
    try:
        jd = rt.judge(None)
    except Exception:  # noqa: BLE001 - no judge, no marks; Listen still works
        return None
    faults = getattr(jd, "faults", None)
    return faults(prompt_text or "", text) if faults else None


# --- live continuation of an uploaded clip ---------------------------------------------------
def continue_clip(rt: Runtime, data: bytes, max_versions: int = 4) -> dict:
    """Tokenize an uploaded clip and continue it with the baseline and the newest aligned
    versions, right now (not stored as a prompt), through the loop's own steps. Needs the
    speech components; raises PromptError with a plain reason when they are not available."""
    from backend import registry
    from backend.loop.generate import sample_continuations, sampling_params
    from backend.loop.judge import safe_score
    from backend.loop.transcribe import transcribe_waves

    wave, _ = decode_audio(rt, data)
    wave, _ = cut_prompt(rt, wave, TARGET_SR)
    duration = wave.size / TARGET_SR
    units = _tokenize(rt, wave)
    versions = registry.list_versions(rt)
    if not versions:
        raise PromptError("no model version is registered yet")
    base = [v for v in versions if v.kind == "baseline"][:1]
    aligned = [v for v in versions if v.kind == "aligned"][-(max_versions - 1):]
    prompt_wav = wav_bytes(wave, TARGET_SR)
    digest = sha256_bytes(prompt_wav)[:24]
    out_dir = rt.settings.audio_dir / "live"
    prompt_path = out_dir / f"{digest}_prompt.wav"
    if not prompt_path.exists():
        atomic_write_bytes(prompt_path, prompt_wav)
    params = sampling_params(rt, n=1)
    results = []
    try:
        vocoder, _ = rt.vocoder, rt.asr
    except Exception as e:  # noqa: BLE001
        raise PromptError(f"the vocoder/ASR are not available: {type(e).__name__}") from None
    try:
        rt.check_unit_layout()
    except UnitLayoutError as e:
        raise PromptError(str(e)) from None
    try:
        prompt_text = transcribe_waves(rt, [(wave, TARGET_SR)])[0]
    except Exception:  # noqa: BLE001
        prompt_text = ""
    for v in base + aligned:
        try:
            cont = sample_continuations(rt, v, [units], params)[0][0]
            audio = vocoder.decode(list(cont))
            path = out_dir / f"{digest}_{v.id}.wav"
            atomic_write_bytes(path, wav_bytes(audio, vocoder.sample_rate))
            text = transcribe_waves(rt, [(audio, vocoder.sample_rate)])[0]
            try:
                sc = safe_score(rt.judge(), prompt_text, text)
                score = sc.value if sc.ok else None
            except Exception:  # noqa: BLE001 - a score is optional here
                score = None
            results.append({"version": v.name, "audio_path": str(path),
                            "transcript": text, "ai_score": score, "error": None})
        except Exception as e:  # noqa: BLE001 - show the others
            results.append({"version": v.name, "audio_path": None, "transcript": None,
                            "ai_score": None, "error": f"{type(e).__name__}: {e}"})
    return {"prompt_path": str(prompt_path), "prompt_text": prompt_text, "duration_s": duration,
            "n_units": len(units), "continuations": results}
