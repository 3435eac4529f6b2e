"""Fixtures for fault tests: a really full and a really read-only filesystem (tmpfs mounts;
running as root, permission bits would not stop a write, a read-only mount does)."""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from pathlib import Path

import pytest


@contextlib.contextmanager
def _tmpfs(parent: Path, size: str, *remount: str):
    """A fresh tmpfs of `size` under `parent`, remounted with `remount` options if given;
    skips the test where mounting is not allowed; unmounted afterwards."""
    mnt = parent / f"tmpfs-{uuid.uuid4().hex[:6]}"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)],
                          capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    try:
        if remount:
            proc = subprocess.run(["mount", "-o", ",".join(("remount", *remount)), str(mnt)],
                                  capture_output=True)
            if proc.returncode != 0:
                pytest.skip(f"cannot remount {remount} here: {proc.stderr.decode().strip()}")
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


@pytest.fixture
def full_disk(tmp_path) -> Path:
    """A directory on a 256 KiB tmpfs, already almost full: writes fail with ENOSPC for real."""
    with _tmpfs(tmp_path, "256k") as mnt:
        (mnt / "filler").write_bytes(b"\0" * (200 * 1024))
        yield mnt


@pytest.fixture
def readonly_dir(tmp_path) -> Path:
    """An empty directory on a tmpfs remounted read-only: writes fail with EROFS for real."""
    with _tmpfs(tmp_path, "1m", "ro") as mnt:
        yield mnt
