"""Files under the data directory: atomic writes, content hashes, wav I/O.

Every file the store points at is written here, so a killed process never leaves a truncated
file behind a row: write to a temp name in the same directory, fsync, rename (`os.replace` is
atomic on POSIX within one file system). One place for hashing too, so a digest recorded at
registration is computed the same way when it is checked.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np


# --- atomic writes ---------------------------------------------------------------------------
@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """A temp path beside `path` for a writer that wants a file name (soundfile, savefig,
    datasets); on success it is fsynced and renamed onto `path`, on failure removed.
    `suffix` keeps a writer that looks at the extension happy (e.g. ".png")."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{uuid.uuid4().hex[:8]}-{path.name}{suffix}"
    try:
        yield tmp
        if tmp.is_file():
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        fh.write(text)


def atomic_copy_file(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def atomic_copy_dir(src: str | os.PathLike, dst: str | os.PathLike) -> str:
    """Copy a directory so that `dst` either does not exist or is complete (every file fsynced,
    then one rename); returns `sha256_dir` of the copy. Raises OSError on a write failure."""
    src, dst = Path(src), Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.parent / f".tmp-{dst.name}-{uuid.uuid4().hex[:8]}"
    try:
        shutil.copytree(src, tmp)
        for f in tmp.rglob("*"):
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        digest = sha256_dir(tmp)
        os.rename(tmp, dst)
        fsync_dir(dst.parent)
        return digest
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def fsync_dir(path: str | os.PathLike) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- hashes ----------------------------------------------------------------------------------
def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sha256_dir(path: str | os.PathLike) -> str:
    """A digest over a directory's files: relative names and contents, in sorted order."""
    root = Path(path)
    h = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(root)).encode())
        with open(f, "rb") as fh:
            for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


# --- wav -------------------------------------------------------------------------------------
def write_wav(path: str | os.PathLike, wave: np.ndarray, sr: int, subtype: str = "FLOAT") -> None:
    """Write mono audio atomically (FLOAT keeps a vocoder's output exactly; PCM_16 for files
    people download or that must read back as 16-bit, like benchmark items)."""
    import soundfile as sf

    data = np.asarray(wave, dtype=np.float32)
    if subtype.startswith("PCM"):
        data = np.clip(data, -1.0, 1.0)
    with atomic_path(path) as tmp:
        sf.write(str(tmp), data, int(sr), format="WAV", subtype=subtype)


def wav_bytes(wave: np.ndarray, sr: int, subtype: str = "PCM_16") -> bytes:
    """The bytes of a WAV file of `wave` (for hashing, uploads and HTTP replies)."""
    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.asarray(wave, dtype=np.float32), int(sr), format="WAV", subtype=subtype)
    return buf.getvalue()


def read_wav(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Mono float32 samples and the sample rate of an audio file (channels averaged)."""
    import soundfile as sf

    wave, sr = sf.read(str(path), dtype="float32", always_2d=True)
    return wave.mean(axis=1), int(sr)


def private_copy(path: str | os.PathLike, keep_s: float = 3600.0) -> Path:
    """A copy of a file in a fresh directory of the system temp dir (mode 0700, unguessable
    name), for handing a private file (an admin's export) to the web server, which copies it
    into its own cache; the original's directory is then never served. Copies older than
    `keep_s` are removed here, so they do not pile up."""
    import tempfile
    import time

    tmp_root = Path(tempfile.gettempdir())
    for old in tmp_root.glob("studio-download-*"):
        try:
            if time.time() - old.stat().st_mtime > keep_s:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:  # another process removed it first
            pass
    src = Path(path)
    dst = Path(tempfile.mkdtemp(prefix="studio-download-")) / src.name
    shutil.copyfile(src, dst)
    return dst


def save_figure(fig, path: str | os.PathLike, **savefig_kw) -> None:
    """Save a matplotlib figure atomically and close it."""
    import matplotlib.pyplot as plt

    with atomic_path(path, suffix=Path(path).suffix) as tmp:
        fig.savefig(tmp, **savefig_kw)
    plt.close(fig)
