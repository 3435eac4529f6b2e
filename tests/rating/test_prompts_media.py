"""Prompt upload validation (backend.prompts) and safe media resolution (backend.media)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from sqlalchemy import func, select

from backend import media, prompts
from backend.config import Settings
from backend.runtime import Runtime
from db.schema import Prompt
from tests.rating.seed import FakeTokenizer, tone, wav_bytes


@pytest.fixture
def rt(tmp_path):
    r = Runtime(Settings(data_dir=tmp_path / "data",
                         database_url=f"sqlite:///{tmp_path / 'store.db'}"))
    yield r
    r.close()


def float_wav(wave) -> bytes:
    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, wave, 16000, format="WAV", subtype="FLOAT")
    return buf.getvalue()


def n_prompts(rt) -> int:
    with rt.store.session() as s:
        return s.scalar(select(func.count()).select_from(Prompt))


def files(rt) -> list:
    d = rt.settings.audio_dir / "prompts"
    return sorted(d.iterdir()) if d.exists() else []


def test_upload_stereo_44k_flac_is_mono_16k(rt):
    import soundfile as sf

    stereo = np.stack([tone(300, 1.0, sr=44100), tone(500, 1.0, sr=44100)], axis=1)
    p = prompts.upload_prompt(rt, wav_bytes(stereo, sr=44100, fmt="FLAC"),
                              tokenizer=FakeTokenizer())
    info = sf.info(p["audio_path"])
    assert (info.samplerate, info.channels) == (16000, 1)
    assert abs(p["duration_s"] - 1.0) < 0.01 and p["n_units"] > 0
    name = os.path.basename(p["audio_path"])
    assert len(name) == 64 + 4 and name.endswith(".wav")  # <sha256>.wav, never a client name
    again = prompts.upload_prompt(rt, wav_bytes(stereo, sr=44100, fmt="FLAC"),
                                  tokenizer=FakeTokenizer())
    assert again["duplicate"] and again["id"] == p["id"] and n_prompts(rt) == 1


def test_uploaded_prompt_is_cut_to_prompt_seconds(rt, tmp_path):
    """The model is prompted with the clip's first `generation.prompt_seconds` (the paper's
    3 s); the stored clip is exactly that, so Listen plays what the model heard."""
    import soundfile as sf

    p = prompts.upload_prompt(rt, wav_bytes(tone(300, 5.0)), tokenizer=FakeTokenizer())
    assert abs(p["duration_s"] - 3.0) < 0.01 and p["n_units"] == 75  # 3 s at 25 units/s
    assert abs(sf.info(p["audio_path"]).duration - 3.0) < 0.01
    whole = Runtime(Settings(data_dir=tmp_path / "whole", generation={"prompt_seconds": 0}))
    try:
        q = prompts.upload_prompt(whole, wav_bytes(tone(300, 5.0)), tokenizer=FakeTokenizer())
        assert abs(q["duration_s"] - 5.0) < 0.01
    finally:
        whole.close()


def test_upload_mp3(rt):
    p = prompts.upload_prompt(rt, wav_bytes(tone(300, 1.0, sr=16000), fmt="MP3"),
                              tokenizer=FakeTokenizer())
    assert p["audio_path"].endswith(".wav")


@pytest.mark.parametrize("data,match", [
    (b"", "empty"),
    (b"hello, not audio at all" * 10, "not a readable audio file"),
    (wav_bytes(np.zeros(0, np.float32)), "zero length|not a readable"),
    (float_wav(np.array([0.1, np.nan, 0.2] * 1000, np.float32)), "NaN"),
    (wav_bytes(tone(300, 40.0)), "at most 30 s"),
])
def test_bad_uploads_are_refused_and_leave_nothing(rt, data, match):
    with pytest.raises(prompts.PromptError, match=match):
        prompts.upload_prompt(rt, data, tokenizer=FakeTokenizer())
    assert n_prompts(rt) == 0 and files(rt) == []


def test_size_limit(rt):
    rt.settings.rating.max_upload_mb = 0.01
    with pytest.raises(prompts.PromptError, match="larger than"):
        prompts.upload_prompt(rt, wav_bytes(tone(300, 1.0)), tokenizer=FakeTokenizer())


def test_missing_tokenizer_is_a_clear_refusal(rt):
    class Broken:
        def encode(self, *a, **k):
            raise RuntimeError("boom")

    with pytest.raises(prompts.PromptError, match="tokenizing the audio failed"):
        prompts.upload_prompt(rt, wav_bytes(tone(300, 1.0)), tokenizer=Broken())
    with pytest.raises(prompts.PromptError, match="speech tokenizer is not available"):
        prompts.upload_prompt(rt, wav_bytes(tone(300, 1.0)))  # no bundle here
    assert n_prompts(rt) == 0 and files(rt) == []


def test_media_refuses_escapes(rt, tmp_path):
    inside = rt.settings.audio_dir / "x.wav"
    inside.parent.mkdir(parents=True, exist_ok=True)
    inside.write_bytes(wav_bytes(tone(300, 0.2)))
    assert media.resolve_audio(rt, inside) == inside.resolve()
    assert media.resolve_audio(rt, "audio/x.wav") == inside.resolve()
    secret = tmp_path / "secret.wav"
    secret.write_bytes(b"x")
    link = rt.settings.audio_dir / "link.wav"
    link.symlink_to(secret)
    for bad in (secret, link, rt.settings.audio_dir / ".." / ".." / "secret.wav",
                "../secret.wav", "/etc/passwd", "", None, "audio/missing.wav", "a\x00b"):
        with pytest.raises(media.MediaError):
            media.resolve_audio(rt, bad)
    assert media.safe_audio(rt, link) is None
    png = media.plot_png(rt, inside)
    assert png and png.endswith(".png") and media.plot_png(rt, secret) is None


def test_own_prompts_from_a_jsonl_land_in_splits_that_are_read(rt, tmp_path):
    """One's own prompts: a .jsonl given directly, audio paths relative to it. A row without
    a split takes the one given (it used to become `test`, which neither rounds nor evaluation
    read); a split nothing reads is refused before anything is stored."""
    import json

    from backend.loop.generate import select_prompts

    rt._components["tokenizer"] = FakeTokenizer()
    own = tmp_path / "own"
    (own / "wavs").mkdir(parents=True)
    for name, f in (("a", 300), ("b", 400), ("c", 500)):
        (own / "wavs" / f"{name}.wav").write_bytes(wav_bytes(tone(f, 1.0)))
    index = own / "prompts.jsonl"
    rows = [{"audio": "wavs/a.wav", "text": "hello"}, {"audio": "wavs/b.wav"},
            {"audio": "wavs/c.wav", "split": "dev"}]
    index.write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(ValueError, match=r"prompts.jsonl:1: no split.*--split train"):
        prompts.import_bundle_prompts(rt, index)
    index.write_text("\n".join(json.dumps(r) for r in [*rows, {"audio": "wavs/a.wav",
                                                                "split": "valid"}]))
    with pytest.raises(ValueError, match=r"prompts.jsonl:4: split 'valid' is read by nothing"):
        prompts.import_bundle_prompts(rt, index, split="train")
    assert n_prompts(rt) == 0
    index.write_text("\n".join(json.dumps(r) for r in rows))
    assert prompts.import_bundle_prompts(rt, index, split="train")["added"] == 3
    assert len(select_prompts(rt, split=rt.settings.generation.train_split)) == 2
    assert len(select_prompts(rt, split=rt.settings.generation.heldout_split)) == 1
