"""SQLAlchemy 2 schema of the store. Constraints make bad rows impossible, not just unlikely:
foreign keys, one judgment per rater and task, check constraints on roles, statuses and ranges.

Changing this file needs a new Alembic revision in `db/migrations/versions/`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ROLES = ("admin", "rater")
JOB_STATUSES = ("queued", "running", "done", "failed", "cancelled")
ROUND_STATUSES = ("pending", "running", "done", "failed", "cancelled")
JUDGMENT_KINDS = ("ai", "mos", "ab")
AB_CHOICES = ("A", "B", "tie", "both_bad")
ASPECTS = ("overall", "meaningfulness", "naturalness")
"""Every MOS aspect a judgment may have."""
RATED_ASPECTS = ("meaningfulness", "naturalness")
"""The aspects the Rate tab asks a rater about."""
MEANING_ASPECTS = ("overall", "meaningfulness")
"""The aspects that say how meaningful a continuation is: they feed preference pairs."""
FLAG_REASONS = ("trap_failed", "gold_accuracy", "admin", "unrecorded")
"""Why a judgment is flagged (kept, never counted): the rater failed a trap, their gold accuracy
fell below the minimum, an admin flagged them, or it was flagged before reasons were stored."""
PAIR_SOURCES = ("ai", "human", "both", "auto")
"""Where a round's pairs come from: AI judges, human votes, both (judges that agree with
people enough, `backend.trust`), or auto (as both, each judge weighted by its agreement)."""
TRAINING_METHODS = ("dpo", "online-dpo", "grpo", "rft")
"""How a round trains (backend.config.TrainingConfig.method)."""
FINETUNE_KINDS = ("lora", "full")
"""Which weights a round trained (a method section's `finetune`): a LoRA adapter, or all."""


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, list[int]: JSON, list[Any]: JSON}


class User(Base):
    __tablename__ = "users"
    __table_args__ = (CheckConstraint(_in("role", ROLES), name="role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class ModelVersion(Base):
    __tablename__ = "model_versions"
    __table_args__ = (
        CheckConstraint(_in("kind", ("baseline", "aligned")), name="kind"),
        CheckConstraint("kind = 'baseline' OR parent_id IS NOT NULL", name="aligned_has_parent"),
        CheckConstraint(
            "kind = 'baseline' OR adapter_path IS NOT NULL", name="aligned_has_adapter"
        ),
        CheckConstraint(_in("finetune", FINETUNE_KINDS), name="finetune"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    round_index: Mapped[int] = mapped_column(Integer, default=0)
    base_ref: Mapped[str] = mapped_column(String(1024), default="")
    """The weights the version's adapter applies to: the baseline's, or a fully fine-tuned
    version's own directory (for it and for the LoRA versions trained from it)."""
    adapter_path: Mapped[str | None] = mapped_column(String(1024))
    """What the aligned version's round trained: its LoRA adapter, or (finetune full) its whole
    model directory."""
    adapter_sha256: Mapped[str | None] = mapped_column(String(64))
    finetune: Mapped[str | None] = mapped_column(String(8))
    """lora | full for an aligned version; None for the baseline."""
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    parent: Mapped[ModelVersion | None] = relationship(remote_side=[id])


class Prompt(Base):
    __tablename__ = "prompts"
    __table_args__ = (
        UniqueConstraint("source", "audio_sha256"),
        CheckConstraint("duration_s > 0", name="duration_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    audio_path: Mapped[str] = mapped_column(String(1024))
    audio_sha256: Mapped[str] = mapped_column(String(64))
    duration_s: Mapped[float] = mapped_column(Float)
    units: Mapped[list[int]] = mapped_column(JSON, default=list)
    transcript: Mapped[str | None] = mapped_column(Text)
    reference_text: Mapped[str | None] = mapped_column(Text)
    """Ground-truth text where known (mini world corpus, LibriSpeech), for evaluation only."""
    source: Mapped[str] = mapped_column(String(64), default="upload")
    split: Mapped[str] = mapped_column(String(16), default="test")
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Sample(Base):
    __tablename__ = "samples"
    __table_args__ = (UniqueConstraint("prompt_id", "model_version_id", "seed", "index"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"), index=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), index=True)
    seed: Mapped[int] = mapped_column(Integer)
    index: Mapped[int] = mapped_column(Integer, default=0)
    sampling_params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    units: Mapped[list[int]] = mapped_column(JSON, default=list)
    audio_path: Mapped[str | None] = mapped_column(String(1024))
    transcript: Mapped[str | None] = mapped_column(Text)
    is_trap: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """A trap clip (a spoken QC instruction, `backend.traps`), not model output: kept out of
    judging, pairs, Listen and statistics."""
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    prompt: Mapped[Prompt] = relationship()
    model_version: Mapped[ModelVersion] = relationship()


class RatingTask(Base):
    """A unit of human work: an A/B comparison of two samples of the same prompt, or one MOS clip.
    Gold tasks carry a known answer; trap tasks are clips that tell the rater what to answer."""

    __tablename__ = "rating_tasks"
    __table_args__ = (
        CheckConstraint(_in("kind", ("ab", "mos")), name="kind"),
        CheckConstraint("kind = 'mos' OR sample_b_id IS NOT NULL", name="ab_has_two"),
        CheckConstraint("sample_b_id IS NULL OR sample_b_id != sample_a_id", name="distinct"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))
    sample_a_id: Mapped[int] = mapped_column(ForeignKey("samples.id", ondelete="CASCADE"))
    sample_b_id: Mapped[int | None] = mapped_column(ForeignKey("samples.id", ondelete="CASCADE"))
    gold_answer: Mapped[str | None] = mapped_column(String(16))
    is_trap: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class TaskAssignment(Base):
    """A task handed to one rater: the randomized left/right order and which clips were played
    through (the server unlocks the vote only when both were)."""

    __tablename__ = "task_assignments"
    __table_args__ = (UniqueConstraint("task_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("rating_tasks.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    swapped: Mapped[bool] = mapped_column(Boolean, default=False)
    """True when sample_b is shown on the left (as "A")."""
    played: Mapped[list[Any]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(16), default="assigned")
    assigned_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    done_at: Mapped[datetime | None] = mapped_column(DateTime)


class Judgment(Base):
    """One verdict: an AI judge's score of a sample, a human MOS of a sample, or a human A/B vote.

    `rater` is "user:<id>" or "ai:<judge>@<prompt_version>"; `task_key` names the task. Their pair
    is unique, so a double click, a retry or a second tab can never store two votes.
    For A/B, `choice` is stated in terms of the stored samples (A = sample_id, B = sample_b_id),
    whatever side they were shown on; `shown_swapped` records the side. An AI judge's pairwise
    verdict (asked in both orders) is kind "ai" with `sample_b_id` and `choice` set.
    """

    __tablename__ = "judgments"
    __table_args__ = (
        UniqueConstraint("rater", "task_key"),
        CheckConstraint(_in("kind", JUDGMENT_KINDS), name="kind"),
        CheckConstraint(_in("aspect", ASPECTS), name="aspect"),
        CheckConstraint("value IS NULL OR (value >= 1 AND value <= 5)", name="value_range"),
        CheckConstraint("kind != 'mos' OR value IS NOT NULL", name="mos_has_value"),
        CheckConstraint("kind = 'ai' OR user_id IS NOT NULL", name="human_has_user"),
        CheckConstraint(
            "kind != 'ab' OR (sample_b_id IS NOT NULL AND choice IS NOT NULL)", name="ab_complete"
        ),
        CheckConstraint("choice IS NULL OR " + _in("choice", AB_CHOICES), name="choice"),
        CheckConstraint(
            "kind != 'ai' OR value IS NOT NULL OR choice IS NOT NULL OR error IS NOT NULL",
            name="ai_value_or_error"),
        CheckConstraint("flag_reason IS NULL OR " + _in("flag_reason", FLAG_REASONS),
                        name="flag_reason"),
        CheckConstraint("(flagged AND flag_reason IS NOT NULL) OR "
                        "(NOT flagged AND flag_reason IS NULL)", name="flag_has_reason"),
        Index("ix_judgments_sample_kind", "sample_id", "kind"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))
    aspect: Mapped[str] = mapped_column(String(32), default="overall")
    rater: Mapped[str] = mapped_column(String(160))
    task_key: Mapped[str] = mapped_column(String(160))
    sample_id: Mapped[int] = mapped_column(ForeignKey("samples.id", ondelete="CASCADE"))
    sample_b_id: Mapped[int | None] = mapped_column(ForeignKey("samples.id", ondelete="CASCADE"))
    task_id: Mapped[int | None] = mapped_column(ForeignKey("rating_tasks.id"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    judge_name: Mapped[str | None] = mapped_column(String(128))
    prompt_version: Mapped[str | None] = mapped_column(String(64))
    value: Mapped[float | None] = mapped_column(Float)
    choice: Mapped[str | None] = mapped_column(String(16))
    shown_swapped: Mapped[bool] = mapped_column(Boolean, default=False)
    rationale: Mapped[str | None] = mapped_column(Text)
    raw: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    cost: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    flagged: Mapped[bool] = mapped_column(Boolean, default=False)
    """Set when the rater failed quality control (or an admin flagged them): excluded from
    statistics, never deleted."""
    flag_reason: Mapped[str | None] = mapped_column(String(32))
    """Why it is flagged (FLAG_REASONS); set exactly when `flagged` is."""
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(_in("status", JOB_STATUSES), name="status"),
        CheckConstraint("progress >= 0 AND progress <= 1", name="progress_range"),
        Index("ix_jobs_status_kind", "status", "kind"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    exclusive: Mapped[bool] = mapped_column(Boolean, default=False)
    """At most one running job of this kind when set (training)."""
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str] = mapped_column(Text, default="")
    log: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    worker_id: Mapped[str | None] = mapped_column(String(128))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)


class TrainingRound(Base):
    __tablename__ = "training_rounds"
    __table_args__ = (
        CheckConstraint(_in("status", ROUND_STATUSES), name="status"),
        CheckConstraint(_in("pair_source", PAIR_SOURCES), name="pair_source"),
        CheckConstraint(_in("method", TRAINING_METHODS), name="method"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    parent_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    result_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    round_index: Mapped[int] = mapped_column(Integer, default=1)
    pair_source: Mapped[str] = mapped_column(String(8), default="ai")
    selection: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    method: Mapped[str] = mapped_column(String(16), default="dpo")
    train_config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    """The settings section of `method` the round trained with."""
    status: Mapped[str] = mapped_column(String(16), default="pending")
    n_pairs: Mapped[int] = mapped_column(Integer, default=0)
    judges: Mapped[list[Any]] = mapped_column(JSON, default=list)
    """Per training judge at the time: used or not, weight, agreement with people and why
    (`backend.trust.JudgeUse`)."""
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)


class PreferencePair(Base):
    """A (chosen, rejected) pair used by a training round, with where it came from."""

    __tablename__ = "preference_pairs"
    __table_args__ = (
        UniqueConstraint("round_id", "chosen_sample_id", "rejected_sample_id"),
        CheckConstraint("chosen_sample_id != rejected_sample_id", name="distinct"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    round_id: Mapped[int] = mapped_column(ForeignKey("training_rounds.id", ondelete="CASCADE"))
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id"))
    chosen_sample_id: Mapped[int] = mapped_column(ForeignKey("samples.id"))
    rejected_sample_id: Mapped[int] = mapped_column(ForeignKey("samples.id"))
    source: Mapped[str] = mapped_column(String(32))
    margin: Mapped[float | None] = mapped_column(Float)
    provenance: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class EvalResult(Base):
    __tablename__ = "eval_results"
    __table_args__ = (
        CheckConstraint("n >= 0", name="n_nonnegative"),
        CheckConstraint("ci_low IS NULL OR ci_high IS NULL OR ci_low <= ci_high", name="ci_order"),
        Index("ix_eval_results_version_bench", "model_version_id", "benchmark"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    benchmark: Mapped[str] = mapped_column(String(64))
    metric: Mapped[str] = mapped_column(String(64))
    value: Mapped[float] = mapped_column(Float)
    n: Mapped[int] = mapped_column(Integer)
    ci_low: Mapped[float | None] = mapped_column(Float)
    ci_high: Mapped[float | None] = mapped_column(Float)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
