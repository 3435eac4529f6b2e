"""A full disk or a read-only data directory while writing an adapter: a clear error, no
version row, no partial file."""

from __future__ import annotations

import pytest

from backend import registry


def test_adapter_on_full_disk_is_refused_cleanly(sqlite_runtime, tmp_path, full_disk):
    rt = sqlite_runtime
    base = registry.create_baseline(rt, "base", "ref")
    src = tmp_path / "adapter"
    src.mkdir()
    (src / "adapter_model.safetensors").write_bytes(b"\1" * (512 * 1024))  # bigger than free
    (src / "adapter_config.json").write_text("{}")
    rt.settings.data_dir = full_disk  # checkpoints now land on the full filesystem
    with pytest.raises(registry.RegistryError, match="No space left on device"):
        registry.derive_aligned(rt, base["id"], src, round_index=1, name="r1")
    assert [v["name"] for v in registry.list_versions(rt)] == ["base"]
    assert sorted(p.name for p in full_disk.iterdir()) == ["checkpoints", "filler"]
    assert list((full_disk / "checkpoints").iterdir()) == []


def test_adapter_into_a_read_only_data_directory_is_refused_cleanly(sqlite_runtime, tmp_path,
                                                                     readonly_dir):
    rt = sqlite_runtime
    base = registry.create_baseline(rt, "base", "ref")
    src = tmp_path / "adapter"
    src.mkdir()
    (src / "adapter_model.safetensors").write_bytes(b"\1" * 1024)
    (src / "adapter_config.json").write_text("{}")
    rt.settings.data_dir = readonly_dir
    with pytest.raises(registry.RegistryError, match="Read-only file system"):
        registry.derive_aligned(rt, base["id"], src, round_index=1, name="r1")
    assert [v["name"] for v in registry.list_versions(rt)] == ["base"]
    assert list(readonly_dir.iterdir()) == []
