"""Mini speech tokenizer: 50 Hz log-mel frames -> nearest of K k-means centres.

A stand-in for mHuBERT + k-means: the same contract (16 kHz wave in, units 0..K-1 out, consecutive
duplicates removed for the LM), about 27 units/s after de-duplication, close to HuBERT-25Hz.
Bundle dir layout: `centroids.npy` (K, 80) in standardized feature space, `mean.npy`, `std.npy`,
`config.json`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from models.interfaces import Units, dedup
from models.mini import audio


def assign(feats: np.ndarray, centroids: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """Index of the nearest centre per row. Squared distances in float64 (up to the constant
    |x|^2): a BLAS kernel's or thread count's rounding (~1e-16) changes an argmin only on an
    exact tie, where float32 distances changed units between machines."""
    c = np.asarray(centroids, np.float64)
    c2 = (c**2).sum(1)
    x = np.asarray(feats, np.float64)
    out = np.empty(len(x), np.int64)
    for s in range(0, len(x), chunk):
        out[s: s + chunk] = (c2 - 2.0 * (x[s: s + chunk] @ c.T)).argmin(1)
    return out


def kmeans(x: np.ndarray, k: int, seed: int, niter: int) -> np.ndarray:
    """Lloyd's k-means in float64 (k random points to start, `niter` rounds), centres (k, d).

    Why not faiss: its float32 distances and sums depend on the BLAS kernel and SIMD build the
    machine picks, so one seed gave other units elsewhere. Here distances are float64
    (`assign`) and each centre is the mean of its points summed in index order (np.add.at), so
    the result does not depend on the kernel or on threads. An empty centre restarts at the
    point farthest from its own centre."""
    rng = np.random.default_rng(seed)
    x = np.asarray(x, np.float64)
    c = x[np.sort(rng.choice(len(x), k, replace=False))].copy()
    for _ in range(niter):
        a = assign(x, c)
        sums = np.zeros_like(c)
        np.add.at(sums, a, x)
        counts = np.bincount(a, minlength=k)
        full = counts > 0
        c[full] = sums[full] / counts[full, None]
        if not full.all():
            dist = ((x - c[a]) ** 2).sum(1)
            c[~full] = x[np.argsort(-dist, kind="stable")[: int((~full).sum())]]
    return c


class MiniTokenizer:
    sample_rate = audio.SR

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.centroids = np.load(self.path / "centroids.npy").astype(np.float32)
        self.mean = np.load(self.path / "mean.npy").astype(np.float32)
        self.std = np.load(self.path / "std.npy").astype(np.float32)
        self.config = json.loads((self.path / "config.json").read_text())
        self.vocab_size = int(self.centroids.shape[0])

    def frames(self, wave: np.ndarray, sample_rate: int) -> np.ndarray:
        """Standardized log-mel frames of a wave at any sample rate."""
        feats = audio.log_mel(audio.to_16k_mono(wave, sample_rate))
        return (feats - self.mean) / self.std

    def encode(self, wave: np.ndarray, sample_rate: int, deduplicate: bool = True) -> Units:
        units = [int(u) for u in assign(self.frames(wave, sample_rate), self.centroids)]
        return dedup(units) if deduplicate else units

    def encode_phases(self, wave: np.ndarray, phases: int) -> list[Units]:
        """De-duplicated units of a 16 kHz wave starting at `phases` evenly spaced offsets within
        one frame (the first is `encode(wave)`). In continuous speech an utterance may start
        anywhere within a frame, and the offset changes many unit assignments."""
        shifts = [round(j * audio.HOP / phases) for j in range(phases)]
        return [self.encode(np.concatenate([np.zeros(sh, np.float32), wave]), audio.SR)
                for sh in shifts]


def train(frames: np.ndarray, k: int, seed: int, out_dir: Path, niter: int = 25,
          max_points: int = 200_000) -> MiniTokenizer:
    """Fit k-means (`kmeans`: the same centres on every machine) on standardized log-mel
    frames, at most `max_points` of them (a seeded sample)."""
    mean = frames.mean(0, dtype=np.float64).astype(np.float32)
    std = (frames.std(0, dtype=np.float64) + 1e-3).astype(np.float32)
    x = ((frames - mean) / std).astype(np.float32)
    rng = np.random.default_rng(seed)
    if len(x) > max_points:
        x = x[np.sort(rng.choice(len(x), max_points, replace=False))]
    cent = kmeans(x, k, seed, niter).astype(np.float32)
    # Order centres by their mean energy so unit ids are stable and vaguely meaningful (0=quiet).
    cent = cent[np.argsort((cent * std + mean).mean(1), kind="stable")]
    out_dir.mkdir(parents=True, exist_ok=True)
    np.save(out_dir / "centroids.npy", cent)
    np.save(out_dir / "mean.npy", mean)
    np.save(out_dir / "std.npy", std)
    (out_dir / "config.json").write_text(json.dumps({
        "kind": "mini", "features": "log-mel", "n_mels": audio.N_MELS, "sample_rate": audio.SR,
        "hop": audio.HOP, "win": audio.WIN, "n_fft": audio.N_FFT,
        "frame_rate": audio.SR / audio.HOP, "k": k, "seed": seed,
    }, indent=2))
    return MiniTokenizer(out_dir)
