"""Prompt upload (validated, normalized, tokenized) and prompt look-ups for the Listen tab.

Upload rules: WAV, FLAC or MP3 (read by libsndfile), at most `rating.max_upload_mb` and
`rating.max_upload_seconds`; empty, unreadable, zero-length and NaN/Inf audio is refused with a
clear message. Accepted audio is mixed to mono, resampled to 16 kHz, stored as 16-bit WAV under
`<data_dir>/audio/prompts/<sha256>.wav` (the client's file name is never used), written
atomically, tokenized with `rt.tokenizer`, and recorded as a `Prompt` row. Any failure leaves
neither a file nor a row behind.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import String, cast, func, or_, select

from backend.runtime import Runtime
from db.schema import ModelVersion, Prompt, Sample

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


def _wav_bytes(wave: np.ndarray) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, wave, TARGET_SR, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{uuid.uuid4().hex}"
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


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
    wave, duration = decode_audio(rt, data)
    wav = _wav_bytes(wave)
    digest = hashlib.sha256(wav).hexdigest()
    with rt.store.session() as s:
        dup = s.scalar(select(Prompt).where(Prompt.source == source,
                                            Prompt.audio_sha256 == digest))
        if dup is not None:
            return {**prompt_dict(dup), "duplicate": True}
    units = _tokenize(rt, wave, tokenizer)
    dest = rt.settings.audio_dir / "prompts" / f"{digest}.wav"
    created = not dest.exists()
    if created:
        _atomic_write(dest, wav)
    try:
        with rt.store.session() as s:
            p = Prompt(
                audio_path=str(dest), audio_sha256=digest, duration_s=max(duration, 1e-3),
                units=units, transcript=None,
                reference_text=(reference_text or None), source=source, split=split,
                meta={"uploaded": True}, created_by=user_id,
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
    with transcripts and ratings (AI mean score, human MOS, A/B record)."""
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
                                           "samples": []})
            if len(v["samples"]) < per_version:
                v["samples"].append({"id": smp.id, "audio_path": smp.audio_path,
                                     "transcript": smp.transcript, "index": smp.index})
        view = {"prompt": prompt_dict(p), "versions": list(versions.values())}
    ids = [x["id"] for v in view["versions"] for x in v["samples"]]
    ratings = sample_ratings(rt, ids)
    for v in view["versions"]:
        for x in v["samples"]:
            x["ratings"] = ratings.get(x["id"], {})
    return view


# --- live continuation of an uploaded clip ---------------------------------------------------
def continue_clip(rt: Runtime, data: bytes, max_versions: int = 4) -> dict:
    """Tokenize an uploaded clip and continue it with the baseline and the newest aligned
    versions, right now (not stored as a prompt). Needs the speech components; raises
    PromptError with a plain reason when they are not available."""
    from backend import registry

    wave, duration = decode_audio(rt, data)
    units = _tokenize(rt, wave)
    try:
        from backend import pipeline
    except Exception as e:  # noqa: BLE001
        raise PromptError(f"generation is not available yet ({type(e).__name__})") from None
    versions = registry.list_versions(rt)
    if not versions:
        raise PromptError("no model version is registered yet")
    base = [v for v in versions if v["kind"] == "baseline"][:1]
    aligned = [v for v in versions if v["kind"] == "aligned"][-(max_versions - 1):]
    digest = hashlib.sha256(_wav_bytes(wave)).hexdigest()[:24]
    out_dir = rt.settings.audio_dir / "live"
    prompt_path = out_dir / f"{digest}_prompt.wav"
    if not prompt_path.exists():
        _atomic_write(prompt_path, _wav_bytes(wave))
    params = pipeline.sampling_params(rt, n=1)
    results = []
    try:
        vocoder, asr = rt.vocoder, rt.asr
    except Exception as e:  # noqa: BLE001
        raise PromptError(f"the vocoder/ASR are not available: {type(e).__name__}") from None
    prompt_text = ""
    try:
        prompt_text = asr.transcribe([wave], TARGET_SR)[0]
    except Exception:  # noqa: BLE001
        prompt_text = ""
    for v in base + aligned:
        try:
            adapter = rt.adapter(v)
            with rt.lm_lock:
                cont = rt.unit_lm.sample([units], params, adapter=adapter)[0][0]
            audio = vocoder.decode(list(cont))
            path = out_dir / f"{digest}_{v['id']}.wav"
            buf = io.BytesIO()
            import soundfile as sf

            sf.write(buf, audio, vocoder.sample_rate, format="WAV", subtype="PCM_16")
            _atomic_write(path, buf.getvalue())
            text = asr.transcribe([audio], vocoder.sample_rate)[0]
            score = None
            try:
                sc = rt.judge().score(prompt_text, text)
                score = sc.value if sc.ok else None
            except Exception:  # noqa: BLE001 - a score is optional here
                score = None
            results.append({"version": v["name"], "audio_path": str(path),
                            "transcript": text, "ai_score": score, "error": None})
        except Exception as e:  # noqa: BLE001 - show the others
            results.append({"version": v["name"], "audio_path": None, "transcript": None,
                            "ai_score": None, "error": f"{type(e).__name__}: {e}"})
    return {"prompt_path": str(prompt_path), "prompt_text": prompt_text, "duration_s": duration,
            "n_units": len(units), "continuations": results}
