"""Step 5 of the loop: train on a round's pairs. TRL `DPOTrainer` on unit-token strings with
a LoRA adapter (peft).

- Data: prompt = the prompt's units as text (`unit_lm.units_to_text`, with the tokenizer's BOS
  in front when it does not add one itself, as the sampler conditions on it); chosen / rejected =
  " " + continuation units (the leading space keeps the prompt's tokenization a prefix, STACK.md;
  TRL appends EOS to completions).
- The model side (parent loading, LoRA, the TRL trainer, self-contained adapters) is
  `models.training`; this module turns a round's stored pairs into examples and registers the
  trained adapter as a new version.
- The adapter is written to a temp dir under `<data_dir>/tmp/`, then `registry.derive_aligned`
  copies it atomically and commits the version row; the temp dir is always removed. A cancelled,
  failed or killed round leaves no version row and no checkpoint dir.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select

from backend import registry
from backend.config import DPOSettings, Settings
from backend.jobs import JobCancelled
from backend.progress import Progress, Report
from backend.runtime import Runtime
from db.schema import PreferencePair, Prompt, Sample, TrainingRound, utcnow
from models.training import train_dpo

log = logging.getLogger(__name__)


def effective_dpo(settings: Settings, overrides: dict | None = None) -> DPOSettings:
    """settings.dpo (its `mini_overrides` already applied in the mini world, by Settings), with
    the per-round `overrides` (from the Admin form / CLI) on top."""
    data = settings.dpo.model_dump()
    for k, v in (overrides or {}).items():
        if v is None:
            continue
        if k not in data:
            raise ValueError(f"unknown DPO setting {k!r}")
        data[k] = v
    return DPOSettings(**data)


def tmp_dir(rt: Runtime, tag: str) -> Path:
    d = rt.settings.data_dir / "tmp" / f"{tag}-{uuid.uuid4().hex[:8]}"
    d.mkdir(parents=True)
    return d


# --- data ------------------------------------------------------------------------------------
def unit_text_fns(unit_lm) -> tuple[Callable[[list[int]], str], Any]:
    tok = unit_lm.hf_tokenizer
    to_text = getattr(unit_lm, "units_to_text", None) or (
        lambda units: " ".join(f"<u{int(u)}>" for u in units)
    )
    return to_text, tok


def make_examples(unit_lm, triples: list[tuple[list[int], list[int], list[int]]]) -> list[dict]:
    """(prompt units, chosen units, rejected units) -> TRL string examples."""
    to_text, tok = unit_text_fns(unit_lm)
    bos = ""
    if tok.bos_token:
        probe = tok(to_text([0]))["input_ids"]
        if not probe or probe[0] != tok.bos_token_id:
            bos = tok.bos_token + " "
    return [
        {"prompt": bos + to_text(p), "chosen": " " + to_text(c), "rejected": " " + to_text(r)}
        for p, c, r in triples
    ]


# --- a round's training step ----------------------------------------------------------------
def round_triples(rt: Runtime, round_id: int) -> list[tuple[list[int], list[int], list[int]]]:
    with rt.store.session() as s:
        pairs = s.scalars(select(PreferencePair).where(PreferencePair.round_id == round_id)
                          .order_by(PreferencePair.id)).all()
        ids = {p.chosen_sample_id for p in pairs} | {p.rejected_sample_id for p in pairs}
        units = dict(s.execute(select(Sample.id, Sample.units).where(Sample.id.in_(ids))).all())
        prompt_units = dict(s.execute(select(Prompt.id, Prompt.units).where(
            Prompt.id.in_({p.prompt_id for p in pairs}))).all())
        return [(prompt_units[p.prompt_id], units[p.chosen_sample_id],
                 units[p.rejected_sample_id]) for p in pairs]


def _set_round(rt: Runtime, round_id: int, **values: Any) -> None:
    with rt.store.session() as s:
        r = s.get(TrainingRound, round_id)
        for k, v in values.items():
            setattr(r, k, v)


def run_training(
    rt: Runtime, round_id: int, progress: Progress | None = None, report: Report | None = None,
) -> dict:
    """Train the round's stored pairs from its parent and register the aligned version.
    Sets the round running -> done (with metrics and result version) or failed/cancelled."""
    with rt.store.session() as s:
        r = s.get(TrainingRound, round_id)
        parent_id, round_index, dpo_cfg = r.parent_version_id, r.round_index, dict(r.dpo_config)
    cfg = DPOSettings(**dpo_cfg)
    parent = registry.get_version(rt, parent_id)
    work = tmp_dir(rt, f"round-{round_id}")
    _set_round(rt, round_id, status="running", error=None)
    try:
        triples = round_triples(rt, round_id)
        examples = make_examples(rt.unit_lm, triples)
        adapters = [parent.adapter_path] if parent.adapter_path else []
        out = work / "adapter"
        metrics = train_dpo(parent.base_ref, adapters, rt.unit_lm.hf_tokenizer, examples, cfg,
                            out, progress, report, work_dir=work)
        version = registry.derive_aligned(
            rt, parent.id, out, round_index,
            config={"dpo": cfg.model_dump(), "round_id": round_id, "self_contained": True,
                    "parent": parent.name},
        )
        summary = {k: v for k, v in metrics.items() if k != "history"}
        _set_round(rt, round_id, status="done", result_version_id=version.id,
                   metrics={**summary, "history": metrics["history"]}, finished_at=utcnow())
        return {"version": version, "metrics": summary}
    except (JobCancelled, KeyboardInterrupt) as e:
        _set_round(rt, round_id, status="cancelled", error=str(e) or "cancelled",
                   finished_at=utcnow())
        raise
    except Exception as e:
        _set_round(rt, round_id, status="failed", error=f"{type(e).__name__}: {e}",
                   finished_at=utcnow())
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
