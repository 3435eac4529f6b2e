"""Bad uploads get a clear message and leave nothing behind (no row, no file); a bounded
hypothesis fuzz of the upload path never crashes with anything but a PromptError."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend import prompts
from backend.prompts import PromptError


class EnergyTokenizer:
    """A protocol-conforming stand-in for the speech tokenizer: frame energy bucketed to units."""

    sample_rate = 16000
    vocab_size = 8

    def encode(self, wave, sample_rate, deduplicate=True):
        frames = np.asarray(wave, dtype=np.float32)[: len(wave) // 320 * 320].reshape(-1, 320)
        units = np.clip((np.abs(frames).mean(axis=1) * 40).astype(int), 0, 7).tolist()
        return units


TOK = EnergyTokenizer()


def wav_bytes(seconds=1.0, sr=16000, channels=1, fmt="WAV", subtype="PCM_16", value=None):
    t = np.arange(int(seconds * sr)) / sr
    wave = 0.3 * np.sin(2 * np.pi * 220 * t)
    if value is not None:
        wave[: len(wave) // 2] = value
    data = np.stack([wave] * channels, axis=1) if channels > 1 else wave
    buf = io.BytesIO()
    sf.write(buf, data, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def _stored(rt) -> tuple[int, list[str]]:
    files = sorted(
        p.name for p in (rt.settings.audio_dir / "prompts").glob("*") if p.is_file()
    ) if (rt.settings.audio_dir / "prompts").exists() else []
    return prompts.count_prompts(rt), files


BAD = {
    "zero-length file": (lambda: b"", "empty"),
    "text renamed .wav": (lambda: b"this is not audio at all, just text" * 10, "not a readable"),
    "truncated header": (lambda: wav_bytes()[:30], "not a readable"),
    "audio with NaN samples": (lambda: wav_bytes(subtype="FLOAT", value=np.nan), "NaN"),
    "too long": (lambda: wav_bytes(seconds=31.0, sr=8000), "at most 30 s"),
    "sample rate too low": (lambda: wav_bytes(sr=4000), "too low"),
    "zero frames": (lambda: wav_bytes(seconds=0.0), "zero length"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_upload_is_refused_and_nothing_is_stored(sqlite_runtime, case):
    make, message = BAD[case]
    before = _stored(sqlite_runtime)
    with pytest.raises(PromptError, match=message):
        prompts.upload_prompt(sqlite_runtime, make(), tokenizer=TOK)
    assert _stored(sqlite_runtime) == before == (0, [])


def test_oversized_upload_is_refused_before_decoding(sqlite_runtime, tmp_path):
    sqlite_runtime.settings.rating.max_upload_mb = 0.01
    big = tmp_path / "big.wav"
    big.write_bytes(wav_bytes(seconds=2.0))
    with pytest.raises(PromptError, match="larger than 0.01 MB"):
        prompts.read_upload(sqlite_runtime, big)
    with pytest.raises(PromptError, match="larger than"):
        prompts.upload_prompt(sqlite_runtime, big.read_bytes(), tokenizer=TOK)
    assert _stored(sqlite_runtime) == (0, [])


@pytest.mark.parametrize(
    "kwargs", [{"channels": 2}, {"sr": 44100}, {"fmt": "FLAC"}, {"sr": 22050, "channels": 2}]
)
def test_stereo_other_rates_and_flac_are_normalized(sqlite_runtime, kwargs):
    p = prompts.upload_prompt(sqlite_runtime, wav_bytes(**kwargs), tokenizer=TOK)
    wave, sr = sf.read(p["audio_path"])
    assert sr == 16000 and wave.ndim == 1
    assert abs(len(wave) / sr - 1.0) < 0.01
    assert p["n_units"] > 0


def test_same_clip_twice_is_one_prompt(sqlite_runtime):
    first = prompts.upload_prompt(sqlite_runtime, wav_bytes(), tokenizer=TOK)
    again = prompts.upload_prompt(sqlite_runtime, wav_bytes(), tokenizer=TOK)
    assert (first["duplicate"], again["duplicate"]) == (False, True)
    assert again["id"] == first["id"]
    assert _stored(sqlite_runtime)[0] == 1


def test_client_file_name_is_never_used(sqlite_runtime):
    p = prompts.upload_prompt(sqlite_runtime, wav_bytes(), tokenizer=TOK)
    stored = sqlite_runtime.settings.audio_dir / "prompts"
    assert p["audio_path"].startswith(str(stored))
    assert len(p["audio_path"].rsplit("/", 1)[-1]) == len("0" * 64 + ".wav")


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.one_of(
    st.binary(max_size=4096),
    st.builds(lambda head, tail: wav_bytes(seconds=0.2)[:head] + tail,
              st.integers(0, 6400), st.binary(max_size=256)),
))
def test_fuzzed_uploads_fail_only_with_clear_errors(sqlite_runtime, data):
    before = _stored(sqlite_runtime)[0]
    try:
        p = prompts.upload_prompt(sqlite_runtime, data, tokenizer=TOK)
    except PromptError as e:
        assert str(e) and "Traceback" not in str(e)
        assert _stored(sqlite_runtime)[0] == before
    else:
        assert p["n_units"] > 0 and p["duration_s"] > 0


def test_upload_to_a_read_only_data_directory_stores_nothing(sqlite_runtime, readonly_dir):
    sqlite_runtime.settings.data_dir = readonly_dir
    with pytest.raises(OSError, match="Read-only file system"):
        prompts.upload_prompt(sqlite_runtime, wav_bytes(seconds=5.0), tokenizer=TOK)
    assert prompts.count_prompts(sqlite_runtime) == 0
    assert list(readonly_dir.iterdir()) == []


def test_upload_to_a_full_disk_stores_nothing(sqlite_runtime, full_disk):
    sqlite_runtime.settings.data_dir = full_disk
    with pytest.raises(OSError):
        prompts.upload_prompt(sqlite_runtime, wav_bytes(seconds=5.0), tokenizer=TOK)
    assert prompts.count_prompts(sqlite_runtime) == 0
    leftovers = [p.name for p in full_disk.rglob("*") if p.is_file() and p.name != "filler"]
    assert leftovers == []
