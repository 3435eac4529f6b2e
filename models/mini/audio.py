"""Speech and features of the mini world: espeak-ng synthesis and a 50 Hz log-mel front end.

Why espeak-ng: it is an apt package, fully offline, deterministic, fast (about 70 short
sentences/s per process here) and has several English voices, which gives the tokenizer, ASR and
LM some speaker variability to cope with.

The same log-mel function (80 bins, 40 ms window, 20 ms hop = 50 frames/s, 16 kHz) feeds the
tokenizer (k-means over frames), the vocoder (cluster-centre mel) and the ASR, so the three agree
on one representation.
"""

from __future__ import annotations

import io
import subprocess
from functools import lru_cache

import numpy as np
import soundfile as sf

SR = 16000
N_FFT = 1024
WIN = 640
HOP = 320  # 50 Hz frames
N_MELS = 80
LOG_FLOOR = 1e-5

VOICES_FULL = ["en-us", "en-us+f3", "en-gb"]
VOICES_TINY = ["en-us"]
SPEEDS = [150, 165, 180]


def speed_for(text: str, voice: str, seed: int) -> int:
    """The speaking rate of one (sentence, voice) in the world built with `seed`: drawn from
    SPEEDS but fixed per utterance, so a sentence sounds the same wherever it occurs."""
    import random

    return random.Random(f"{text}|{voice}|{seed}").choice(SPEEDS)


class SpeechError(RuntimeError):
    """espeak-ng is missing or refused the text."""


def espeak(text: str, voice: str = "en-us", speed: int = 165) -> tuple[np.ndarray, int]:
    """espeak-ng speech of `text`: float32 mono at espeak's own rate, and that rate."""
    try:
        out = subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "--stdout", text],
                             check=True, capture_output=True, timeout=60).stdout
    except FileNotFoundError:
        raise SpeechError("espeak-ng is not installed (apt-get install espeak-ng)") from None
    except subprocess.CalledProcessError as e:
        raise SpeechError(f"espeak-ng failed: {e.stderr.decode(errors='replace')}") from None
    wave, sr = sf.read(io.BytesIO(out), dtype="float32")
    return (wave.mean(axis=1) if wave.ndim > 1 else wave), sr


def synthesize(text: str, voice: str = "en-us", speed: int = 165) -> np.ndarray:
    """One utterance from espeak-ng as float32 mono at 16 kHz."""
    wave, sr = espeak(text, voice, speed)
    return np.clip(to_16k_mono(wave, sr), -1.0, 1.0)


def to_16k_mono(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    from scipy.signal import resample_poly

    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim > 1:
        wave = wave.mean(axis=-1) if wave.shape[-1] <= 8 else wave.mean(axis=0)
    if sample_rate != SR:
        g = np.gcd(int(sample_rate), SR)
        wave = resample_poly(wave, SR // g, int(sample_rate) // g).astype(np.float32)
    return wave


@lru_cache(maxsize=1)
def mel_basis():
    import librosa
    import torch

    return torch.from_numpy(librosa.filters.mel(sr=SR, n_fft=N_FFT, n_mels=N_MELS)).float()


@lru_cache(maxsize=1)
def _window():
    import torch

    return torch.hann_window(WIN)


@lru_cache(maxsize=1)
def _np_window() -> np.ndarray:
    """The Hann window centred in an N_FFT frame (as torch.stft pads a shorter window)."""
    w = np.zeros(N_FFT, np.float32)
    start = (N_FFT - WIN) // 2
    w[start: start + WIN] = _window().numpy()
    return w


def log_mel(wave: np.ndarray) -> np.ndarray:
    """(frames, 80) float32 log-mel power at 50 Hz (frame t centred at t * 20 ms).

    numpy, not torch.stft: for one short utterance torch's thread pool costs ~20 ms per call on
    2 threads (vs ~1 ms here), which made featurizing the corpus the slowest stage.

    Computed in float64 and rounded to float32 at the end, so the frames do not depend on the
    machine: a float32 matmul's result depends on the BLAS kernel (CPU) and its thread count
    (measured on the tiny world: other frames and another units digest with 2 OpenBLAS threads,
    or the Sandybridge or Prescott kernels), while float64 differences of ~1e-16 almost never
    change a float32 rounding."""
    x = np.asarray(wave, dtype=np.float32).astype(np.float64)
    if len(x) < WIN:
        x = np.pad(x, (0, WIN - len(x)))
    x = np.pad(x, (N_FFT // 2, N_FFT // 2), mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(x, N_FFT)[::HOP]
    power = np.abs(np.fft.rfft(frames * _np_window().astype(np.float64), axis=1)) ** 2
    mel = power @ mel_basis().numpy().astype(np.float64).T
    return np.log(mel + LOG_FLOOR).astype(np.float32)
