"""`HubertKMeansTokenizer`: HuBERT features of one layer -> nearest k-means centroid (TWIST units).

The centroids come as textlesslib distributes them (a joblib/pickle of a scikit-learn KMeans) or as
a plain .npy array (K, dim). Audio is resampled to 16 kHz here with scipy (torchaudio breaks the
pinned torch, see STACK.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from models.config import TokenizerConfig
from models.device import ModelLoadError, require_path, resolve_device
from models.interfaces import Units, dedup

HUBERT_SR = 16000
PAD_SAMPLES = 40
"""Zeros added on each side of a wave before HuBERT, as slamkit's HuBERT feature extractor
does (units then match the reference's for the same audio and weights)."""


def resample(wave: np.ndarray, sr: int, target: int = HUBERT_SR) -> np.ndarray:
    """Polyphase resampling to `target` Hz (float32, mono)."""
    from scipy.signal import resample_poly

    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim == 2:  # (samples, channels) as soundfile returns
        wave = wave.mean(axis=1)
    if sr == target:
        return wave
    frac = Fraction(target, sr).limit_denominator(1000)
    return resample_poly(wave, frac.numerator, frac.denominator).astype(np.float32)


def load_centroids(path: str | Path) -> np.ndarray:
    """(K, dim) float32 centroids from a .npy file or a joblib/pickle KMeans object."""
    p = require_path(path, "k-means centroids", is_dir=False)
    if p.suffix == ".npy":
        c = np.load(p)
    else:
        import joblib

        try:
            obj = joblib.load(p)
        except Exception as e:  # noqa: BLE001 - re-raised with the file named
            raise ModelLoadError(
                f"k-means: {p} is neither .npy nor a joblib/pickle file: {e}") from e
        c = getattr(obj, "cluster_centers_", obj)
    c = np.asarray(c, dtype=np.float32)
    if c.ndim != 2:
        raise ModelLoadError(f"k-means: {p} holds an array of shape {c.shape}, expected (K, dim)")
    return c


class HubertKMeansTokenizer:
    """Speech -> deduplicated units. One model call per group of equal-length waves."""

    sample_rate = HUBERT_SR

    def __init__(self, cfg: TokenizerConfig):
        from transformers import HubertModel

        path = require_path(cfg.path, "HuBERT model directory", is_dir=True)
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"HuBERT: {path / 'config.json'} missing (expected an HF "
                                 "HubertModel directory)")
        self.device = resolve_device(cfg.device)
        try:
            self.model = HubertModel.from_pretrained(str(path)).to(self.device).eval()
        except Exception as e:  # noqa: BLE001
            raise ModelLoadError(f"HuBERT: could not load {path}: {e}") from e
        n_layers = self.model.config.num_hidden_layers
        if not 0 <= cfg.layer <= n_layers:
            raise ModelLoadError(f"HuBERT {path}: layer {cfg.layer} requested but the model has "
                                 f"{n_layers} layers (config.json num_hidden_layers)")
        self.layer = cfg.layer
        centroids = load_centroids(cfg.kmeans_path)
        hidden = self.model.config.hidden_size
        if centroids.shape[1] != hidden:
            raise ModelLoadError(f"k-means {cfg.kmeans_path}: centroid dim {centroids.shape[1]} "
                                 f"!= HuBERT hidden size {hidden} ({path / 'config.json'})")
        self.centroids = torch.from_numpy(centroids).to(self.device)
        self._c_sq = (self.centroids**2).sum(-1)
        self.vocab_size = int(centroids.shape[0])
        self.normalize = cfg.normalize

    def encode(self, wave: np.ndarray, sample_rate: int, deduplicate: bool = True) -> Units:
        return self.encode_batch([wave], sample_rate, deduplicate)[0]

    @torch.inference_mode()
    def encode_batch(self, waves: Sequence[np.ndarray], sample_rate: int,
                     deduplicate: bool = True) -> list[Units]:
        """Units of each wave. Only waves of equal length share a forward pass: HuBERT-base's
        group-norm front end normalizes over the whole time axis, so padding would change them."""
        ready = [self._prepare(w, sample_rate) for w in waves]
        out: list[Units] = [[] for _ in ready]
        groups: dict[int, list[int]] = {}
        for i, w in enumerate(ready):
            groups.setdefault(len(w), []).append(i)
        for idx in groups.values():
            x = torch.from_numpy(np.stack([ready[i] for i in idx])).to(self.device)
            for i, units in zip(idx, self._units(x), strict=True):
                out[i] = dedup(units) if deduplicate else units
        return out

    def _prepare(self, wave: np.ndarray, sr: int) -> np.ndarray:
        """The wave as the reference pipeline (slamkit) feeds mHuBERT: 16 kHz, raw (unless
        `normalize`), PAD_SAMPLES zeros on each side, at least one conv window long."""
        w = resample(wave, sr)
        if self.normalize:  # fairseq's layer_norm over the whole wave
            w = (w - w.mean()) / np.sqrt(w.var() + 1e-5)
        w = np.pad(w, (PAD_SAMPLES, PAD_SAMPLES))
        min_len = 400  # HuBERT's first conv needs one 25 ms window
        if len(w) < min_len:
            w = np.pad(w, (0, min_len - len(w)))
        return w.astype(np.float32)

    def _units(self, x: torch.Tensor) -> list[Units]:
        hs = self.model(x, output_hidden_states=True).hidden_states[self.layer]  # (B, T, dim)
        feats = hs.float()
        dist = (feats**2).sum(-1, keepdim=True) - 2 * feats @ self.centroids.T + self._c_sq
        return [[int(u) for u in row] for row in dist.argmin(-1).cpu()]
