"""Seed a store with a tiny rating world through the services, without any ML: short generated
wavs as prompts (a fake tokenizer), a baseline and an aligned version, samples pointing at wavs
written here, and A/B rating tasks."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import soundfile as sf

from backend import prompts, rating, registry, users
from db.schema import Sample

SR = 16000


class FakeTokenizer:
    sample_rate = SR
    vocab_size = 100

    def encode(self, wave, sample_rate, deduplicate=True):
        n = max(1, int(len(wave) / sample_rate * 25))
        return [int(abs(x) * 997) % 100 for x in np.asarray(wave)[:: max(1, len(wave) // n)]][:n]


def tone(freq: float, seconds: float = 0.6, sr: int = SR, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def wav_bytes(wave: np.ndarray, sr: int = SR, fmt: str = "WAV") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, wave, sr, format=fmt)
    return buf.getvalue()


def seed(rt, n_prompts: int = 4, seconds: float = 0.6, raters=("rater1", "rater2"),
         password: str = "rater-pass-1", samples_per_version: int = 2, split: str = "train",
         per_prompt_pairs: int = 2, tasks: bool = True) -> dict:
    """`n_prompts` prompts of `split`, each with `samples_per_version` clips of `seconds` per
    version, each with a unit sequence of its own (identical ones make no A/B task); A/B tasks
    pair same-index clips, up to `per_prompt_pairs` per prompt (none without `tasks`). Load tests
    use a split of their own ("bench") so a real DPO round or generation job never picks these
    fake-unit prompts up."""
    for name in raters:
        try:
            users.add_user(rt, name, password, "rater")
        except users.UserError:
            pass
    base = registry.create_baseline(rt, "test-base", "test://base")
    adapter = Path(rt.settings.data_dir) / "tmp-adapter"
    adapter.mkdir(parents=True, exist_ok=True)
    (adapter / "adapter.bin").write_bytes(b"fake adapter")
    try:
        aligned = registry.get_version(rt, "test-aligned")
    except registry.RegistryError:
        aligned = registry.derive_aligned(rt, base.id, adapter, 1, name="test-aligned")
    out = Path(rt.settings.audio_dir) / "samples" / "seed"
    out.mkdir(parents=True, exist_ok=True)
    pids = []
    for i in range(n_prompts):
        p = prompts.upload_prompt(rt, wav_bytes(tone(220 + 40 * i, seconds)),
                                  reference_text=f"seed prompt number {i}",
                                  tokenizer=FakeTokenizer(), split=split)
        pids.append(p["id"])
        with rt.store.session() as s:
            for v in (base, aligned):
                for k in range(samples_per_version):
                    path = out / f"{p['id']}_{v.id}_{k}.wav"
                    sf.write(path, tone(300 + 50 * k + 30 * v.id, seconds), SR)
                    exists = s.query(Sample).filter_by(prompt_id=p["id"],
                                                        model_version_id=v.id, seed=0,
                                                        index=k).first()
                    if exists is None:
                        s.add(Sample(prompt_id=p["id"], model_version_id=v.id, seed=0,
                                     index=k, audio_path=str(path),
                                     transcript=f"{v.name} continuation {k}",
                                     units=[1, 2, v.id, k]))
    created = rating.sync_tasks(rt, per_prompt_pairs=per_prompt_pairs) if tasks else {}
    return {"prompts": pids, "base": base, "aligned": aligned, "tasks": created}


def play_through(rt, user_id: int, t: dict) -> None:
    """Each clip of task `t` served and reported heard from start to end (what a player does)."""
    for side, path in t["audio"].items():
        seconds = sf.info(path).duration if Path(path).is_file() else 0.0
        rating.record_served(rt, user_id, t["assignment_id"], side)
        rating.record_heard(rt, user_id, t["assignment_id"], side, [[0.0, seconds]])
