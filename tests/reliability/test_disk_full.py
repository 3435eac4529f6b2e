"""A full disk or a read-only data directory while writing an adapter: a clear error, no
version row, no partial file."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend import registry


def _adapter_dir(tmp_path: Path, weight_bytes: int) -> Path:
    src = tmp_path / "adapter"
    src.mkdir()
    (src / "adapter_model.safetensors").write_bytes(b"\1" * weight_bytes)
    (src / "adapter_config.json").write_text("{}")
    return src


def test_adapter_on_full_disk_is_refused_cleanly(sqlite_runtime, tmp_path, full_disk):
    rt = sqlite_runtime
    base = registry.create_baseline(rt, "base", "ref")
    src = _adapter_dir(tmp_path, 512 * 1024)  # bigger than the free space
    rt.settings.data_dir = full_disk  # checkpoints now land on the full filesystem
    with pytest.raises(registry.RegistryError, match="No space left on device"):
        registry.derive_aligned(rt, base.id, src, round_index=1, name="r1")
    assert [v.name for v in registry.list_versions(rt)] == ["base"]
    assert sorted(p.name for p in full_disk.iterdir()) == ["checkpoints", "filler"]
    assert list((full_disk / "checkpoints").iterdir()) == []


def test_adapter_into_a_read_only_data_directory_is_refused_cleanly(sqlite_runtime, tmp_path,
                                                                     readonly_dir):
    rt = sqlite_runtime
    base = registry.create_baseline(rt, "base", "ref")
    src = _adapter_dir(tmp_path, 1024)
    rt.settings.data_dir = readonly_dir
    with pytest.raises(registry.RegistryError, match="Read-only file system"):
        registry.derive_aligned(rt, base.id, src, round_index=1, name="r1")
    assert [v.name for v in registry.list_versions(rt)] == ["base"]
    assert list(readonly_dir.iterdir()) == []
