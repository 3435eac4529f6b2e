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
from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from backend import jobs, pipeline, registry, training
from backend.config import DPOSettings, GenerationConfig, SelectionConfig
from backend.jobs import JobCancelled, JobContext, JobError, handler
from backend.preferences import (
    ABVote,
    Candidate,
    MOSRating,
    Pair,
    Thresholds,
    WordBigramLM,
    curriculum_thresholds,
    human_ab_pairs,
    human_mos_pairs,
    mix_pairs,
    select_ai_pairs,
    select_asr_pairs,
    select_likelihood_pairs,
)
from backend.rating import not_trap_answer
from backend.runtime import Runtime
from db.schema import Judgment, PreferencePair, Prompt, Sample, TrainingRound, utcnow

log = logging.getLogger(__name__)
SOURCES = ("ai", "human", "both")
Progress = Callable[[float, str], None]


# --- settings for one round job ---------------------------------------------------------------
ALIASES = {"steps": ("dpo", "max_steps"), "lr": ("dpo", "learning_rate"),
           "n": ("generation", "n")}


def split_overrides(overrides: dict | None) -> dict[str, dict]:
    """Flat or nested overrides -> {"dpo": {...}, "selection": {...}, "generation": {...}}.
    Flat keys are looked up in dpo, then selection, then generation; unknown keys are errors."""
    out: dict[str, dict] = {"dpo": {}, "selection": {}, "generation": {}}
    sections = {"dpo": DPOSettings, "selection": SelectionConfig, "generation": GenerationConfig}
    for k, v in (overrides or {}).items():
        if v is None:
            continue
        if k in sections and isinstance(v, dict):
            for kk, vv in v.items():
                if kk not in sections[k].model_fields:
                    raise ValueError(f"unknown {k} setting {kk!r}")
                out[k][kk] = vv
            continue
        if k in ALIASES:
            sec, name = ALIASES[k]
            out[sec][name] = v
            continue
        for sec, model in sections.items():
            if k in model.model_fields:
                out[sec][k] = v
                break
        else:
            raise ValueError(f"unknown round setting {k!r}")
    return out


def round_options(rt: Runtime) -> dict:
    """Defaults for the Admin form: effective DPO, selection and generation settings."""
    return {
        "sources": list(SOURCES),
        "dpo": training.effective_dpo(rt.settings).model_dump(),
        "selection": rt.settings.selection.model_dump(),
        "generation": rt.settings.generation.model_dump(),
    }


# --- candidates from the store --------------------------------------------------------------
def ai_candidates(rt: Runtime, version_id: int, split: str, judges: list[str]) -> list[Candidate]:
    raters = {pipeline.rater_key(rt.judge(n)): n for n in judges}
    with rt.store.session() as s:
        rows = s.execute(
            select(Sample.id, Sample.prompt_id, Sample.units, Sample.transcript)
            .join(Prompt, Sample.prompt_id == Prompt.id)
            .where(Sample.model_version_id == version_id, Prompt.split == split,
                   Sample.is_trap.is_(False))
            .order_by(Sample.id)
        ).all()
        ids = [r[0] for r in rows]
        scores: dict[int, dict[str, float]] = {}
        for sid, rater, value in s.execute(
            select(Judgment.sample_id, Judgment.rater, Judgment.value).where(
                Judgment.kind == "ai", Judgment.value.is_not(None),
                Judgment.rater.in_(list(raters)), Judgment.sample_id.in_(ids),
            )
        ):
            scores.setdefault(sid, {})[raters[rater]] = float(value)
    return [Candidate(sid, pid, tuple(units or ()), tx, scores.get(sid, {}))
            for sid, pid, units, tx in rows]


def human_feedback(rt: Runtime, split: str) -> tuple[list[ABVote], list[MOSRating]]:
    with rt.store.session() as s:
        base = (select(Judgment, Sample.prompt_id).join(Sample, Judgment.sample_id == Sample.id)
                .join(Prompt, Sample.prompt_id == Prompt.id)
                .where(Prompt.split == split, Judgment.flagged.is_(False), not_trap_answer()))
        votes = [ABVote(pid, j.sample_id, j.sample_b_id, j.choice, j.rater)
                 for j, pid in s.execute(base.where(Judgment.kind == "ab"))]
        mos = [MOSRating(pid, j.sample_id, float(j.value), j.rater)
               for j, pid in s.execute(base.where(Judgment.kind == "mos",
                                                  Judgment.aspect.in_(("overall",
                                                                       "meaningfulness"))))]
    return votes, mos


def reference_texts(rt: Runtime) -> list[str]:
    with rt.store.session() as s:
        return [t for t in s.scalars(select(Prompt.reference_text)) if t]


def select_pairs(
    rt: Runtime, source: str, version_id: int | None, sel: SelectionConfig, th: Thresholds,
    round_index: int, split: str,
) -> list[Pair]:
    groups: dict[str, list[Pair]] = {}
    if source in ("ai", "both"):
        judges = [j.name for j in rt.settings.models.judges]
        cands = ai_candidates(rt, version_id, split, judges)
        if sel.strategy == "ai":
            groups["ai"] = select_ai_pairs(cands, th, judges, sel.autobleu_on, round_index)
        elif sel.strategy == "likelihood":
            texts = reference_texts(rt)
            lm = WordBigramLM(texts) if texts else None
            groups["ai"] = select_likelihood_pairs(cands, th.autobleu_max, sel.likelihood_margin,
                                                   lm, autobleu_on=sel.autobleu_on)
        else:
            vocab = {w for t in reference_texts(rt) for w in t.lower().split()}
            groups["ai"] = select_asr_pairs(cands, vocab, th.autobleu_max, sel.asr_margin,
                                            sel.autobleu_on)
    if source in ("human", "both"):
        votes, mos = human_feedback(rt, split)
        groups["human"] = mix_pairs({"ab": human_ab_pairs(votes, sel.human_min_votes),
                                     "mos": human_mos_pairs(mos, sel.mos_margin)})
    return mix_pairs(groups, {"ai": sel.ai_weight, "human": sel.human_weight})


# --- the loop --------------------------------------------------------------------------------
def _span(progress: Progress, lo: float, hi: float, prefix: str) -> Progress:
    return lambda f, m="": progress(lo + (hi - lo) * min(1.0, max(0.0, f)), f"{prefix}: {m}")


def _sample_and_judge(rt: Runtime, version: dict, split: str, gen: GenerationConfig,
                      progress: Progress, n: int | None = None, limit: int | None = None) -> None:
    """`n` (default `gen.n`) continuations of up to `limit` prompts of `split` by `version`
    with the round's sampling settings, transcribed and AI-judged. Resumable: what exists is
    kept."""
    pipeline.generate(
        rt, version["id"], split=split, n=n or gen.n, seed=gen.seed, limit=limit,
        progress=_span(progress, 0.0, 0.6, "generate"), temperature=gen.temperature,
        top_k=gen.top_k, top_p=gen.top_p, max_new_units=gen.max_new_units,
    )
    pipeline.transcribe(rt, version=version["id"], progress=_span(progress, 0.6, 0.7,
                                                                     "transcribe"))
    pipeline.judge(rt, version=version["id"], progress=_span(progress, 0.7, 1.0, "judge"))


def _evaluate(rt: Runtime, version: dict, parent: dict, gen: GenerationConfig,
              progress: Progress) -> dict:
    """Held-out continuations of the new version and its parent, AI-judged, then the
    benchmarks and the judge score. Without those samples the evaluation had no judge score
    (the paper's measure) and the Leaderboard nothing to compare the new version by. The
    parent's are made once (resumable), so each later round samples one version."""
    from backend.evaluation import evaluate_version

    split = gen.heldout_split
    try:
        if pipeline.select_prompts(rt, split=split):
            for k, v in enumerate((parent, version)):
                _sample_and_judge(rt, v, split, gen, _span(progress, 0.25 * k, 0.25 * (k + 1),
                                                           f"{split} samples of {v['name']}"),
                                  n=gen.heldout_n)
        res = evaluate_version(rt, version["name"], split=split,
                               progress=_span(progress, 0.5, 1.0, "benchmarks"))
        return {"results": res}
    except JobCancelled:
        raise
    except Exception as e:  # noqa: BLE001 - the version exists; evaluation can be rerun
        log.exception("evaluation of %s failed", version["name"])
        return {"error": f"{type(e).__name__}: {e}"}


def run_rounds(
    rt: Runtime, parent: int | str | None = None, source: str = "ai", rounds: int = 1,
    curriculum: bool = False, overrides: dict | None = None, progress: Progress | None = None,
    report: Callable[..., None] | None = None, job_id: int | None = None,
    evaluate: bool = True,
) -> dict:
    """Run K rounds from `parent` (default: the baseline). Returns the rounds' summaries."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}")
    progress = progress or (lambda f, m="": None)
    report = report or (lambda **kw: None)
    ov = split_overrides(overrides)
    sel = SelectionConfig(**{**rt.settings.selection.model_dump(), **ov["selection"]})
    gen = GenerationConfig(**{**rt.settings.generation.model_dump(), **ov["generation"]})
    dpo = training.effective_dpo(rt.settings, ov["dpo"])
    current = registry.get_version(rt, parent) if parent is not None \
        else pipeline.ensure_baseline(rt)
    base_th = Thresholds(sel.chosen_min, sel.rejected_max, sel.autobleu_max)
    done: list[dict] = []
    stopped = None
    for r in range(rounds):
        lo, hi = r / rounds, (r + 1) / rounds
        step = lambda a, b, name, lo=lo, hi=hi, r=r: _span(  # noqa: E731
            progress, lo + (hi - lo) * a, lo + (hi - lo) * b, f"round {r + 1}/{rounds} {name}")
        round_index = current["round_index"] + 1
        th = curriculum_thresholds(base_th, round_index if curriculum else 1,
                                   sel.curriculum_step, 1.0, sel.score_max)
        if source in ("ai", "both"):
            _sample_and_judge(rt, current, gen.train_split, gen, step(0.0, 0.4, "samples"),
                              limit=gen.max_prompts)
        pairs = select_pairs(rt, source, current["id"], sel, th, round_index, gen.train_split)
        selection = {**sel.model_dump(), "chosen_min": th.chosen_min,
                     "rejected_max": th.rejected_max, "curriculum": curriculum}
        with rt.store.session() as s:
            row = TrainingRound(
                parent_version_id=current["id"], round_index=round_index, pair_source=source,
                selection=selection, dpo_config=dpo.model_dump(), status="pending",
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
        if len(pairs) < sel.min_pairs:
            stopped = (f"round {r + 1}: only {len(pairs)} pairs pass "
                       f"(chosen >= {th.chosen_min}, rejected <= {th.rejected_max}); "
                       f"need {sel.min_pairs}")
            with rt.store.session() as s:
                rr = s.get(TrainingRound, round_id)
                rr.status, rr.error, rr.finished_at = "failed", f"stopped: {stopped}", utcnow()
            break
        res = training.run_training(rt, round_id, progress=step(0.4, 0.7, "DPO"), report=report)
        version = res["version"]
        ev = _evaluate(rt, version, current, gen, step(0.7, 1.0, "evaluate")) \
            if evaluate else {"skipped": "disabled"}
        with rt.store.session() as s:
            rr = s.get(TrainingRound, round_id)
            rr.metrics = {**rr.metrics, "evaluation": json.loads(json.dumps(ev, default=str))}
        done.append({"round_id": round_id, "version": version["name"], "n_pairs": len(pairs),
                     "metrics": res["metrics"], "evaluation": ev})
        report(versions=[d["version"] for d in done])
        current = version
        progress(hi, f"round {r + 1}/{rounds} done: {version['name']}")
    return {"rounds": done, "final_version": current["name"], "stopped_early": stopped}


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


@handler("round", resumable=False, exclusive=True)
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
    ov = split_overrides(overrides)
    training.effective_dpo(rt.settings, ov["dpo"])  # validates values
    SelectionConfig(**{**rt.settings.selection.model_dump(), **ov["selection"]})
    GenerationConfig(**{**rt.settings.generation.model_dump(), **ov["generation"]})
    par = registry.get_version(rt, parent)["name"] if parent is not None \
        else pipeline.ensure_baseline(rt)["name"]
    return jobs.submit(rt, "round", {
        "parent": par, "source": source, "rounds": int(rounds), "curriculum": bool(curriculum),
        "overrides": overrides or {}, "evaluate": evaluate,
    }, user_id=user_id)


def round_dict(r: TrainingRound) -> dict:
    return {c: getattr(r, c) for c in (
        "id", "parent_version_id", "result_version_id", "round_index", "pair_source", "selection",
        "dpo_config", "status", "n_pairs", "metrics", "error", "job_id", "created_at",
        "finished_at")}


def list_rounds(rt: Runtime, limit: int = 50) -> list[dict]:
    with rt.store.session() as s:
        rows = s.scalars(select(TrainingRound).order_by(TrainingRound.id.desc()).limit(limit))
        return [round_dict(r) for r in rows]


def round_pairs(rt: Runtime, round_id: int) -> list[dict]:
    with rt.store.session() as s:
        rows = s.scalars(select(PreferencePair).where(PreferencePair.round_id == round_id)
                         .order_by(PreferencePair.id))
        return [{"id": p.id, "prompt_id": p.prompt_id, "chosen_sample_id": p.chosen_sample_id,
                 "rejected_sample_id": p.rejected_sample_id, "source": p.source,
                 "margin": p.margin, "provenance": p.provenance} for p in rows]


# --- CLI -------------------------------------------------------------------------------------
def add_cli(sub) -> None:
    rp = sub.add_parser("round", help="run DPO round(s): generate, judge, pairs, DPO, evaluate")
    rp.add_argument("--parent", default=None, help="version name or id (default: baseline)")
    rp.add_argument("--source", choices=SOURCES, default="ai")
    rp.add_argument("--rounds", type=int, default=1)
    rp.add_argument("--curriculum", action="store_true", help="raise thresholds each round")
    rp.add_argument("--steps", type=int, default=None, help="DPO max steps")
    rp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a dpo/selection/generation setting (JSON value)")
    rp.add_argument("--no-eval", action="store_true")
    rp.add_argument("--no-wait", action="store_true", help="queue a job and print its id")

    def cmd_round(args):
        from backend.cli import runtime_from

        rt = runtime_from(args)
        overrides: dict[str, Any] = {"steps": args.steps}
        for kv in args.set:
            k, _, v = kv.partition("=")
            try:
                overrides[k] = json.loads(v)
            except json.JSONDecodeError:
                overrides[k] = v
        overrides = {k: v for k, v in overrides.items() if v is not None}
        if args.no_wait:
            jid = start_round(rt, args.parent, args.source, args.rounds, args.curriculum,
                              overrides, evaluate=not args.no_eval)
            print(f"queued round job {jid} (python -m backend jobs show {jid})")
            return
        update, close = pipeline.tqdm_progress("round")
        try:
            res = run_rounds(rt, args.parent, args.source, args.rounds, args.curriculum,
                             overrides, progress=update, evaluate=not args.no_eval)
        finally:
            close()
        print(json.dumps(res, indent=2, default=str))

    rp.set_defaults(func=cmd_round)
