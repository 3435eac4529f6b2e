"""Mini vocoder: units -> cluster-centre log-mel with each unit's mean duration -> Griffin-Lim.

Why so simple: the mini world only needs speech that its own ASR can read back and that a person
can follow; a k-means centre is the average spectrum of its frames, so repeating it for the
unit's mean run length gives an intelligible (robotic) mel spectrogram. Mel -> linear magnitude by
the filterbank's pseudo-inverse, then Griffin-Lim in torch (batched stft/istft, several times
faster than a per-utterance numpy loop) at a 10 ms hop for smoother phase.
Bundle dir: `mel_centroids.npy` (K, 80) log-mel, `durations.npy` (K,) frames, `config.json`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from models.interfaces import Units
from models.mini import audio

GL_HOP = audio.HOP // 2
GL_FFT = 512  # half the analysis FFT: Griffin-Lim is ~2x faster and sounds no worse here
GL_WIN = 400
BUCKET_FRAMES = 25  # 0.5 s: a continuation is padded by 0.25 s on average


@lru_cache(maxsize=1)
def _mel_pinv() -> torch.Tensor:
    import librosa

    basis = librosa.filters.mel(sr=audio.SR, n_fft=GL_FFT, n_mels=audio.N_MELS)
    return torch.linalg.pinv(torch.from_numpy(basis).float())


def griffin_lim(mag: torch.Tensor, n_iter: int, seed: int = 0) -> torch.Tensor:
    """mag: (batch, n_fft//2+1, frames) -> waves (batch, samples). Every row starts from the
    same seeded phase, so a row's wave depends on its magnitudes alone, not on its neighbours."""
    win = torch.hann_window(GL_WIN)
    g = torch.Generator().manual_seed(seed)
    phase = torch.exp(2j * torch.pi * torch.rand(mag.shape[1:], generator=g))
    length = (mag.shape[-1] - 1) * GL_HOP
    spec = mag * phase
    wave = torch.istft(spec, GL_FFT, GL_HOP, GL_WIN, win, length=length)
    for _ in range(n_iter):
        s = torch.stft(wave, GL_FFT, GL_HOP, GL_WIN, win, return_complex=True)
        s = s[..., : mag.shape[-1]]
        spec = mag * (s / s.abs().clamp_min(1e-8))
        wave = torch.istft(spec, GL_FFT, GL_HOP, GL_WIN, win, length=length)
    return wave


def bucket_frames(n: int) -> int:
    """Frames (50 Hz) a mel of `n` frames is padded to with silence before Griffin-Lim: the next
    multiple of BUCKET_FRAMES (at least 8: stft needs more than n_fft/2 samples). Fixed per
    length, so a continuation gets the same wave whichever continuations share its batch."""
    return max(8, -(-n // BUCKET_FRAMES) * BUCKET_FRAMES)


class MiniVocoder:
    sample_rate = audio.SR

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.mel = np.load(self.path / "mel_centroids.npy").astype(np.float32)
        self.durations = np.load(self.path / "durations.npy").astype(np.float32)
        self.config = json.loads((self.path / "config.json").read_text())
        self.n_iter = int(self.config.get("gl_iters", 8))
        self.num_units = len(self.mel)

    def mel_frames(self, units: Units) -> np.ndarray:
        """(frames, 80) log-mel at 50 Hz: each unit's centre repeated for its mean duration."""
        units = [int(u) for u in units if 0 <= int(u) < len(self.mel)]
        if not units:
            return np.zeros((0, self.mel.shape[1]), np.float32)
        reps = np.maximum(1, np.rint(self.durations[units])).astype(int)
        return np.repeat(self.mel[units], reps, axis=0)

    def decode_batch(self, batch: Sequence[Units]) -> list[np.ndarray]:
        """Waves of a batch, each the same as `decode` of it alone: items are padded to their
        own length bucket (`bucket_frames`) and Griffin-Lim runs once per bucket."""
        mels = [self.mel_frames(u) for u in batch]
        out = [np.zeros(0, np.float32) for _ in batch]
        buckets: dict[int, list[int]] = {}
        for i, m in enumerate(mels):
            if len(m):
                buckets.setdefault(bucket_frames(len(m)), []).append(i)
        floor = float(np.log(audio.LOG_FLOOR))
        for t, idx in sorted(buckets.items()):
            x = torch.full((len(idx), t, self.mel.shape[1]), floor)
            for row, i in enumerate(idx):
                x[row, : len(mels[i])] = torch.from_numpy(mels[i])
            x = x.repeat_interleave(2, dim=1)  # 50 Hz -> 100 Hz frames for the 10 ms GL hop
            power = (_mel_pinv() @ torch.exp(x).transpose(1, 2)).clamp_min(0.0)
            waves = griffin_lim(power.sqrt(), self.n_iter)
            for row, i in enumerate(idx):
                w = waves[row, : len(mels[i]) * audio.HOP].numpy()
                peak = float(np.abs(w).max()) if len(w) else 0.0
                out[i] = (w / peak * 0.9 if peak > 0 else w).astype(np.float32)
        return out

    def decode(self, units: Units) -> np.ndarray:
        return self.decode_batch([units])[0]


def train(frame_units: list[np.ndarray], frames: list[np.ndarray], k: int, out_dir: Path,
          gl_iters: int = 8) -> MiniVocoder:
    """Centre log-mel per unit (mean of its frames) and mean run length per unit."""
    allu = np.concatenate(frame_units)
    allf = np.concatenate(frames)
    sums = np.zeros((k, allf.shape[1]), np.float64)
    np.add.at(sums, allu, allf)
    counts = np.bincount(allu, minlength=k)
    mel = (sums / np.maximum(counts, 1)[:, None]).astype(np.float32)
    mel[counts == 0] = np.log(audio.LOG_FLOOR)
    run_sum = np.zeros(k)
    run_n = np.zeros(k)
    for u in frame_units:
        change = np.flatnonzero(np.diff(u)) + 1
        starts = np.concatenate([[0], change])
        ends = np.concatenate([change, [len(u)]])
        np.add.at(run_sum, u[starts], ends - starts)
        np.add.at(run_n, u[starts], 1)
    dur = (run_sum / np.maximum(run_n, 1)).astype(np.float32)
    dur[run_n == 0] = 1.0
    out_dir.mkdir(parents=True, exist_ok=True)
    np.save(out_dir / "mel_centroids.npy", mel)
    np.save(out_dir / "durations.npy", dur)
    (out_dir / "config.json").write_text(json.dumps({
        "kind": "mini", "sample_rate": audio.SR, "frame_rate": audio.SR / audio.HOP,
        "gl_iters": gl_iters, "gl_hop": GL_HOP, "gl_fft": GL_FFT, "k": k,
    }, indent=2))
    return MiniVocoder(out_dir)
