"""Model-version registry: the baseline and the aligned versions derived from it by rounds.

An aligned version owns a directory under `<data_dir>/checkpoints/<name>/`: its LoRA adapter,
self-contained on `base_ref`, or (`finetune` "full") a whole model, which is then also its own
`base_ref` (the weights it and the LoRA versions trained from it apply to). It is copied
there atomically (copy to a temp dir, fsync every file, rename) before its row is committed, and
removed again if the commit fails, so the store never references a half-written adapter.
"""

from __future__ import annotations

import shutil
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from backend import files
from backend.runtime import Runtime
from db.schema import FINETUNE_KINDS, ModelVersion


class RegistryError(ValueError):
    pass


@dataclass(frozen=True)
class Version:
    """A model version as services hand it around (a snapshot of its row)."""

    id: int
    name: str
    kind: str
    """baseline | aligned"""
    parent_id: int | None
    round_index: int
    base_ref: str
    """the weights (path or hub name) the version's adapter applies to: the baseline's, or the
    directory of the nearest fully fine-tuned version of its lineage (for that one, its own)"""
    adapter_path: str | None
    """what the aligned version's round trained: its self-contained adapter or, finetune
    "full", its model directory; None for the baseline"""
    adapter_sha256: str | None
    config: dict[str, Any]
    created_at: datetime
    finetune: str | None = None
    """"lora" or "full" for an aligned version; None for the baseline"""

    @classmethod
    def of(cls, v: ModelVersion) -> Version:
        return cls(v.id, v.name, v.kind, v.parent_id, v.round_index, v.base_ref,
                   v.adapter_path, v.adapter_sha256, dict(v.config or {}), v.created_at,
                   v.finetune)

    @property
    def is_baseline(self) -> bool:
        return self.kind == "baseline"

    @property
    def adapters(self) -> list[str]:
        """The adapters to apply on `base_ref` to get this version: its own LoRA adapter; none
        for the baseline and for a fully fine-tuned version (its base_ref is its weights)."""
        return [self.adapter_path] if self.adapter_path and self.finetune != "full" else []

    def adapter_intact(self) -> bool:
        """True when the adapter on disk still matches the hash recorded at registration (and
        for a version without one)."""
        if not self.adapter_path:
            return True
        return (Path(self.adapter_path).is_dir()
                and files.sha256_dir(self.adapter_path) == self.adapter_sha256)


def create_baseline(rt: Runtime, name: str, base_ref: str, config: dict | None = None) -> Version:
    """Register a pre-trained model (idempotent for the same name and base_ref)."""
    with rt.store.session() as s:
        existing = s.scalar(select(ModelVersion).where(ModelVersion.name == name))
        if existing:
            if existing.kind != "baseline" or existing.base_ref != base_ref:
                raise RegistryError(f"version {name!r} exists with different settings")
            return Version.of(existing)
        v = ModelVersion(name=name, kind="baseline", base_ref=base_ref, config=config or {})
        s.add(v)
        s.flush()
        return Version.of(v)


BASELINE_ALIAS = "baseline"
"""A name that always means the baseline (unless a version is really called so): the
registered one, else the configured unit LM, registered then. The baseline itself is named
after its weights (`mini-base`, `TWIST-1.3B`)."""


def get_version(rt: Runtime, ref: int | str) -> Version:
    """A version by id or name; `baseline` is the baseline (see BASELINE_ALIAS)."""
    with rt.store.read() as s:
        if isinstance(ref, int) or str(ref).isdigit():
            v = s.get(ModelVersion, int(ref))
        else:
            v = s.scalar(select(ModelVersion).where(ModelVersion.name == ref))
            if v is None and ref == BASELINE_ALIAS:
                v = s.scalar(select(ModelVersion).where(ModelVersion.kind == "baseline")
                             .order_by(ModelVersion.id))
        if v is not None:
            return Version.of(v)
        known = ", ".join(s.scalars(select(ModelVersion.name).order_by(ModelVersion.id)))
    if ref == BASELINE_ALIAS:  # a fresh store: the configured LM, as README's commands assume
        return ensure_baseline(rt)
    raise RegistryError(f"unknown model version {ref!r} (registered: {known or 'none'})")


def list_versions(rt: Runtime) -> list[Version]:
    with rt.store.read() as s:
        return [Version.of(v) for v in s.scalars(select(ModelVersion).order_by(ModelVersion.id))]


def baseline(rt: Runtime) -> Version | None:
    with rt.store.read() as s:
        v = s.scalar(
            select(ModelVersion).where(ModelVersion.kind == "baseline").order_by(ModelVersion.id)
        )
        return Version.of(v) if v else None


def lineage(rt: Runtime, ref: int | str) -> list[Version]:
    """The version and its ancestors, newest first, ending at the baseline."""
    chain = [get_version(rt, ref)]
    while chain[-1].parent_id is not None:
        chain.append(get_version(rt, chain[-1].parent_id))
    return chain


def derive_aligned(
    rt: Runtime,
    parent: int | str,
    adapter_src: Path,
    round_index: int,
    config: dict | None = None,
    name: str | None = None,
    finetune: str = "lora",
) -> Version:
    """Register a new aligned version whose adapter (finetune "lora") or whole model directory
    (finetune "full") is copied from `adapter_src`."""
    if finetune not in FINETUNE_KINDS:
        raise RegistryError(f"finetune must be one of {FINETUNE_KINDS}, not {finetune!r}")
    par = get_version(rt, parent)
    adapter_src = Path(adapter_src)
    if not adapter_src.is_dir() or not any(adapter_src.iterdir()):
        raise RegistryError(f"adapter directory {adapter_src} is missing or empty")
    name = name or f"{_root_name(rt, par)}-r{round_index}-{uuid.uuid4().hex[:6]}"
    final = rt.settings.checkpoints_dir / name
    if final.exists():
        raise RegistryError(f"checkpoint directory {final} already exists")
    digest = atomic_copy_dir(adapter_src, final)
    try:
        with rt.store.session() as s:
            v = ModelVersion(
                name=name, kind="aligned", parent_id=par.id, round_index=round_index,
                base_ref=str(final) if finetune == "full" else par.base_ref,
                adapter_path=str(final), adapter_sha256=digest, finetune=finetune,
                config=config or {},
            )
            s.add(v)
            s.flush()
            return Version.of(v)
    except Exception:
        shutil.rmtree(final, ignore_errors=True)
        raise


def _root_name(rt: Runtime, version: Version) -> str:
    return lineage(rt, version.id)[-1].name


def atomic_copy_dir(src: Path, dst: Path) -> str:
    """`files.atomic_copy_dir` with a write failure as a RegistryError; returns the digest."""
    try:
        return files.atomic_copy_dir(src, dst)
    except OSError as e:
        raise RegistryError(f"could not write checkpoint {dst}: {e.strerror or e}") from e


def ensure_baseline(rt: Runtime) -> Version:
    """Register the configured base unit LM as the baseline version (idempotent): an existing
    baseline with the same base weights is returned as is."""
    cfg = rt.settings.models.unit_lm
    base_ref = str(cfg.path)
    with rt.store.session() as s:
        v = s.scalar(select(ModelVersion).where(
            ModelVersion.kind == "baseline", ModelVersion.base_ref == base_ref
        ).order_by(ModelVersion.id))
        if v is not None:
            return Version.of(v)
        taken = set(s.scalars(select(ModelVersion.name)))
    stem = "mini-base" if rt.settings.world == "mini" else (Path(base_ref).name or "baseline")
    name, k = stem, 2
    while name in taken:
        name, k = f"{stem}-{k}", k + 1
    return create_baseline(rt, name, base_ref, config=cfg.model_dump(mode="json"))
