"""Model-side training (DPO, online DPO, GRPO, RFT): load a parent (base weights + its adapter),
attach a LoRA adapter (peft), run the method's TRL trainer on unit-token strings, save the
adapter self-contained relative to the base. The backend (backend/loop/train.py) prepares the
examples and registers the result; everything that touches transformers, peft and TRL is here.

- Reference model: the trainer gets the parent as a plain model plus `peft_config=LoraConfig`,
  so the reference is the same weights with the new adapter disabled: no second copy in memory.
- For an aligned parent the base is loaded, the parent's adapter merged into it
  (`merge_and_unload`), and a new adapter trained on top, so the reference of round r is exactly
  the model of round r-1 (paper's curriculum). The saved adapter is the rank-concatenation of
  the parent's adapter and the new delta (peft `add_weighted_adapter`, combination "cat", which
  is exact), so serving any version is one `load_adapter` on the base.
- With `finetune = "full"` in the method's section no adapter is made: every weight trains (the
  trainer makes a frozen reference copy where its loss needs one) and the version is saved as a
  whole model directory, the base of its own lineage from then on.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from models.config import META_FILE
from models.interfaces import Progress, Report


def load_parent_model(base_path: str | Path, adapter_paths: list[str]):
    """The base LM with the given (self-contained) adapter merged in, as a plain HF model."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(base_path), dtype=torch.float32)
    if adapter_paths:
        from peft import PeftModel

        # every stored adapter is self-contained: only the newest applies
        model = PeftModel.from_pretrained(model, adapter_paths[-1]).merge_and_unload()
    return model


def combine_adapters(base_path: str | Path, parent_adapter: str | Path, delta: Path,
                     out: Path) -> None:
    """Write into `out` one adapter equal to parent + delta on the base (rank concatenation)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(base_path), dtype=torch.float32)
    m = PeftModel.from_pretrained(base, str(parent_adapter), adapter_name="parent")
    m.load_adapter(str(delta), adapter_name="delta")
    m.add_weighted_adapter(["parent", "delta"], [1.0, 1.0], "full", combination_type="cat")
    m.delete_adapter("parent")
    m.delete_adapter("delta")
    stage = out.parent / f"{out.name}-stage"
    m.save_pretrained(str(stage), selected_adapters=["full"])
    src = stage / "full" if (stage / "full").is_dir() else stage
    # saved under the name "full": make it the default adapter of the directory
    shutil.move(str(src), str(out))
    shutil.rmtree(stage, ignore_errors=True)


LIVE_CURVE = 500
"""Logged steps a running job reports for its live curves (the newest; a bound on the row)."""


def _callback(progress: Progress, report: Report, history: list[dict], method: str,
              live_keys: tuple[str, ...], shown: tuple[tuple[str, str, str], ...]):
    """A TrainerCallback that keeps every logged row in `history`, reports `live_keys` while
    training runs (the latest as `train_metrics`, the last `LIVE_CURVE` steps of them as
    `train_curve`: the round dashboard's live curves) and turns each step into a progress
    message ("DPO step 3/120 loss 0.612 acc 0.75"); `progress` may raise to cancel."""
    from transformers import TrainerCallback

    curve: list[dict] = []

    class _Stream(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kw):
            if not logs:
                return
            row = {"step": state.global_step, **{
                k: float(v) for k, v in logs.items() if isinstance(v, int | float)}}
            history.append(row)
            live = {k: row[k] for k in live_keys if k in row}
            if live:
                curve.append({"step": state.global_step, **live})
                report(train_step=state.global_step, train_max_steps=state.max_steps,
                       train_metrics=live, train_curve=curve[-LIVE_CURVE:])

        def on_step_end(self, args, state, control, **kw):
            last = history[-1] if history else {}
            msg = f"{method} step {state.global_step}/{state.max_steps}"
            for key, label, fmt in shown:
                if key in last:
                    msg += f" {label} {last[key]:{fmt}}"
            progress(state.global_step / max(1, state.max_steps), msg)  # raises JobCancelled

    return _Stream()


def _train_quietly(trainer) -> float:
    """Train; return the seconds it took. Without the log dicts transformers prints (its
    PrinterCallback, added because the trainers run with disable_tqdm) over the CLI's progress
    bar: `_callback` already turns each logged row into progress and live curves."""
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    t0 = time.monotonic()
    trainer.train()
    return time.monotonic() - t0


ATTENTION_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "out_proj")
"""What "attention" stands for in `lora_targets`: Llama (TWIST-7B, the mini LM) names the output
projection `o_proj`, OPT (TWIST-1.3B) `out_proj`."""


def linear_module_names(model) -> set[str]:
    """The last name part of every Linear module (what peft matches `target_modules` against)."""
    return {name.rsplit(".", 1)[-1] for name, m in model.named_modules()
            if isinstance(m, torch.nn.Linear)}


def lora_target_modules(model, targets: list[str]) -> list[str]:
    """The module-name suffixes LoRA should adapt in `model`: "attention" expands to the
    attention projections the model has; any other name must match at least one Linear module
    (peft itself only refuses when *no* name matches, so an OPT model given Llama's `o_proj`
    silently lost a quarter of its adapter)."""
    linear = linear_module_names(model)
    out: list[str] = []
    for t in targets:
        if t == "attention":
            found = [p for p in ATTENTION_PROJECTIONS if p in linear]
            if not found:
                raise ValueError("lora_targets 'attention': the model has none of "
                                 f"{ATTENTION_PROJECTIONS}; its linear modules: {sorted(linear)}")
            out += found
        elif t in linear:
            out.append(t)
        else:
            raise ValueError(f"lora_targets {t!r} matches no linear module of the model; "
                             f"it has: {sorted(linear)}")
    return list(dict.fromkeys(out))


def _start(base_path: str | Path, parent_adapters: list[str], out_dir: Path,
           work_dir: Path | None, cfg: Any):
    """What every trainer starts with: at most two torch threads, its work dir, the parent
    model (base + its adapter merged). For full fine-tuning from a LoRA parent the merged
    parent is saved in the work dir and named the model's path: TRL loads a full fine-tune's
    frozen reference from that path, which must be the parent, not the bare base."""
    torch.set_num_threads(min(2, torch.get_num_threads()))
    work = work_dir or out_dir.parent / f"{out_dir.name}-work"
    work.mkdir(parents=True, exist_ok=True)
    model = load_parent_model(base_path, parent_adapters)
    if cfg.finetune == "full" and parent_adapters:
        model.save_pretrained(str(work / "parent"))
        model.config._name_or_path = str(work / "parent")
        model.requires_grad_(True)  # peft froze the base weights it merged the adapter into
    return model, work


def lora_config(model, cfg: Any):
    """peft LoRA settings from a method's settings section (lora_rank, lora_alpha, ...); None
    when the section says finetune = "full": the trainer then updates every weight (and makes
    its own frozen reference copy where its loss needs one)."""
    from peft import LoraConfig

    if cfg.finetune == "full":
        return None
    return LoraConfig(
        r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
        target_modules=lora_target_modules(model, cfg.lora_targets), bias="none",
        task_type="CAUSAL_LM",
    )


def save_self_contained(model, base_path: str | Path, parent_adapters: list[str],
                        out_dir: Path, work: Path, tokenizer) -> None:
    """Save what a trainer trained into `out_dir`, usable without its parent: a LoRA delta as
    one adapter relative to the base (parent + delta); fully fine-tuned weights (parent
    adapters were merged in before training) as a whole model directory that loads like the
    base: weights, tokenizer and the base's unit layout file."""
    from peft import PeftModel

    if not isinstance(model, PeftModel):
        model.save_pretrained(str(out_dir))
        tokenizer.save_pretrained(str(out_dir))
        layout = Path(base_path) / META_FILE
        if layout.is_file():
            shutil.copy(layout, out_dir / META_FILE)
        return
    delta = work / "delta"
    model.save_pretrained(str(delta))
    if parent_adapters:
        combine_adapters(base_path, parent_adapters[-1], delta, out_dir)
    else:
        shutil.move(str(delta), str(out_dir))


def unit_dpo_trainer():
    """TRL's DPOTrainer with one hook changed: TRL appends EOS to every chosen and rejected
    completion, but a unit continuation cut at `max_new_units` (most of them) never ended, and
    an EOS there teaches the model to stop where it never stopped (with the chosen NLL term,
    directly). Examples that say `chosen_ends` / `rejected_ends` False lose that EOS again."""
    from trl import DPOTrainer

    class UnitDPOTrainer(DPOTrainer):
        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            ds = super()._prepare_dataset(dataset, processing_class, args, dataset_name)
            flags = [c for c in ("chosen_ends", "rejected_ends") if c in ds.column_names]
            if not flags:
                return ds
            eos = self._tokenizer.eos_token_id

            def strip(ex):
                for side in ("chosen", "rejected"):
                    ids = ex[f"{side}_ids"]
                    if not ex[f"{side}_ends"] and ids and ids[-1] == eos:
                        ex[f"{side}_ids"] = ids[:-1]
                return ex

            return ds.map(strip).remove_columns(flags)

    return UnitDPOTrainer


def train_dpo(
    base_path: str | Path, parent_adapters: list[str], tokenizer, examples: list[dict],
    cfg: Any, out_dir: Path, progress: Progress | None = None,
    report: Report | None = None, work_dir: Path | None = None,
    on_trained: Callable[[Any], None] | None = None,
) -> dict:
    """Train one DPO adapter from the parent (base + merged adapters) and save it, self-contained
    relative to the base, into `out_dir`. Returns metrics. `progress` may raise to cancel.
    `cfg` is the `dpo` settings section (backend.config.DPOSettings)."""
    from datasets import Dataset
    from trl import DPOConfig

    progress = progress or (lambda f, m="": None)
    report = report or (lambda **kw: None)
    model, work = _start(base_path, parent_adapters, out_dir, work_dir, cfg)
    lora = lora_config(model, cfg)
    steps = cfg.max_steps if cfg.max_steps and cfg.max_steps > 0 else -1
    args = DPOConfig(
        output_dir=str(work / "trainer"), per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        learning_rate=cfg.learning_rate, beta=cfg.beta, max_steps=steps,
        num_train_epochs=cfg.epochs, lr_scheduler_type=cfg.lr_scheduler_type,
        warmup_steps=cfg.warmup_ratio if 0 < cfg.warmup_ratio < 1 else 0,
        max_length=cfg.max_length, seed=cfg.seed, logging_steps=cfg.logging_steps,
        gradient_checkpointing=cfg.gradient_checkpointing,
        precompute_ref_log_probs=cfg.precompute_ref_log_probs,
        use_cpu=cfg.use_cpu, bf16=cfg.bf16, report_to="none", save_strategy="no",
        dataloader_num_workers=0, disable_tqdm=True, loss_type=list(cfg.loss_type),
        loss_weights=list(cfg.loss_weights) if cfg.loss_weights else None,
    )
    history: list[dict] = []
    trainer = unit_dpo_trainer()(
        model=model, args=args, train_dataset=Dataset.from_list(examples),
        processing_class=tokenizer, peft_config=lora,
        callbacks=[_callback(progress, report, history, "DPO",
                             ("loss", "rewards/margins", "rewards/accuracies", "rewards/chosen",
                              "rewards/rejected"),
                             (("loss", "loss", ".3f"), ("rewards/accuracies", "acc", ".2f")))],
    )
    train_s = _train_quietly(trainer)
    if on_trained is not None:  # tests: look at the in-memory trained model
        on_trained(trainer.model)
    save_self_contained(trainer.model, base_path, parent_adapters, out_dir, work,
                        tokenizer)
    steps_logged = [h for h in history if "rewards/accuracies" in h]
    head, tail = steps_logged[: max(1, len(steps_logged) // 4)], steps_logged[
        -max(1, len(steps_logged) // 4):]

    def mean(rows, k):
        vals = [r[k] for r in rows if k in r and not math.isnan(r[k])]
        return sum(vals) / len(vals) if vals else None

    metrics = {
        "steps": trainer.state.global_step, "train_seconds": round(train_s, 2),
        "n_examples": len(examples),
        "reward_accuracy_first": mean(head, "rewards/accuracies"),
        "reward_accuracy_last": mean(tail, "rewards/accuracies"),
        "reward_margin_first": mean(head, "rewards/margins"),
        "reward_margin_last": mean(tail, "rewards/margins"),
        "loss_first": mean(head, "loss"), "loss_last": mean(tail, "loss"),
        "history": history[-200:],
    }
    del trainer, model
    return metrics


RewardFn = Callable[[list[dict], list[list[int]]], list[float | None]]
"""reward(rows, completion token ids) -> one score per completion (None = could not judge);
`rows` are the dataset rows of the completions' prompts (extra columns included)."""


def train_grpo(
    base_path: str | Path, parent_adapters: list[str], tokenizer, prompts: list[dict],
    reward: RewardFn, cfg: Any, sampling: dict, out_dir: Path,
    progress: Progress | None = None, report: Report | None = None,
    work_dir: Path | None = None, suppress_tokens: list[int] | None = None,
) -> dict:
    """Train one LoRA adapter with TRL's `GRPOTrainer` and save it self-contained into
    `out_dir`. `prompts`: rows with a "prompt" string (unit text) plus any columns `reward`
    needs. `sampling`: temperature, top_k, top_p, max_new_units (the round's sampler).
    `suppress_tokens`: ids the policy may never sample (non-unit specials). `cfg` is the `grpo`
    settings section (backend.config.GRPOSettings)."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    progress = progress or (lambda f, m="": None)
    report = report or (lambda **kw: None)
    model, work = _start(base_path, parent_adapters, out_dir, work_dir, cfg)
    gen_kwargs = {"suppress_tokens": list(suppress_tokens)} if suppress_tokens else None
    per_step = cfg.prompts_per_step * cfg.num_generations
    args = GRPOConfig(
        output_dir=str(work / "trainer"), per_device_train_batch_size=per_step,
        num_generations=cfg.num_generations, max_completion_length=sampling["max_new_units"],
        temperature=sampling["temperature"], top_k=sampling.get("top_k") or 0,
        top_p=sampling.get("top_p", 1.0), generation_kwargs=gen_kwargs,
        learning_rate=cfg.learning_rate, beta=cfg.beta, epsilon=cfg.epsilon,
        num_iterations=cfg.num_iterations, loss_type=cfg.loss_type,
        scale_rewards=cfg.scale_rewards, max_steps=cfg.max_steps,
        lr_scheduler_type=cfg.lr_scheduler_type,
        warmup_steps=cfg.warmup_ratio if 0 < cfg.warmup_ratio < 1 else 0,
        seed=cfg.seed, logging_steps=cfg.logging_steps,
        gradient_checkpointing=cfg.gradient_checkpointing, use_cpu=cfg.use_cpu, bf16=cfg.bf16,
        report_to="none", save_strategy="no", dataloader_num_workers=0, disable_tqdm=True,
        remove_unused_columns=False, log_completions=False,
    )
    seen = {"scored": 0}

    def reward_fn(prompts, completions, completion_ids, **columns):
        keys = [k for k in columns if k not in ("trainer_state", "log_extra", "log_metric")]
        rows = [{k: columns[k][i] for k in keys} for i in range(len(completion_ids))]
        scores = reward(rows, [list(c) for c in completion_ids])
        seen["scored"] += len(scores)
        return scores

    reward_fn.__name__ = "judge"
    history: list[dict] = []
    trainer = GRPOTrainer(
        model=model, reward_funcs=[reward_fn], args=args, train_dataset=Dataset.from_list(prompts),
        processing_class=tokenizer, peft_config=lora_config(model, cfg),
        callbacks=[_callback(progress, report, history, "GRPO",
                             ("loss", "reward", "reward_std", "kl", "entropy"),
                             (("reward", "reward", ".2f"),))],
    )
    train_s = _train_quietly(trainer)
    save_self_contained(trainer.model, base_path, parent_adapters, out_dir, work,
                        tokenizer)
    rewards = [h["reward"] for h in history if "reward" in h]
    q = max(1, len(rewards) // 4)

    def mean(xs):
        return sum(xs) / len(xs) if xs else None

    metrics = {
        "steps": trainer.state.global_step, "train_seconds": round(train_s, 2),
        "n_prompts": len(prompts), "judged_samples": seen["scored"],
        "reward_first": mean(rewards[:q]), "reward_last": mean(rewards[-q:]),
        "history": history[-200:],
    }
    del trainer, model
    return metrics



def unit_online_dpo_trainer():
    """TRL's OnlineDPOTrainer with its sampling step widened: TRL draws two continuations per
    prompt and pairs them by score; this draws `num_generations` (even), scores them all once
    through `score(prompts, completion_ids)`, and hands TRL each prompt's best- and worst-scored
    as its two. A prompt whose best and worst score the same gets its best twice, and its
    rows' log-probabilities are detached, so its pair has an exactly zero DPO gradient (not
    float noise, which Adam would scale up to full steps) instead of teaching an arbitrary
    direction. TRL's own reward call then reads the scores already computed (nothing is
    judged twice)."""
    from trl.experimental.online_dpo import OnlineDPOTrainer

    class UnitOnlineDPOTrainer(OnlineDPOTrainer):
        def __init__(self, *args, num_generations: int, score, **kw):
            self.k, self._score, self.scored = num_generations, score, {}
            self.pairs_seen, self.pairs_tied, self._tied = 0, 0, None
            super().__init__(*args, reward_funcs=[self._scored_already], **kw)

        def _generate(self, model, prompts, images=None):
            b, reps = len(prompts), self.k // 2
            p_ids, p_mask, c_ids, c_mask, vis = super()._generate(model, list(prompts) * reps,
                                                                  images)
            # super() returns its 2 x (b * reps) rows as [copy][rep][prompt]
            rows = [[c * b * reps + r * b + i for c in range(2) for r in range(reps)]
                    for i in range(b)]
            flat = [i for group in rows for i in group]
            ids = [c_ids[i].tolist() for i in flat]
            self.scored.clear()
            owner = [prompts[j // self.k] for j in range(len(flat))]
            scores = self._score(owner, ids)
            for p, c, v in zip(owner, ids, scores, strict=True):
                self.scored[(p, tuple(c))] = v
            best, worst, tied_rows = [], [], []
            for g, group in enumerate(rows):
                vals = [scores[g * self.k + m] for m in range(self.k)]
                valid = [m for m, v in enumerate(vals) if v is not None]
                hi = max(valid, key=lambda m: vals[m], default=0)
                lo = min(valid, key=lambda m: vals[m], default=0)
                tied = not valid or vals[hi] == vals[lo]
                best.append(group[hi])
                worst.append(group[hi] if tied else group[lo])
                self.pairs_seen += 1
                self.pairs_tied += tied
                tied_rows.append(tied)
            keep = torch.tensor(best + worst, device=c_ids.device)
            self._tied = torch.tensor(tied_rows * 2, device=c_ids.device)
            return p_ids[keep], p_mask[keep], c_ids[keep], c_mask[keep], vis

        def _forward(self, model, *args, **kw):
            logprobs = super()._forward(model, *args, **kw)
            if logprobs.requires_grad and self._tied is not None and self._tied.any():
                logprobs = torch.where(self._tied[:, None], logprobs.detach(), logprobs)
            return logprobs

        def _scored_already(self, prompts, completions, completion_ids, **_):
            return [self.scored.get((p, tuple(c)))
                    for p, c in zip(prompts, completion_ids, strict=True)]

    return UnitOnlineDPOTrainer


def train_online_dpo(
    base_path: str | Path, parent_adapters: list[str], tokenizer, prompts: list[dict],
    reward: RewardFn, cfg: Any, sampling: dict, out_dir: Path,
    progress: Progress | None = None, report: Report | None = None,
    work_dir: Path | None = None, suppress_tokens: list[int] | None = None,
) -> dict:
    """Train one LoRA adapter by online DPO (`unit_online_dpo_trainer`) and save it
    self-contained into `out_dir`. Arguments as `train_grpo`'s; `cfg` is the `online_dpo`
    settings section (backend.config.OnlineDPOSettings)."""
    from datasets import Dataset
    from trl.experimental.online_dpo import OnlineDPOConfig

    progress = progress or (lambda f, m="": None)
    report = report or (lambda **kw: None)
    model, work = _start(base_path, parent_adapters, out_dir, work_dir, cfg)
    args = OnlineDPOConfig(
        output_dir=str(work / "trainer"), per_device_train_batch_size=cfg.prompts_per_step,
        max_new_tokens=sampling["max_new_units"], temperature=sampling["temperature"],
        top_k=sampling.get("top_k") or 0, top_p=sampling.get("top_p", 1.0),
        generation_kwargs={"suppress_tokens": list(suppress_tokens)} if suppress_tokens
        else None,
        learning_rate=cfg.learning_rate, beta=[cfg.beta], loss_type=cfg.loss_type,
        max_steps=cfg.max_steps, max_length=cfg.max_length,
        lr_scheduler_type=cfg.lr_scheduler_type,
        warmup_steps=cfg.warmup_ratio if 0 < cfg.warmup_ratio < 1 else 0,
        seed=cfg.seed, logging_steps=cfg.logging_steps,
        gradient_checkpointing=cfg.gradient_checkpointing, use_cpu=cfg.use_cpu, bf16=cfg.bf16,
        report_to="none", save_strategy="no", dataloader_num_workers=0, disable_tqdm=True,
    )
    by_prompt = {p["prompt"]: p for p in prompts}

    def score(prompt_texts: list[str], completion_ids: list[list[int]]):
        return reward([by_prompt[p] for p in prompt_texts], completion_ids)

    history: list[dict] = []
    trainer = unit_online_dpo_trainer()(
        model=model, args=args, train_dataset=Dataset.from_list(prompts),
        processing_class=tokenizer, peft_config=lora_config(model, cfg),
        num_generations=cfg.num_generations, score=score,
        callbacks=[_callback(progress, report, history, "Online DPO",
                             ("loss", "objective/scores", "objective/scores_margin",
                              "rewards/accuracies", "objective/kl"),
                             (("objective/scores", "score", ".2f"),
                              ("objective/scores_margin", "margin", ".2f")))],
    )
    train_s = _train_quietly(trainer)
    save_self_contained(trainer.model, base_path, parent_adapters, out_dir, work,
                        tokenizer)
    scores = [h["objective/scores"] for h in history if "objective/scores" in h]
    margins = [h["objective/scores_margin"] for h in history if "objective/scores_margin" in h]
    q = max(1, len(scores) // 4)

    def mean(xs):
        return sum(xs) / len(xs) if xs else None

    metrics = {
        "steps": trainer.state.global_step, "train_seconds": round(train_s, 2),
        "n_prompts": len(prompts), "judged_samples": trainer.pairs_seen * cfg.num_generations,
        "pairs": trainer.pairs_seen, "tied_pairs": trainer.pairs_tied,
        "score_first": mean(scores[:q]), "score_last": mean(scores[-q:]),
        "score_margin_first": mean(margins[:q]), "score_margin_last": mean(margins[-q:]),
        "history": history[-200:],
    }
    del trainer, model
    return metrics



def unit_sft_trainer():
    """TRL's SFTTrainer with the hook `unit_dpo_trainer` changes: an example whose
    `completion_ends` is False (cut at max_new_units) loses the EOS TRL appended."""
    from trl import SFTTrainer

    class UnitSFTTrainer(SFTTrainer):
        def _prepare_dataset(self, dataset, processing_class, args, packing, formatting_func,
                             dataset_name):
            ds = super()._prepare_dataset(dataset, processing_class, args, packing,
                                          formatting_func, dataset_name)
            if "completion_ends" not in ds.column_names:
                return ds
            eos = self._tokenizer.eos_token_id

            per_token = [c for c in ("input_ids", "labels", "completion_mask", "attention_mask")
                         if c in ds.column_names]

            def strip(ex):
                if not ex["completion_ends"] and ex["input_ids"] and ex["input_ids"][-1] == eos:
                    for c in per_token:
                        ex[c] = ex[c][:-1]
                return ex

            return ds.map(strip).remove_columns(["completion_ends"])

    return UnitSFTTrainer


def train_rft(
    base_path: str | Path, parent_adapters: list[str], tokenizer, examples: list[dict],
    cfg: Any, out_dir: Path, progress: Progress | None = None,
    report: Report | None = None, work_dir: Path | None = None,
) -> dict:
    """Fine-tune one LoRA adapter on prompt -> best continuation examples ({"prompt",
    "completion", "completion_ends"}) with the loss on the completion only, and save it
    self-contained into `out_dir`. `cfg` is the `rft` settings section."""
    from datasets import Dataset
    from trl import SFTConfig

    progress = progress or (lambda f, m="": None)
    report = report or (lambda **kw: None)
    model, work = _start(base_path, parent_adapters, out_dir, work_dir, cfg)
    args = SFTConfig(
        output_dir=str(work / "trainer"), per_device_train_batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate, max_steps=cfg.max_steps if cfg.max_steps > 0 else -1,
        num_train_epochs=cfg.epochs, lr_scheduler_type=cfg.lr_scheduler_type,
        warmup_steps=cfg.warmup_ratio if 0 < cfg.warmup_ratio < 1 else 0,
        max_length=cfg.max_length, seed=cfg.seed, logging_steps=cfg.logging_steps,
        gradient_checkpointing=cfg.gradient_checkpointing, use_cpu=cfg.use_cpu, bf16=cfg.bf16,
        report_to="none", save_strategy="no", dataloader_num_workers=0, disable_tqdm=True,
        completion_only_loss=True, packing=False,
    )
    history: list[dict] = []
    trainer = unit_sft_trainer()(
        model=model, args=args, train_dataset=Dataset.from_list(examples),
        processing_class=tokenizer, peft_config=lora_config(model, cfg),
        callbacks=[_callback(progress, report, history, "RFT",
                             ("loss", "mean_token_accuracy", "entropy"),
                             (("loss", "loss", ".3f"),))],
    )
    train_s = _train_quietly(trainer)
    save_self_contained(trainer.model, base_path, parent_adapters, out_dir, work,
                        tokenizer)
    losses = [h["loss"] for h in history if "loss" in h]
    q = max(1, len(losses) // 4)
    metrics = {
        "steps": trainer.state.global_step, "train_seconds": round(train_s, 2),
        "n_examples": len(examples),
        "loss_first": sum(losses[:q]) / q if losses else None,
        "loss_last": sum(losses[-q:]) / q if losses else None,
        "history": history[-200:],
    }
    del trainer, model
    return metrics
