"""The one typed settings object of Align-SLM Studio.

Sources, highest priority first: keyword arguments, environment variables (`STUDIO_` prefix,
`__` for nesting: `STUDIO_SERVER__PORT=8000`, `STUDIO_DPO__BETA=0.2`), a TOML file (path in
`STUDIO_CONFIG`, else `studio.toml` in the working directory if present), then the defaults below,
which work offline on the embedded mini world. Secrets (judge API keys, the first admin's password)
are read from environment variables only, never from the file, and are never printed.

Each pipeline area owns one section here; nothing else in the project defines settings.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from models.config import (
    ASRConfig,
    JudgeConfig,
    ModelsConfig,
    Section,
    TokenizerConfig,
    UnitLMConfig,
    VocoderConfig,
)


class ServerConfig(Section):
    host: str = "127.0.0.1"
    port: int = 7860
    root_path: str = ""
    """Set when served behind a reverse proxy under a sub-path, e.g. "/studio"."""
    session_hours: float = 12.0
    login_attempts_per_minute: int = 10
    worker: Literal["process", "thread", "off"] = "process"
    """Where the server runs queued jobs: "process" = a child `python -m backend worker` at
    `worker_nice` (jobs then never hold the server's GIL or outrank it for a core: with jobs in
    a thread, votes waited seconds while a DPO round trained, docs/reliability.md); "thread" =
    inside the server process; "off" = run `python -m backend worker` yourself."""
    worker_nice: int = 10
    """Niceness added to the child worker process (0-19; higher = lower CPU priority)."""
    seed_samples: int = 16
    """On a start with a built world and no samples yet, queue generation + AI judging of the
    baseline for this many held-out prompts, so Listen has something to play (0 = off)."""
    first_round: bool = True
    """On that first start, also queue one training round with the default settings after the
    seeding jobs, so Listen shows baseline against aligned without anyone acting."""
    poll_seconds: float = 2.0
    """How often the Admin job monitor refreshes (gr.Timer)."""
    torch_threads: int | None = None
    """Threads torch may use in a process running a job Worker. None = one fewer than the
    CPU count (at least 1): on a 2-core machine a job on both cores made votes wait seconds
    (docs/results.md, docs/reliability.md)."""

    def effective_torch_threads(self) -> int:
        return self.torch_threads or max(1, (os.cpu_count() or 1) - 1)

    @field_validator("worker", mode="before")
    @classmethod
    def _worker_bool(cls, v):
        """Older configs said `worker = true/false`."""
        if isinstance(v, bool) or str(v).lower() in ("true", "false", "1", "0"):
            return "process" if str(v).lower() in ("true", "1") else "off"
        return v


class GenerationConfig(Section):
    """Continuation sampling. Defaults: slamkit's Align-SLM-style recipe (PAPER.md): 3 s prompts,
    temperature 0.8, top-k 25, up to 150 new units; the paper samples 5 continuations per prompt."""

    n: int = 5
    temperature: float = 0.8
    top_k: int = 25
    top_p: float = 1.0
    max_new_units: int = 150
    prompt_seconds: float = 3.0
    """Prompts (imported, uploaded, continued live) are cut to their first N seconds before
    they are tokenized and stored, so what Listen plays is what the model heard; 0 keeps them
    whole."""
    seed: int = 0
    batch_size: int = 8
    """Prompts per `UnitLM.sample` call (each yields `n` continuations): batched generation is
    about 11x faster than one at a time on CPU (STACK.md)."""
    train_split: str = "train"
    """Prompts a training round samples and judges."""
    heldout_split: str = "dev"
    """Prompts evaluation and the bar tests score (never used for pairs)."""
    max_prompts: int | None = None
    """Cap on prompts per round (None = all of `train_split`)."""
    heldout_n: int = 2
    """Continuations per held-out prompt that a round's evaluation samples and judges for the
    judge score and the Leaderboard. Its interval resamples prompts, so more prompts help more
    than more continuations of each."""
    mini_overrides: dict[str, float | int] = Field(
        default_factory=lambda: {"n": 10, "batch_size": 32})
    """Applied in the mini world to fields not set explicitly. Its bundle has 300 training
    prompts: 5 continuations each (the paper's) gave ~160 preference pairs and no significant
    held-out gain; 10 gave ~240 pairs and a gain whose CI excludes zero (docs/results.md).
    32 prompts per call: the mini LM samples 320 rows in one call faster than 8 prompts at a
    time, and the mini vocoder's waves do not depend on what shares their batch."""


class SelectionConfig(Section):
    """Preference-pair selection (paper: chosen >= 3, rejected <= 1 in round 1; +1 per curriculum
    round; auto-BLEU repetition filter)."""

    chosen_min: float = 3.0
    rejected_max: float = 1.0
    curriculum_step: float = 1.0
    autobleu_max: float = 0.3
    min_pairs: int = 8
    human_min_votes: int = 1
    mos_margin: float = 1.0
    strategy: Literal["ai", "likelihood", "asr"] = "ai"
    """How AI-side pairs are chosen: the paper's judge scores, or the compared alternatives
    (transcript likelihood under a smoothed word-bigram LM; share of recognizable words)."""
    autobleu_on: Literal["words", "units"] = "words"
    """Repetition filter input: transcript words (units when a sample has no transcript)."""
    score_max: float = 5.0
    """Judge scale top; curriculum thresholds are clamped to [1, score_max]."""
    likelihood_margin: float = 0.0
    asr_margin: float = 0.0
    ai_weight: float = 1.0
    human_weight: float = 1.0
    """Weights when mixing sources (`both`): a pair found by several sources in opposite
    directions keeps the direction with the larger summed weight; weight 0 drops a source."""


class TuningSettings(Section):
    """What every training method's section has: which weights a round trains."""

    finetune: Literal["lora", "full"] = "lora"
    """lora: a LoRA adapter (peft) on the frozen parent; the version is that adapter (a few MB),
    served from the one base model in memory with every other version's. full: every weight
    trains; the version is a whole model directory, which the unit LM loads as a model of its
    own when the version is sampled, and a later LoRA round from it adapts those weights. Fine
    for the mini LM; for TWIST-7B each such version is another ~28 GB on disk and in memory
    (fp32; ~14 GB in bf16), and training holds the weights, their gradients and Adam's two
    moments (~16 bytes a parameter, ~110 GB) plus a frozen reference copy for dpo, online-dpo
    and grpo with beta > 0 (LoRA's reference is the same weights with the adapter off)."""
    lora_rank: int = 32
    lora_alpha: int = 8
    lora_dropout: float = 0.0
    lora_targets: list[str] = Field(default_factory=lambda: ["attention"])
    """Module names (suffixes) LoRA adapts. "attention" = the architecture's attention
    projections (Llama q/k/v/o_proj, OPT q/k/v/out_proj); a name that matches no module of the
    model is an error, never silently skipped. The LoRA settings apply when finetune = "lora"."""


class DPOSettings(TuningSettings):
    """DPO (LoRA or full fine-tuning). Defaults: slamkit's (beta 0.1, lr 5e-5, LoRA on
    attention projections); the paper used rank 32, alpha 8."""

    beta: float = 0.1
    learning_rate: float = 5e-5
    batch_size: int = 8
    max_steps: int = 100
    epochs: float = 1.0
    warmup_ratio: float = 0.1
    max_length: int = 512
    seed: int = 0
    gradient_accumulation_steps: int = 1
    lr_scheduler_type: str = "linear"
    """Paper: warm-up then linear decay."""
    gradient_checkpointing: bool = False
    """TRL defaults it on; off here (CPU, small models). Turn on for TWIST-7B."""
    precompute_ref_log_probs: bool = False
    """Compute the reference log-probs once before training (saves a forward per step)."""
    use_cpu: bool = True
    """STACK.md: DPOConfig needs use_cpu=True, bf16=False on a CPU-only machine. Set False on GPU
    (then `bf16` applies)."""
    bf16: bool = False
    logging_steps: int = 1
    loss_type: list[str] = Field(default_factory=lambda: ["sigmoid"])
    """TRL's DPO losses; the paper's is "sigmoid". ["sigmoid", "sft"] adds the chosen
    continuations' NLL (RPO, Pang et al. 2024), weighted by `loss_weights`."""
    loss_weights: list[float] | None = None

    @field_validator("loss_type", "loss_weights", mode="before")
    @classmethod
    def _one_item_is_a_list(cls, v):
        """`--set loss_type=sigmoid` (or STUDIO_DPO__LOSS_TYPE=sigmoid) means ["sigmoid"]."""
        return [v] if isinstance(v, (str, int, float)) else v

    @model_validator(mode="after")
    def _consistent(self):
        """Settings that cannot train fail here, at construction (the Admin form, `--set`, the
        config file), not minutes later inside the trainer after sampling."""
        if not self.loss_type:
            raise ValueError("loss_type needs at least one loss")
        if self.loss_weights is not None and len(self.loss_weights) != len(self.loss_type):
            raise ValueError(f"loss_weights has {len(self.loss_weights)} values for "
                             f"{len(self.loss_type)} losses in loss_type {self.loss_type}")
        for name in ("beta", "learning_rate"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")
        for name in ("lora_rank", "batch_size", "gradient_accumulation_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError("warmup_ratio must be in [0, 1)")
        return self

    mini_overrides: dict[str, float | int | str | list] = Field(
        default_factory=lambda: {
            "learning_rate": 2e-4, "lora_rank": 8, "lora_alpha": 16, "max_steps": 120,
            "warmup_ratio": 0.0, "beta": 0.1, "loss_type": ["sigmoid", "sft"],
            "loss_weights": [1.0, 1.0],
        }
    )
    """Applied when world == "mini" to every field NOT set explicitly (env/TOML/kwargs win), like
    `generation.mini_overrides`: a tiny LM needs a larger step than TWIST-7B. Chosen with
    bench/dpo_sweep.py on the full mini world (docs/results.md): lr 5e-4 x 40 steps fitted the
    pairs but left held-out scores flat, 2e-3 lowered them; 2e-4 x 120 steps with the chosen
    continuations' NLL added (RPO) raised them with a CI above zero."""


class GRPOSettings(TuningSettings):
    """Online RL with the AI judge's score as reward: TRL's `GRPOTrainer` samples
    `num_generations` continuations of each training prompt with the model being trained, the
    judge path scores them (vocoder -> ASR -> judge, in memory), and each continuation is pushed
    up or down by its score relative to its group's mean. Every sample is used, none is thrown
    away as in pair selection. Sampling settings (temperature, top-k, max units) are the
    round's `generation` settings."""

    learning_rate: float = 1e-5
    num_generations: int = 8
    """Continuations per prompt in one group (the advantage baseline is the group mean)."""
    prompts_per_step: int = 4
    """Prompts per optimizer step; a step trains on prompts_per_step x num_generations."""
    max_steps: int = 100
    beta: float = 0.04
    """KL coefficient against the parent (0 = no reference model, no KL term)."""
    epsilon: float = 0.2
    num_iterations: int = 1
    loss_type: str = "dapo"
    scale_rewards: Literal["group", "batch", "none"] = "group"
    warmup_ratio: float = 0.0
    lr_scheduler_type: str = "constant"
    seed: int = 0
    logging_steps: int = 1
    use_cpu: bool = True
    bf16: bool = False
    gradient_checkpointing: bool = False

    @model_validator(mode="after")
    def _consistent(self):
        for name in ("learning_rate", "epsilon"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")
        if self.beta < 0:
            raise ValueError("beta must be >= 0")
        if self.num_generations < 2:
            raise ValueError("num_generations must be >= 2 (a group needs a mean to beat)")
        for name in ("prompts_per_step", "max_steps", "num_iterations", "lora_rank"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError("warmup_ratio must be in [0, 1)")
        return self

    mini_overrides: dict[str, float | int | str | list] = Field(
        default_factory=lambda: {"learning_rate": 1e-3, "lora_rank": 16, "lora_alpha": 32,
                                 "beta": 0.0, "max_steps": 60}
    )
    """Applied when world == "mini" to fields not set explicitly (see `dpo.mini_overrides`)."""


class OnlineDPOSettings(TuningSettings):
    """Online DPO (online AI feedback, Guo et al. 2024) on TRL's `OnlineDPOTrainer`: each step
    the model being trained samples `num_generations` continuations of each of
    `prompts_per_step` training prompts, the judge path scores them in memory (vocoder -> ASR ->
    training judges, as grpo's reward), each prompt's best- and worst-scored continuations
    become a pair, and one DPO update is made on those pairs; then it samples again from the
    updated model. Sampling settings (temperature, top-k, max units) are the round's
    `generation` settings."""

    learning_rate: float = 5e-5
    num_generations: int = 2
    """Continuations per prompt and step (even; TRL draws two): the best- and the worst-judged
    of them are the prompt's pair, so more of them widen the pair's score margin at the cost
    of sampling and judging more. A prompt whose continuations all score the same gives no
    pair: its chosen and rejected are then the same continuation, a zero gradient."""
    prompts_per_step: int = 4
    """Prompts (hence pairs) per optimizer step."""
    max_steps: int = 100
    beta: float = 0.1
    """The DPO beta: how far the policy may move from the parent (the reference)."""
    loss_type: Literal["sigmoid", "ipo"] = "sigmoid"
    """TRL's Online DPO losses; "sigmoid" is DPO's."""
    warmup_ratio: float = 0.0
    lr_scheduler_type: str = "linear"
    max_length: int = 512
    """Prompt + continuation tokens the log-probabilities see (the prompt is cut from the left)."""
    seed: int = 0
    logging_steps: int = 1
    use_cpu: bool = True
    bf16: bool = False
    gradient_checkpointing: bool = False

    @model_validator(mode="after")
    def _consistent(self):
        for name in ("learning_rate", "beta"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")
        if self.num_generations < 2 or self.num_generations % 2:
            raise ValueError("num_generations must be even and >= 2 (TRL samples in twos; the "
                             "best and the worst of them are the pair)")
        for name in ("prompts_per_step", "max_steps", "lora_rank", "max_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError("warmup_ratio must be in [0, 1)")
        unknown = set(self.mini_overrides) - set(type(self).model_fields)
        if unknown:
            raise ValueError(f"mini_overrides names unknown Online DPO settings: "
                             f"{sorted(unknown)}")
        return self

    mini_overrides: dict[str, float | int | str | list] = Field(
        default_factory=lambda: {"learning_rate": 2e-4, "lora_rank": 8, "lora_alpha": 16,
                                 "num_generations": 4, "max_steps": 60}
    )
    """Applied when world == "mini" to fields not set explicitly (see `dpo.mini_overrides`):
    dpo's mini step size and adapter; not yet tuned by a bench of its own."""


class RFTSettings(TuningSettings):
    """Rejection-sampling fine-tuning (best-of-k): the round's stored continuations that the
    training judges scored highest are imitated (TRL `SFTTrainer`, loss on the continuation
    only). The simplest use of judged samples; the baseline any preference method must beat."""

    min_score: float = 4.0
    """A continuation is imitated when its mean training-judge score is at least this."""
    per_prompt: int = 2
    """At most this many of a prompt's best continuations are imitated (ties: lower id)."""
    learning_rate: float = 5e-5
    max_steps: int = 100
    epochs: float = 1.0
    batch_size: int = 8
    warmup_ratio: float = 0.0
    lr_scheduler_type: str = "linear"
    max_length: int = 512
    seed: int = 0
    logging_steps: int = 1
    use_cpu: bool = True
    bf16: bool = False
    gradient_checkpointing: bool = False

    @model_validator(mode="after")
    def _consistent(self):
        if self.learning_rate <= 0:
            raise ValueError("learning_rate must be > 0")
        for name in ("per_prompt", "batch_size", "lora_rank"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError("warmup_ratio must be in [0, 1)")
        return self

    mini_overrides: dict[str, float | int | str | list] = Field(
        default_factory=lambda: {"finetune": "full", "learning_rate": 2e-4, "max_steps": 200}
    )
    """Applied when world == "mini" to fields not set explicitly (see `dpo.mini_overrides`).
    Full fine-tuning: on the worlds of seeds 0 and 1 (bench/align.py, docs/results.md,
    2026-12-02) one round moved the held-out training-judge score by +0.36 and +0.39 (LoRA rank
    16, lr 1e-3, same steps: +0.10 and +0.20) and three rounds by +0.78 and +0.84, every CI
    above zero; the mini LM's weights are ~10 MB, so a whole-model version costs little. With
    group-independent vocoding (2026-12-08): +0.34 and +0.26, three rounds +0.86 on both."""


METHOD_SECTIONS = {"dpo": "dpo", "online-dpo": "online_dpo", "grpo": "grpo", "rft": "rft"}
"""Each training method's settings section (a method's name may have a hyphen, a section's
not)."""


class TrainingConfig(Section):
    """Which training method a round runs."""

    method: Literal["dpo", "online-dpo", "grpo", "rft"] = "dpo"
    """dpo: the paper's offline DPO on stored preference pairs (AI and/or human judgments), the
    `dpo` section. online-dpo: DPO on pairs of fresh samples judged as training goes, the
    `online_dpo` section (AI feedback only). grpo: online RL on fresh samples scored by the AI
    judge as training goes, the `grpo` section (AI feedback only). rft: fine-tuning on the
    best-judged stored continuations, the `rft` section (AI feedback only)."""
    mini_overrides: dict[str, str] = Field(default_factory=lambda: {"method": "rft"})
    """Applied when world == "mini" to fields not set explicitly. bench/align.py on the full
    mini world (docs/results.md, 2026-12-01): one round of rft moved the held-out training-
    judge score by +0.26 (95% CI above zero) and the evaluation judge's by +0.10 (CI above
    zero); dpo by +0.04 and grpo by -0.08 (CIs across zero). On the 228-held-out-prompt world:
    rft +0.33 and +0.24, dpo +0.12 and +0.09 (all CIs above zero). On the merged world that
    `make run` builds now (seed 0, 2026-12-02): rft with LoRA +0.10 [-0.00, +0.20] and +0.07,
    dpo +0.01 (CIs across zero); rft with full fine-tuning (its mini default since) +0.36
    [+0.27, +0.46] and +0.20 on seed 0, +0.39 [+0.29, +0.48] and +0.19 on seed 1.
    Real weights keep the paper's dpo."""


class BootstrapConfig(Section):
    """The embedded mini world built by `python -m backend bootstrap`."""

    preset: Literal["full", "tiny"] = "full"
    seed: int = 0


class ActiveWeights(Section):
    """How much each reason of `rating.routing = "active"` counts (backend.routing). Judges
    disagreeing counts double by default: it is uncertainty about the item itself, and the
    evidence that decides which judge to trust."""

    disagree: float = 2.0
    threshold: float = 1.0
    race: float = 1.0
    few_votes: float = 1.0


class RatingConfig(Section):
    daily_cap: int = 200
    gold_fraction: float = 0.1
    min_gold_accuracy: float = 0.7
    leaderboard_min_votes: int = 5
    leaderboard_preliminary_votes: int = 30
    bootstrap_resamples: int = 1000
    max_upload_mb: float = 20.0
    max_upload_seconds: float = 30.0
    qc_min_gold: int = 3
    """Gold/trap answers needed before a rater's gold accuracy can flag them."""
    routing: Literal["random", "balanced", "active"] = "balanced"
    """Which task a rater gets next (backend.routing): any; the fewest assignments first; or
    first where a human vote buys the most (AI judges disagree, a score near a selection
    threshold, a close leaderboard race, a version with few votes), then the fewest."""
    active_coverage: float = 0.1
    """Under `active`, this share of assignments is made the balanced way, so every task keeps
    being covered."""
    active_threshold_margin: float = 0.5
    """Under `active`, a prompt's best clip (by mean AI score) this close to
    `selection.chosen_min`, or its worst this close to `rejected_max`, counts as near a
    selection threshold."""
    active_weights: ActiveWeights = Field(default_factory=ActiveWeights)
    active_max_votes: int = 5
    """Under `active`, a task's reasons stop counting once it has this many assignments: its
    majority is settled, further votes buy more elsewhere."""
    min_heard_fraction: float = Field(0.9, ge=0.0, le=1.0)
    """The play gate: a clip counts as heard when the time ranges the rater's player reports
    as played cover this share of it and at least this share of its duration has passed since
    the clip was served (server clock). 0 turns the gate off."""


class JudgingConfig(Section):
    """How far AI judges are trusted (measured agreement with the human majority,
    `backend.trust`) and how pairwise AI verdicts are made."""

    min_agreement: float = 0.2
    """A training judge whose `agreement_metric` on `agreement_on` items is below this is not
    used for a round's pairs with source `both` or `auto` (the round records why). 0.2 is
    the top of "slight" on Landis & Koch's kappa scale."""
    min_overlap: int = 20
    """Items rated by both the judge and humans needed before its agreement counts; a judge
    with fewer is not used for `both`/`auto` pairs (too few to tell)."""
    agreement_metric: Literal["kappa", "spearman"] = "kappa"
    agreement_on: Literal["ab", "mos"] = "ab"
    """Which items gate a judge: "ab" = sample pairs with a human A/B majority (the judge's
    pairwise verdict, or the order of its scores, against it); "mos" = samples with human
    meaningfulness ratings (the judge's score against their median)."""
    bootstrap_resamples: int = 1000
    """Resamples of items for the agreement intervals."""
    order_conflict: Literal["tie", "drop"] = "tie"
    """A pairwise AI verdict is asked in both orders (`backend.loop.judge.judge_pairs`); when
    the two answers disagree (position bias) it counts as a tie, or is dropped (kept in the
    store with the reason, never counted)."""


def _apply_mini_overrides(section: BaseModel) -> None:
    """A section's `mini_overrides`, for the fields its sources (kwargs, env, TOML) left unset."""
    for k, v in (section.mini_overrides or {}).items():
        if k in type(section).model_fields and k not in section.model_fields_set:
            setattr(section, k, v)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="STUDIO_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    world: Literal["mini", "real"] = "mini"
    data_dir: Path = Path("data")
    database_url: str = ""
    """Any SQLAlchemy URL; empty = SQLite file `<data_dir>/studio.db`."""
    server: ServerConfig = Field(default_factory=ServerConfig)
    models: ModelsConfig = Field(default_factory=ModelsConfig)
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    selection: SelectionConfig = Field(default_factory=SelectionConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    dpo: DPOSettings = Field(default_factory=DPOSettings)
    online_dpo: OnlineDPOSettings = Field(default_factory=OnlineDPOSettings)
    grpo: GRPOSettings = Field(default_factory=GRPOSettings)
    rft: RFTSettings = Field(default_factory=RFTSettings)
    bootstrap: BootstrapConfig = Field(default_factory=BootstrapConfig)
    rating: RatingConfig = Field(default_factory=RatingConfig)
    judging: JudgingConfig = Field(default_factory=JudgingConfig)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = os.environ.get("STUDIO_CONFIG") or "studio.toml"
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=toml))

    @model_validator(mode="after")
    def _resolve(self) -> Settings:
        self.data_dir = Path(self.data_dir).expanduser().absolute()
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'studio.db'}"
        if self.world == "mini":
            ignored = sorted(self.models.model_fields_set - {"judges"})
            if "judges" in self.models.model_fields_set:
                ignored += [f"judges ({j.name!r}, kind 'mini')" for j in self.models.judges
                            if j.kind == "mini"]
            if ignored:
                raise ValueError(f"world = 'mini' loads its components from its bundle: "
                                 f"models.{', models.'.join(ignored)} would not be used "
                                 "(set world = 'real' to use them)")
            self.models = mini_models(self.bundle_dir, self.models.judges)
            for section in (self.training, self.dpo, self.online_dpo, self.grpo, self.rft,
                            self.generation):
                _apply_mini_overrides(section)
        return self

    @property
    def bundle_dir(self) -> Path:
        """Where the mini world's bundle lives (built by `python -m backend bootstrap`)."""
        return self.data_dir / "bundle"

    @property
    def audio_dir(self) -> Path:
        return self.data_dir / "audio"

    @property
    def checkpoints_dir(self) -> Path:
        return self.data_dir / "checkpoints"

    @property
    def exports_dir(self) -> Path:
        return self.data_dir / "exports"

    def redacted_json(self) -> str:
        """Settings as JSON for `config show`; the database password, if any, is masked."""
        data = self.model_dump(mode="json")
        url = data["database_url"]
        if "@" in url and "://" in url:
            scheme, rest = url.split("://", 1)
            creds, host = rest.rsplit("@", 1)
            user = creds.split(":", 1)[0]
            data["database_url"] = f"{scheme}://{user}:***@{host}"
        return json.dumps(data, indent=2)


def mini_models(bundle: Path, judges: list[JudgeConfig]) -> ModelsConfig:
    """The mini world's components all load from the bundle directory. Its training judge is
    the bundle's; its evaluation judge (trains = false) the LM judge learned from text, unless
    one of kind mini-lm is configured. Extra (non-mini) judges configured by the user are
    kept, so a GPT-4o judge can score mini-world samples too."""
    extra = [j for j in judges if j.kind != "mini"]
    if not any(j.kind == "mini-lm" for j in extra):
        extra.insert(0, JudgeConfig(name="mini-lm-judge", kind="mini-lm", trains=False))
    return ModelsConfig(
        tokenizer=TokenizerConfig(kind="mini", path=str(bundle / "tokenizer")),
        # Up to 320 rows per generate call, so a round's 8 prompts x 10 are one call, not 64 +
        # 16 rows: decoding reads the whole KV cache every step, which costs less per row in
        # larger batches (64 rows: 11.7 continuations/s, 80: 14.6, 320: 16.9 on the seed-0
        # world, same units; docs/results.md; a whole round is not faster for it: 15:09 vs
        # 15:08, the other stages dominate). The mini LM's cache at 320 rows is ~0.35 GB;
        # TWIST-7B's would be ~50 GB (it keeps 64).
        unit_lm=UnitLMConfig(kind="mini", path=str(bundle / "unit_lm"), batch_size=320),
        vocoder=VocoderConfig(kind="mini", checkpoint=str(bundle / "vocoder")),
        asr=ASRConfig(kind="mini", path=str(bundle / "asr")),
        judges=[JudgeConfig(name="mini-judge", kind="mini", path=str(bundle / "judge")), *extra],
    )


def load_settings(**overrides) -> Settings:
    return Settings(**overrides)
