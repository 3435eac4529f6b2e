"""Pytest plugin: the tiny mini-world bundle, built once and cached in `.cache/`.

`mini_bundle` (session): Path of the tiny-preset bundle at
`/work/main/.cache/test-bundle-<preset>-<seed>-<code hash>`; the code hash covers models/mini,
backend/bootstrap.py and backend/evaluation.py (which scores the manifest's benchmark figures),
so a change to the world's code gives a fresh build, and an unchanged tree
reuses it across pytest runs. A file lock serializes parallel workers (xdist); the build itself
goes to a temporary directory and is renamed into place, so nobody ever sees half a bundle.

`mini_settings` (function): `backend.config.Settings` whose data_dir is a fresh tmp directory with
`bundle` symlinked to the cached bundle, so every mini-world component path resolves into it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PRESET = os.environ.get("STUDIO_TEST_BUNDLE_PRESET", "tiny")
SEED = 0


def cached_bundle_path(preset: str = PRESET, seed: int = SEED) -> Path:
    from backend.world import code_hash

    return ROOT / ".cache" / f"test-bundle-{preset}-{seed}-{code_hash()}"


def ensure_bundle(preset: str = PRESET, seed: int = SEED) -> Path:
    from filelock import FileLock

    from backend.world import build_at, is_complete

    path = cached_bundle_path(preset, seed)
    if is_complete(path, preset, seed):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock", timeout=3600):
        if not is_complete(path, preset, seed):
            build_at(path, preset, seed)  # a killed earlier build resumes from its stages
    return path


@pytest.fixture(scope="session")
def mini_bundle() -> Path:
    return ensure_bundle()


@pytest.fixture
def mini_settings(tmp_path, mini_bundle):
    from backend.config import Settings

    data = tmp_path / "studio-data"
    data.mkdir(parents=True, exist_ok=True)
    (data / "bundle").symlink_to(mini_bundle, target_is_directory=True)
    return Settings(data_dir=data, database_url=f"sqlite:///{data / 'studio.db'}", world="mini")


if __name__ == "__main__":
    # `make test` builds (or finds) the cached test bundle here first, outside pytest's per-test
    # timeout: on a loaded machine the build alone can take longer than one test may.
    import time

    t0 = time.monotonic()
    print(f"test bundle: {ensure_bundle()} ({time.monotonic() - t0:.0f} s)", flush=True)
