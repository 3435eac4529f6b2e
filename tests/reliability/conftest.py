"""Fixtures for fault tests: a really full and a really read-only filesystem (tmpfs mounts;
running as root, permission bits would not stop a write, a read-only mount does)."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest


@pytest.fixture
def full_disk(tmp_path) -> Path:
    """A directory on a 256 KiB tmpfs, already almost full: writes fail with ENOSPC for real."""
    mnt = tmp_path / f"tiny-{uuid.uuid4().hex[:6]}"
    mnt.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    try:
        (mnt / "filler").write_bytes(b"\0" * (200 * 1024))
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


@pytest.fixture
def readonly_dir(tmp_path) -> Path:
    """An empty directory on a tmpfs remounted read-only: writes fail with EROFS for real."""
    mnt = tmp_path / f"ro-{uuid.uuid4().hex[:6]}"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                          capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    try:
        proc = subprocess.run(["mount", "-o", "remount,ro", str(mnt)], capture_output=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot remount read-only here: {proc.stderr.decode().strip()}")
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
