"""The Align-SLM loop as one job: generate -> transcribe -> judge -> pairs -> DPO -> evaluate,
for one round or K curriculum rounds (each round samples with the newest version and, with
`curriculum`, raises the selection thresholds by `selection.curriculum_step`; the loop stops early
when fewer than `selection.min_pairs` pairs pass).

Admin UI entry points: `start_round(...) -> job_id`, `list_rounds(rt)`, `round_pairs(rt, id)`,
`round_options()`; job progress/cancel through `backend.jobs`.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from backend import jobs, registry
from backend.config import (
    METHOD_SECTIONS,
    DPOSettings,
    GenerationConfig,
    GRPOSettings,
    OnlineDPOSettings,
    RFTSettings,
    SelectionConfig,
    TrainingConfig,
)
from backend.jobs import JobCancelled, JobContext, JobError, handler
from backend.loop import train
from backend.loop.generate import generate, select_prompts
from backend.loop.judge import judge
from backend.loop.pairs import Thresholds, curriculum_thresholds, select_pairs
from backend.loop.transcribe import transcribe
from backend.progress import Progress, Report, no_report, noop, span
from backend.registry import Version
from backend.runtime import Runtime
from backend.trust import judges_for_pairs
from db.schema import (
    PAIR_SOURCES,
    TRAINING_METHODS,
    Job,
    PreferencePair,
    TrainingRound,
    utcnow,
)

log = logging.getLogger(__name__)
SOURCES = PAIR_SOURCES


# --- settings for one round job ---------------------------------------------------------------
SECTIONS = {"training": TrainingConfig, "dpo": DPOSettings, "online_dpo": OnlineDPOSettings,
            "grpo": GRPOSettings, "rft": RFTSettings, "selection": SelectionConfig,
            "generation": GenerationConfig}
ALIASES = {"steps": "max_steps", "lr": "learning_rate"}
"""Short flat names; they (like every flat training setting) go to the round's method's
section."""


def split_overrides(overrides: dict | None, default_method: str = "dpo") -> dict[str, dict]:
    """Flat or nested overrides -> {"training": {...}, "dpo": {...}, "online_dpo": {...},
    "grpo": {...}, "rft": {...}, "selection": {...}, "generation": {...}}. A flat key is looked
    up in the section of the round's method (`method` among the overrides, else
    `default_method`), then selection, then generation (`n` is generation's); unknown keys are
    errors."""
    out: dict[str, dict] = {k: {} for k in SECTIONS}
    ov = {k: v for k, v in (overrides or {}).items() if v is not None}
    method = ov.get("method") or (ov.get("training") or {}).get("method") or default_method
    if method not in TrainingConfig.model_fields["method"].annotation.__args__:
        raise ValueError(f"unknown training method {method!r}")
    for k, v in ov.items():
        if k in SECTIONS and isinstance(v, dict):
            for kk, vv in v.items():
                if kk not in SECTIONS[k].model_fields:
                    raise ValueError(f"unknown {k} setting {kk!r}")
                out[k][kk] = vv
            continue
        if k == "method":
            out["training"]["method"] = v
            continue
        name = ALIASES.get(k, k)
        for sec in (METHOD_SECTIONS[method], "selection", "generation"):
            if name in SECTIONS[sec].model_fields and name != "mini_overrides":
                out[sec][name] = v
                break
        else:
            raise ValueError(f"unknown round setting {k!r} (method {method})")
    return out


def round_settings(rt: Runtime, overrides: dict | None) -> dict:
    """The effective, validated settings of a round: its method and that method's section,
    selection and generation, each the configured one with the overrides on top."""
    ov = split_overrides(overrides, rt.settings.training.method)
    training = TrainingConfig(**{**rt.settings.training.model_dump(), **ov["training"]})
    method_cfg = train.effective(rt.settings, training.method,
                                 ov[METHOD_SECTIONS[training.method]])
    for other in TRAINING_METHODS:  # settings given for another method: still checked
        if other != training.method and ov[METHOD_SECTIONS[other]]:
            train.effective(rt.settings, other, ov[METHOD_SECTIONS[other]])
    return {
        "method": training.method, "train": method_cfg,
        "selection": SelectionConfig(**{**rt.settings.selection.model_dump(),
                                        **ov["selection"]}),
        "generation": GenerationConfig(**{**rt.settings.generation.model_dump(),
                                          **ov["generation"]}),
    }


def round_options(rt: Runtime) -> dict:
    """Defaults for the Admin form: the method and every method's, selection and generation
    settings."""
    return {
        "sources": list(SOURCES),
        "methods": list(TRAINING_METHODS),
        "method": rt.settings.training.method,
        **{m: train.effective(rt.settings, m).model_dump() for m in TRAINING_METHODS},
        "selection": rt.settings.selection.model_dump(),
        "generation": rt.settings.generation.model_dump(),
    }


# --- the loop --------------------------------------------------------------------------------
def _sample_and_judge(rt: Runtime, version: Version, split: str, gen: GenerationConfig,
                      progress: Progress, n: int | None = None, limit: int | None = None) -> None:
    """`n` (default `gen.n`) continuations of up to `limit` prompts of `split` by `version`
    with the round's sampling settings, transcribed and AI-judged. Resumable: what exists is
    kept."""
    generate(
        rt, version.id, split=split, n=n or gen.n, seed=gen.seed, limit=limit,
        progress=span(progress, 0.0, 0.6, "generate"), temperature=gen.temperature,
        top_k=gen.top_k, top_p=gen.top_p, max_new_units=gen.max_new_units,
    )
    transcribe(rt, version=version.id, progress=span(progress, 0.6, 0.7,
                                                                     "transcribe"))
    judge(rt, version=version.id, progress=span(progress, 0.7, 1.0, "judge"))


def _evaluate(rt: Runtime, version: Version, parent: Version, gen: GenerationConfig,
              progress: Progress) -> dict:
    """Held-out continuations of the new version and its parent, AI-judged, then the
    benchmarks and the judge score. Without those samples the evaluation had no judge score
    (the paper's measure) and the Leaderboard nothing to compare the new version by. The
    parent's are made once (resumable), so each later round samples one version. The parent
    is scored too - its benchmarks once, its judge score on its current held-out samples each
    time - so the before/after comparison has both sides."""
    from backend.loop.evaluate import (
        evaluate_judge,
        evaluate_version,
        latest_results,
        store_results,
    )

    split = gen.heldout_split
    try:
        if select_prompts(rt, split=split):
            for k, v in enumerate((parent, version)):
                _sample_and_judge(rt, v, split, gen, span(progress, 0.2 * k, 0.2 * (k + 1),
                                                           f"{split} samples of {v.name}"),
                                  n=gen.heldout_n)
        benched = any(vid == parent.id and not bench.startswith("judge:")
                      for vid, bench, _metric in latest_results(rt, split))
        if benched:
            store_results(rt, parent.id, evaluate_judge(rt, parent.id, split), None)
        else:
            evaluate_version(rt, parent.name, split=split,
                             progress=span(progress, 0.4, 0.7, f"benchmarks of {parent.name}"))
        res = evaluate_version(rt, version.name, split=split,
                               progress=span(progress, 0.7, 1.0, f"benchmarks of {version.name}"))
        return {"results": res}
    except JobCancelled:
        raise
    except Exception as e:  # noqa: BLE001 - the version exists; evaluation can be rerun
        log.exception("evaluation of %s failed", version.name)
        return {"error": f"{type(e).__name__}: {e}"}


def run_rounds(
    rt: Runtime, parent: int | str | None = None, source: str = "ai", rounds: int = 1,
    curriculum: bool = False, overrides: dict | None = None, progress: Progress | None = None,
    report: Report | None = None, job_id: int | None = None,
    evaluate: bool = True,
) -> dict:
    """Run K rounds from `parent` (default: the baseline). Returns the rounds' summaries."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}")
    progress = progress or noop
    report = report or no_report
    cfg = round_settings(rt, overrides)
    method, train_cfg, sel, gen = cfg["method"], cfg["train"], cfg["selection"], \
        cfg["generation"]
    if method != "dpo" and source != "ai":
        raise ValueError(f"method {method} learns from the AI judge only (source 'ai'); human "
                         "votes train by dpo")
    current = registry.get_version(rt, parent) if parent is not None \
        else registry.ensure_baseline(rt)
    base_th = Thresholds(sel.chosen_min, sel.rejected_max, sel.autobleu_max)
    done: list[dict] = []
    stopped = None
    for r in range(rounds):
        lo, hi = r / rounds, (r + 1) / rounds

        def step(a: float, b: float, name: str, lo=lo, hi=hi, r=r) -> Progress:
            """The part [a, b] of this round's share of the job, as the stage `name`; reported
            with its span and start, so the round dashboard can tell the stage's own ETA."""
            f0, f1, stage = lo + (hi - lo) * a, lo + (hi - lo) * b, f"round {r + 1}/{rounds} {name}"
            report(stage={"name": stage, "from": f0, "to": f1, "started": time.time()})
            return span(progress, f0, f1, stage)

        round_index = current.round_index + 1
        th = curriculum_thresholds(base_th, round_index if curriculum else 1,
                                   sel.curriculum_step, 1.0, sel.score_max)
        online = method in ("grpo", "online-dpo")  # sample and judge inside training
        if source != "human" and not online:
            _sample_and_judge(rt, current, gen.train_split, gen, step(0.0, 0.4, "samples"),
                              limit=gen.max_prompts)
        uses = judges_for_pairs(rt, source) if method == "dpo" and source != "human" else []
        pairs = select_pairs(rt, source, current.id, sel, th, round_index, gen.train_split,
                             uses) if method == "dpo" else []  # the other methods keep no pairs
        selection = {**sel.model_dump(), "chosen_min": th.chosen_min,
                     "rejected_max": th.rejected_max, "curriculum": curriculum}
        with rt.store.session() as s:
            row = TrainingRound(
                parent_version_id=current.id, round_index=round_index, pair_source=source,
                selection=selection, method=method, train_config=train_cfg.model_dump(),
                judges=[u.as_dict() for u in uses], status="pending",
                n_pairs=len(pairs), job_id=job_id,
            )
            s.add(row)
            s.flush()
            round_id = row.id
            s.add_all(PreferencePair(
                round_id=round_id, prompt_id=p.prompt_id, chosen_sample_id=p.chosen_id,
                rejected_sample_id=p.rejected_id, source=p.source, margin=p.margin,
                provenance=p.provenance) for p in pairs)
        report(round=r + 1, round_id=round_id, n_pairs=len(pairs),
               thresholds={"chosen_min": th.chosen_min, "rejected_max": th.rejected_max})
        if method == "dpo" and len(pairs) < sel.min_pairs:
            stopped = (f"round {r + 1}: only {len(pairs)} pairs pass "
                       f"(chosen >= {th.chosen_min}, rejected <= {th.rejected_max}); "
                       f"need {sel.min_pairs}")
            with rt.store.session() as s:
                rr = s.get(TrainingRound, round_id)
                rr.status, rr.error, rr.finished_at = "failed", f"stopped: {stopped}", utcnow()
            break
        res = train.run_training(rt, round_id, report=report, generation=gen,
                                 progress=step(0.0 if online else 0.4, 0.7, method.upper()))
        version = res["version"]
        ev = _evaluate(rt, version, current, gen, step(0.7, 1.0, "evaluate")) \
            if evaluate else {"skipped": "disabled"}
        with rt.store.session() as s:
            rr = s.get(TrainingRound, round_id)
            rr.metrics = {**rr.metrics, "evaluation": json.loads(json.dumps(ev, default=str))}
        done.append({"round_id": round_id, "version": version.name, "n_pairs": len(pairs),
                     "metrics": res["metrics"], "evaluation": ev})
        report(versions=[d["version"] for d in done])
        current = version
        progress(hi, f"round {r + 1}/{rounds} done: {version.name}")
    return {"rounds": done, "final_version": current.name, "stopped_early": stopped}


def _logged(ctx: JobContext) -> Progress:
    """ctx.progress that also writes a log line at each new stage ("round 1/2 DPO", ...), so
    the Admin job log tells the round's course while it runs, not only its failure."""
    last = None

    def progress(fraction: float, message: str = "") -> None:
        nonlocal last
        stage = message.rsplit(":", 1)[0]
        if message and stage != last:
            last = stage
            ctx.log(message)
        ctx.progress(fraction, message)

    return progress


def _recover_round(rt: Runtime, job_id: int) -> None:
    """on_lost of the round job: a round whose job was lost is failed with the reason; its
    temp dir goes."""
    with rt.store.session() as s:
        job = s.get(Job, job_id)
        if job is None or job.status != "failed":
            return
        rounds = s.scalars(select(TrainingRound).where(
            TrainingRound.job_id == job_id, TrainingRound.status.in_(("pending", "running"))
        )).all()
        for r in rounds:
            r.status, r.finished_at = "failed", utcnow()
            r.error = job.error or "interrupted: job lost"
        ids = [r.id for r in rounds]
    for rid in ids:
        for d in (rt.settings.data_dir / "tmp").glob(f"round-{rid}-*"):
            shutil.rmtree(d, ignore_errors=True)
    for d in rt.settings.checkpoints_dir.glob(".tmp-*"):  # a registry copy cut short
        shutil.rmtree(d, ignore_errors=True)


@handler("round", resumable=False, exclusive=True, on_lost=_recover_round)
def _job_round(ctx: JobContext) -> dict:
    p = ctx.params
    res = run_rounds(
        ctx.runtime, p.get("parent"), p.get("source", "ai"), int(p.get("rounds", 1)),
        bool(p.get("curriculum", False)), p.get("overrides") or {}, progress=_logged(ctx),
        report=ctx.set_result, job_id=ctx.job_id, evaluate=bool(p.get("evaluate", True)),
    )
    if not res["rounds"]:
        raise JobError(res["stopped_early"] or "no round completed")
    return res


# --- service API for the Admin tab -------------------------------------------------------------
def start_round(
    rt: Runtime, parent: int | str | None, source: str = "ai", rounds: int = 1,
    curriculum: bool = False, overrides: dict | None = None, user_id: int | None = None,
    evaluate: bool = True,
) -> int:
    """Validate and queue a "round" job; returns its id. `parent` None = the baseline."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}")
    if not 1 <= int(rounds) <= 10:
        raise ValueError("rounds must be between 1 and 10")
    cfg = round_settings(rt, overrides)  # validates values
    if cfg["method"] != "dpo" and source != "ai":
        raise ValueError(f"method {cfg['method']} learns from the AI judge only (source 'ai')")
    par = registry.get_version(rt, parent).name if parent is not None \
        else registry.ensure_baseline(rt).name
    return jobs.submit(rt, "round", {
        "parent": par, "source": source, "rounds": int(rounds), "curriculum": bool(curriculum),
        "overrides": overrides or {}, "evaluate": evaluate,
    }, user_id=user_id)


@dataclass(frozen=True)
class RoundRecord:
    """A training round as services hand it around (a snapshot of its row)."""

    id: int
    parent_version_id: int
    result_version_id: int | None
    round_index: int
    pair_source: str
    selection: dict[str, Any]
    method: str
    train_config: dict[str, Any]
    status: str
    n_pairs: int
    judges: list[dict[str, Any]]
    """which training judges the pairs used, with their agreement and why (backend.trust)"""
    metrics: dict[str, Any]
    error: str | None
    job_id: int | None
    created_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, r: TrainingRound) -> RoundRecord:
        return cls(r.id, r.parent_version_id, r.result_version_id, r.round_index, r.pair_source,
                   dict(r.selection or {}), r.method, dict(r.train_config or {}), r.status,
                   int(r.n_pairs or 0), list(r.judges or []),
                   dict(r.metrics or {}), r.error, r.job_id, r.created_at, r.finished_at)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def list_rounds(rt: Runtime, limit: int = 50) -> list[RoundRecord]:
    with rt.store.read() as s:
        rows = s.scalars(select(TrainingRound).order_by(TrainingRound.id.desc()).limit(limit))
        return [RoundRecord.of(r) for r in rows]


def round_pairs(rt: Runtime, round_id: int) -> list[dict]:
    with rt.store.session() as s:
        rows = s.scalars(select(PreferencePair).where(PreferencePair.round_id == round_id)
                         .order_by(PreferencePair.id))
        return [{"id": p.id, "prompt_id": p.prompt_id, "chosen_sample_id": p.chosen_sample_id,
                 "rejected_sample_id": p.rejected_sample_id, "source": p.source,
                 "margin": p.margin, "provenance": p.provenance} for p in rows]
