"""Users (Argon2 hashes, first admin, roles) and the model-version registry (atomic adapters,
lineage)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from backend import registry, users
from db.schema import User


def test_passwords_are_stored_as_argon2_hashes(runtime):
    users.add_user(runtime, "rita", "correct horse", "rater")
    with runtime.store.session() as s:
        stored = s.scalar(select(User.password_hash).where(User.name == "rita"))
    assert stored.startswith("$argon2id$") and "correct horse" not in stored
    assert users.authenticate(runtime, "rita", "correct horse").name == "rita"
    assert users.authenticate(runtime, "rita", "wrong horse!") is None
    assert users.authenticate(runtime, "nobody", "correct horse") is None


def test_first_admin_from_env_or_one_time_password(runtime, monkeypatch):
    monkeypatch.delenv("STUDIO_ADMIN_PASSWORD", raising=False)
    one_time = users.ensure_first_admin(runtime)
    assert one_time and len(one_time) >= 12
    assert users.authenticate(runtime, "admin", one_time).is_admin
    assert users.ensure_first_admin(runtime) is None  # only once


def test_first_admin_password_from_environment(runtime, monkeypatch):
    monkeypatch.setenv("STUDIO_ADMIN_USER", "boss")
    monkeypatch.setenv("STUDIO_ADMIN_PASSWORD", "from-the-env")
    assert users.ensure_first_admin(runtime) is None
    assert users.authenticate(runtime, "boss", "from-the-env").is_admin


def test_last_admin_cannot_be_demoted(runtime):
    users.add_user(runtime, "ada", "password-1", "admin")
    with pytest.raises(users.UserError, match="last admin"):
        users.set_role(runtime, "ada", "rater")
    users.add_user(runtime, "bea", "password-2", "admin")
    assert users.set_role(runtime, "ada", "rater").role == "rater"


def _adapter(tmp_path: Path, text: str = "weights") -> Path:
    src = tmp_path / f"adapter-{text}"
    src.mkdir()
    (src / "adapter_model.safetensors").write_text(text)
    (src / "adapter_config.json").write_text("{}")
    return src


def test_registry_lineage_and_atomic_adapter(runtime, tmp_path):
    base = registry.create_baseline(runtime, "twist-mini", "bundle/unit_lm")
    assert registry.create_baseline(runtime, "twist-mini", "bundle/unit_lm").id == base.id
    r1 = registry.derive_aligned(runtime, base.id, _adapter(tmp_path, "r1"), round_index=1)
    r2 = registry.derive_aligned(runtime, r1.name, _adapter(tmp_path, "r2"), round_index=2)
    assert [v.name for v in registry.lineage(runtime, r2.id)] == [
        r2.name, r1.name, "twist-mini"
    ]
    assert Path(r2.adapter_path).parent == runtime.settings.checkpoints_dir
    assert (Path(r2.adapter_path) / "adapter_model.safetensors").read_text() == "r2"
    assert r2.adapter_intact()
    (Path(r2.adapter_path) / "adapter_model.safetensors").write_text("tampered")
    assert not r2.adapter_intact()
    assert not list(runtime.settings.checkpoints_dir.glob(".tmp-*"))


def test_failed_registration_leaves_no_checkpoint(runtime, tmp_path):
    base = registry.create_baseline(runtime, "base", "ref")
    registry.derive_aligned(runtime, base.id, _adapter(tmp_path, "a"), 1, name="taken")
    with pytest.raises(registry.RegistryError, match="already exists"):
        registry.derive_aligned(runtime, base.id, _adapter(tmp_path, "b"), 1, name="taken")
    # a commit that fails after the copy (duplicate row name) removes the copied adapter
    ckpt = runtime.settings.checkpoints_dir
    (ckpt / "taken").rename(ckpt / "moved")  # directory free, row name still taken
    with pytest.raises(IntegrityError):
        registry.derive_aligned(runtime, base.id, _adapter(tmp_path, "c"), 1, name="taken")
    assert not (ckpt / "taken").exists()
    assert sorted(p.name for p in ckpt.iterdir()) == ["moved"]


def test_empty_adapter_is_refused(runtime, tmp_path):
    base = registry.create_baseline(runtime, "base", "ref")
    (tmp_path / "empty").mkdir()
    with pytest.raises(registry.RegistryError, match="missing or empty"):
        registry.derive_aligned(runtime, base.id, tmp_path / "empty", 1)
    with pytest.raises(registry.RegistryError, match="unknown model version"):
        registry.derive_aligned(runtime, 999, _adapter(tmp_path), 1)


def test_baseline_is_a_name_for_the_registered_baseline(sqlite_runtime):
    """README's `round --parent baseline` and `evaluate baseline` work whatever the baseline
    is called (it is named after its weights), on a fresh store too (the configured LM)."""
    with pytest.raises(registry.RegistryError, match="registered: none"):
        registry.get_version(sqlite_runtime, "nope")
    base = registry.create_baseline(sqlite_runtime, "TWIST-1.3B", "/weights/TWIST-1.3B")
    assert registry.get_version(sqlite_runtime, "baseline") == base
    with pytest.raises(registry.RegistryError, match="registered: TWIST-1.3B"):
        registry.get_version(sqlite_runtime, "nope")


def test_baseline_on_a_fresh_store_is_the_configured_lm(sqlite_runtime):
    v = registry.get_version(sqlite_runtime, "baseline")
    assert v.kind == "baseline" and v.base_ref == sqlite_runtime.settings.models.unit_lm.path
    assert registry.get_version(sqlite_runtime, "baseline") == v
