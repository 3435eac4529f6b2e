"""Step 5 of the loop: train a round by its method, on a LoRA adapter (peft) or every weight
(the method section's `finetune`), and register the result as a new version.

- `dpo` (the paper): TRL `DPOTrainer` on the round's stored preference pairs.
- `online-dpo`: TRL `OnlineDPOTrainer` on the training prompts; the trainer samples
  continuations itself, `backend.loop.reward` scores them with the AI judge as it goes, and each
  prompt's best and worst of them are a DPO pair (no stored pairs).
- `grpo`: TRL `GRPOTrainer` on the training prompts, scored the same way; every sample is
  pushed by its score relative to its group's mean (no stored pairs).
- `rft`: TRL `SFTTrainer` on the parent's best-judged stored continuations of the training
  prompts (`pairs.best_of_k`); the imitated sample ids are kept in the round's metrics.

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
from backend.config import (
    METHOD_SECTIONS,
    DPOSettings,
    GenerationConfig,
    GRPOSettings,
    OnlineDPOSettings,
    RFTSettings,
    Settings,
)
from backend.jobs import JobCancelled
from backend.progress import Progress, Report
from backend.runtime import Runtime
from db.schema import PreferencePair, Prompt, Sample, TrainingRound, utcnow
from models.training import train_dpo, train_grpo, train_online_dpo, train_rft

log = logging.getLogger(__name__)


def effective_dpo(settings: Settings, overrides: dict | None = None) -> DPOSettings:
    """settings.dpo with the per-round `overrides` on top (see `effective`)."""
    return effective(settings, "dpo", overrides)


def effective(settings: Settings, method: str, overrides: dict | None = None):
    """The settings section of `method` (its `mini_overrides` already applied in the mini
    world, by Settings) with the per-round `overrides` (Admin form / CLI) on top."""
    section = getattr(settings, METHOD_SECTIONS[method])
    data = section.model_dump()
    for k, v in (overrides or {}).items():
        if v is None:
            continue
        if k not in data:
            raise ValueError(f"unknown {method.upper()} setting {k!r}")
        data[k] = v
    return type(section)(**data)


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


def make_examples(unit_lm, triples: list[tuple[list[int], list[int], list[int]]],
                  ends: list[tuple[bool, bool]] | None = None) -> list[dict]:
    """(prompt units, chosen units, rejected units) -> TRL string examples. With `ends`
    (whether the chosen / rejected continuation stopped by EOS), each example carries
    `chosen_ends` / `rejected_ends`, which `models.training.train_dpo` reads to keep EOS only
    on completions that ended."""
    to_text, tok = unit_text_fns(unit_lm)
    bos = ""
    if tok.bos_token:
        probe = tok(to_text([0]))["input_ids"]
        if not probe or probe[0] != tok.bos_token_id:
            bos = tok.bos_token + " "
    out = [{"prompt": bos + to_text(p), "chosen": " " + to_text(c), "rejected": " " + to_text(r)}
           for p, c, r in triples]
    for ex, (ce, re_) in zip(out, ends or [], strict=False):
        ex["chosen_ends"], ex["rejected_ends"] = bool(ce), bool(re_)
    return out


# --- a round's training step ----------------------------------------------------------------
def _ended(units: list[int], params: dict | None) -> bool:
    """Whether a sampled continuation stopped by EOS: the sampler cuts at EOS, so a sample
    shorter than its max_new_units ended; one of full length was cut off mid-speech."""
    cap = (params or {}).get("max_new_units")
    return cap is None or len(units) < int(cap)


def round_triples(rt: Runtime, round_id: int
                  ) -> tuple[list[tuple[list[int], list[int], list[int]]], list[tuple[bool, bool]]]:
    """The round's pairs as (prompt, chosen, rejected) units, and whether each side ended."""
    with rt.store.session() as s:
        pairs = s.scalars(select(PreferencePair).where(PreferencePair.round_id == round_id)
                          .order_by(PreferencePair.id)).all()
        ids = {p.chosen_sample_id for p in pairs} | {p.rejected_sample_id for p in pairs}
        rows = {i: (u, sp) for i, u, sp in s.execute(select(
            Sample.id, Sample.units, Sample.sampling_params).where(Sample.id.in_(ids))).all()}
        prompt_units = dict(s.execute(select(Prompt.id, Prompt.units).where(
            Prompt.id.in_({p.prompt_id for p in pairs}))).all())
        triples = [(prompt_units[p.prompt_id], rows[p.chosen_sample_id][0],
                    rows[p.rejected_sample_id][0]) for p in pairs]
        ends = [(_ended(*rows[p.chosen_sample_id]), _ended(*rows[p.rejected_sample_id]))
                for p in pairs]
        return triples, ends


def _set_round(rt: Runtime, round_id: int, **values: Any) -> None:
    with rt.store.session() as s:
        r = s.get(TrainingRound, round_id)
        for k, v in values.items():
            setattr(r, k, v)


def _online_prompts(rt: Runtime, split: str, limit: int | None) -> list[dict]:
    """The training prompts as rows for an online trainer: unit text (with BOS as the sampler
    sees it) and the transcript the judge reads."""
    from backend.loop.transcribe import transcribe

    transcribe(rt, sample_ids=[], prompts=True)
    with rt.store.session() as s:
        q = select(Prompt.id, Prompt.units, Prompt.transcript, Prompt.reference_text).where(
            Prompt.split == split).order_by(Prompt.id)
        rows = s.execute(q).all()
    rows = rows[:limit] if limit else rows
    if not rows:
        raise ValueError(f"no prompts in split {split!r} to train on")
    texts = make_examples(rt.unit_lm, [(list(u), [], []) for _, u, _, _ in rows])
    return [{"prompt": ex["prompt"], "prompt_id": pid, "prompt_text": tx or ref or ""}
            for ex, (pid, _, tx, ref) in zip(texts, rows, strict=True)]


def _train_online(rt: Runtime, parent, method: str, cfg: GRPOSettings | OnlineDPOSettings,
                  gen: GenerationConfig, out: Path, work: Path, progress, report) -> dict:
    """grpo or online-dpo: the trainer samples the training prompts itself; its reward is the
    judge path in memory."""
    from backend.loop.reward import judge_continuations

    lm = rt.unit_lm
    prompts = _online_prompts(rt, gen.train_split, gen.max_prompts)

    def reward(rows: list[dict], completion_ids: list[list[int]]) -> list[float | None]:
        return judge_continuations(rt, [r["prompt_text"] for r in rows],
                                   [lm.ids_to_units(c) for c in completion_ids])

    sampling = {"temperature": gen.temperature, "top_k": gen.top_k, "top_p": gen.top_p,
                "max_new_units": gen.max_new_units}
    adapters = parent.adapters
    trainer = train_grpo if method == "grpo" else train_online_dpo
    return trainer(parent.base_ref, adapters, lm.hf_tokenizer, prompts, reward, cfg,
                   sampling, out, progress, report, work_dir=work,
                   suppress_tokens=lm.non_unit_ids)


def _rft_examples(rt: Runtime, parent, cfg: RFTSettings, gen: GenerationConfig,
                  ) -> tuple[list[dict], list[int]]:
    """prompt -> best continuation examples from the parent's judged training samples."""
    from backend.loop.pairs import ai_candidates, best_of_k

    judges = [j.name for j in rt.settings.models.judges if j.trains]
    chosen = best_of_k(ai_candidates(rt, parent.id, gen.train_split, judges), cfg.min_score,
                       cfg.per_prompt, judges)
    if not chosen:
        raise ValueError(f"no stored continuation of {parent.name} on {gen.train_split!r} "
                         f"scores >= {cfg.min_score}: nothing to imitate")
    with rt.store.session() as s:
        prompt_units = dict(s.execute(select(Prompt.id, Prompt.units).where(
            Prompt.id.in_({c.prompt_id for c in chosen}))).all())
        params = dict(s.execute(select(Sample.id, Sample.sampling_params).where(
            Sample.id.in_([c.sample_id for c in chosen]))).all())
    triples = [(prompt_units[c.prompt_id], list(c.units), []) for c in chosen]
    rows = make_examples(rt.unit_lm, triples)
    examples = [{"prompt": r["prompt"], "completion": r["chosen"],
                 "completion_ends": _ended(list(c.units), params.get(c.sample_id))}
                for r, c in zip(rows, chosen, strict=True)]
    return examples, [c.sample_id for c in chosen]


def run_training(
    rt: Runtime, round_id: int, progress: Progress | None = None, report: Report | None = None,
    generation: GenerationConfig | None = None,
) -> dict:
    """Train the round from its parent by the round's method and register the aligned
    version; `generation` (default: the settings') is how an online method samples. Sets
    the round running -> done (with metrics and result version) or failed/cancelled."""
    with rt.store.session() as s:
        r = s.get(TrainingRound, round_id)
        parent_id, round_index = r.parent_version_id, r.round_index
        method, train_cfg = r.method, dict(r.train_config)
    parent = registry.get_version(rt, parent_id)
    work = tmp_dir(rt, f"round-{round_id}")
    _set_round(rt, round_id, status="running", error=None)
    try:
        out = work / "adapter"
        gen = generation or rt.settings.generation
        adapters = parent.adapters
        if method in ("grpo", "online-dpo"):
            cfg = (GRPOSettings if method == "grpo" else OnlineDPOSettings)(**train_cfg)
            metrics = _train_online(rt, parent, method, cfg, gen, out, work, progress, report)
        elif method == "rft":
            cfg = RFTSettings(**train_cfg)
            examples, imitated = _rft_examples(rt, parent, cfg, gen)
            metrics = train_rft(parent.base_ref, adapters, rt.unit_lm.hf_tokenizer, examples,
                                cfg, out, progress, report, work_dir=work)
            metrics["imitated_sample_ids"] = imitated
        else:
            cfg = DPOSettings(**train_cfg)
            triples, ends = round_triples(rt, round_id)
            examples = make_examples(rt.unit_lm, triples, ends)
            metrics = train_dpo(parent.base_ref, adapters, rt.unit_lm.hf_tokenizer, examples,
                                cfg, out, progress, report, work_dir=work)
        version = registry.derive_aligned(
            rt, parent.id, out, round_index,
            config={"method": method, method: cfg.model_dump(), "round_id": round_id,
                    "self_contained": True, "parent": parent.name},
            finetune=cfg.finetune,
        )
        summary = {k: v for k, v in metrics.items()
                   if k not in ("history", "imitated_sample_ids")}
        _set_round(rt, round_id, status="done", result_version_id=version.id,
                   metrics={**metrics, **summary}, finished_at=utcnow())
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
