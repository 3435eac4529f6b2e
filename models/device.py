"""Shared loading helpers for the real-weights components: device/dtype choice and load errors.

Kept apart from `models.factory` so every loader can raise `ModelLoadError` without importing the
factory (which imports them all).
"""

from __future__ import annotations

from pathlib import Path

import torch


class ModelLoadError(Exception):
    """A model file is missing or does not have the expected shape; the message names the file."""


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` = CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """float16 is not worth it on CPU (slow, unsupported ops): fall back to float32 there."""
    dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]
    if device.type == "cpu" and dtype == torch.float16:
        return torch.float32
    return dtype


def require_path(path: str | Path, what: str, is_dir: bool | None = None) -> Path:
    """`path` as a Path, or a ModelLoadError saying which file was expected and why."""
    if not str(path):
        raise ModelLoadError(f"no path configured for {what}")
    p = Path(path)
    if not p.exists():
        raise ModelLoadError(f"{what}: {p} does not exist")
    if is_dir is True and not p.is_dir():
        raise ModelLoadError(f"{what}: expected a directory, got the file {p}")
    if is_dir is False and not p.is_file():
        raise ModelLoadError(f"{what}: expected a file, got the directory {p}")
    return p
