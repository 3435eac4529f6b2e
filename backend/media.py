"""Serving stored audio safely, and small pictures of it.

Every audio path the app hands to the browser goes through `resolve_audio`: it must resolve
(symlinks followed, `..` collapsed) to a regular audio file inside the data directory, else it
is refused (so the store, checkpoints and exports there are never served as "audio").
Pictures (waveform + spectrogram) are rendered once and cached under
`<data_dir>/audio/plots/`.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from backend.files import save_figure
from backend.runtime import Runtime

AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg")


class MediaError(ValueError):
    """A refused or missing media file."""


def resolve_audio(rt: Runtime, path: str | os.PathLike | None) -> Path:
    """The real path of a stored file inside the data directory, or MediaError."""
    if path is None or str(path).strip() == "" or "\x00" in str(path):
        raise MediaError("no audio")
    root = Path(os.path.realpath(rt.settings.data_dir))
    p = Path(path)
    if not p.is_absolute():
        p = root / p
    real = Path(os.path.realpath(p))
    if real != root and root not in real.parents:
        raise MediaError("refused: outside the data directory")
    if real.suffix.lower() not in AUDIO_SUFFIXES:
        raise MediaError("refused: not an audio file")
    if not real.is_file():
        raise MediaError("audio file not found")
    return real


def safe_audio(rt: Runtime, path: str | None) -> str | None:
    """`resolve_audio` as a string, or None when refused/missing (for display code)."""
    try:
        return str(resolve_audio(rt, path))
    except MediaError:
        return None


def plot_png(rt: Runtime, path: str | None, kind: str = "both") -> str | None:
    """A small waveform + spectrogram PNG of a stored clip (cached); None when unavailable."""
    src = safe_audio(rt, path)
    if src is None:
        return None
    st = os.stat(src)
    key = hashlib.sha256(f"{src}|{st.st_size}|{st.st_mtime_ns}|{kind}".encode()).hexdigest()[:32]
    out_dir = rt.settings.audio_dir / "plots"
    out = out_dir / f"{key}.png"
    if out.exists():
        return str(out)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import numpy as np
        import soundfile as sf

        wave, sr = sf.read(src, dtype="float32", always_2d=True)
        wave = wave.mean(axis=1)
        if wave.size == 0:
            return None
        out_dir.mkdir(parents=True, exist_ok=True)
        fig, axes = plt.subplots(2, 1, figsize=(4.2, 1.9), dpi=90, sharex=True)
        t = np.arange(wave.size) / sr
        axes[0].plot(t, wave, linewidth=0.5, color="#3b6ea8")
        axes[0].set_ylim(-1, 1)
        axes[0].set_yticks([])
        nfft = 512 if wave.size >= 512 else max(16, 2 ** int(np.log2(max(16, wave.size))))
        axes[1].specgram(wave, NFFT=nfft, Fs=sr, noverlap=nfft // 2, cmap="magma")
        axes[1].set_yticks([])
        axes[1].set_xlabel("s", fontsize=7)
        axes[1].tick_params(labelsize=6)
        for ax in axes:
            for side in ("top", "right"):
                ax.spines[side].set_visible(False)
        fig.tight_layout(pad=0.2)
        save_figure(fig, out, format="png")
        return str(out)
    except Exception:  # noqa: BLE001 - a picture is optional
        return None
