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


def assign(feats: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the nearest centre per row (exact squared distance; deterministic)."""
    d = (feats**2).sum(1, keepdims=True) - 2.0 * feats @ centroids.T + (centroids**2).sum(1)
    return d.argmin(1)


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
    """Fit k-means on log-mel frames (single-threaded faiss so a seed gives the same centres).
    faiss and torch share one OpenMP runtime: the thread count is restored afterwards, or every
    later stage of the build (ASR, unit LM) would train on one core."""
    import faiss

    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        return _fit(frames, k, seed, out_dir, niter, max_points)
    finally:
        faiss.omp_set_num_threads(threads)


def _fit(frames: np.ndarray, k: int, seed: int, out_dir: Path, niter: int,
         max_points: int) -> MiniTokenizer:
    import faiss

    mean = frames.mean(0).astype(np.float32)
    std = (frames.std(0) + 1e-3).astype(np.float32)
    x = ((frames - mean) / std).astype(np.float32)
    rng = np.random.default_rng(seed)
    if len(x) > max_points:
        x = x[np.sort(rng.choice(len(x), max_points, replace=False))]
    km = faiss.Kmeans(x.shape[1], k, niter=niter, seed=seed, verbose=False,
                      max_points_per_centroid=max_points)
    km.train(np.ascontiguousarray(x))
    cent = km.centroids.astype(np.float32)
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
