"""Admin > Versions: the model registry with each version's lineage and whether its adapter is
usable; also the version choices of the Jobs and DPO round forms."""

from __future__ import annotations

from types import SimpleNamespace

import gradio as gr

from app.common import md_table
from backend import registry
from backend.runtime import Runtime


def version_choices(rt: Runtime) -> list[tuple[str, str]]:
    """(label, name) per registered version, oldest first."""
    return [(f"{v.name} ({v.kind}, round {v.round_index})", v.name)
            for v in registry.list_versions(rt)]


WEIGHTS = {"lora": "LoRA adapter", "full": "full model"}
"""What an aligned version's round trained (its `finetune`)."""


def lineage_rows(rt: Runtime, bad_adapters: set[str]) -> list[dict]:
    """Registry rows; `bad_adapters` = adapter paths the health check found unusable."""
    rows = []
    for v in registry.list_versions(rt):
        try:
            chain = " ← ".join(x.name for x in registry.lineage(rt, v.id))
        except Exception:  # noqa: BLE001 - one broken chain must not hide the table
            chain = "?"
        rows.append({"id": v.id, "name": v.name, "kind": v.kind,
                     "round": v.round_index, "lineage": chain,
                     "weights": WEIGHTS.get(v.finetune, ""),
                     "adapter ok": v.adapter_path not in bad_adapters
                     if v.adapter_path else "",
                     "created": str(v.created_at)[:19]})
    return rows


def versions_table(rt: Runtime, bad_adapters: set[str]) -> str:
    return md_table(lineage_rows(rt, bad_adapters))


def build_versions() -> SimpleNamespace:
    with gr.Tab("Versions"):
        versions_md = gr.Markdown(elem_id="admin-versions")
    return SimpleNamespace(versions_md=versions_md)
