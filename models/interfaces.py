"""The small interfaces every speech component implements, in both worlds.

`backend/` only ever talks to these protocols, so it never knows whether it runs on the real
published weights (mHuBERT + TWIST + HiFi-GAN + Whisper + an LLM judge) or on the embedded mini
world. Units are plain Python ints 0..K-1; waves are 1-D float32 numpy arrays in [-1, 1].
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

Units = list[int]
Progress = Callable[[float, str], None]
"""`progress(fraction 0..1, message)`; long work reports through it (and may be cancelled by it
raising)."""
Report = Callable[..., None]
"""`report(**values)`: live values while work runs (e.g. a training step's metrics)."""


def dedup(units: Sequence[int]) -> Units:
    """Remove consecutive duplicates, as TWIST does before the unit LM."""
    out: Units = []
    for u in units:
        if not out or out[-1] != u:
            out.append(int(u))
    return out


@dataclass(frozen=True)
class SamplingParams:
    """Sampling settings for continuations (defaults: slamkit's recipe, see PAPER.md)."""

    n: int = 5
    temperature: float = 0.8
    top_k: int = 25
    top_p: float = 1.0
    max_new_units: int = 150
    seed: int = 0


@dataclass(frozen=True)
class LogProb:
    """Log-likelihood of one unit sequence: summed, and per token (first token excluded)."""

    total: float
    per_token: list[float] = field(default_factory=list)

    @property
    def mean(self) -> float:
        return self.total / max(1, len(self.per_token))


@dataclass(frozen=True)
class Score:
    """A judge's verdict. `value` is None when the judge failed (never an invented score)."""

    value: float | None
    rationale: str = ""
    raw: str = ""
    judge: str = ""
    prompt_version: str = ""
    error: str | None = None
    cost: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.value is not None and self.error is None


@runtime_checkable
class SpeechTokenizer(Protocol):
    sample_rate: int
    vocab_size: int

    def encode(self, wave: np.ndarray, sample_rate: int, deduplicate: bool = True) -> Units: ...


@runtime_checkable
class UnitLM(Protocol):
    """A causal LM over speech units with named LoRA adapters (one per aligned version).

    Implementations are safe to share between threads: they serialize their own use of the
    model (switching adapters is not thread-safe), so callers never take a lock."""

    vocab_size: int
    hf_tokenizer: Any
    """The HF tokenizer training feeds TRL with (unit strings -> ids)."""

    def units_to_text(self, units: Sequence[int]) -> str:
        """The string form of units that `hf_tokenizer` reads (the tokeniser owns it)."""
        ...

    def load_adapter(self, name: str, path: str | Path) -> None:
        """Load a saved adapter under `name` (idempotent); `adapter=name` then applies it."""
        ...

    non_unit_ids: list[int]
    """Token ids that are neither a unit nor EOS (an online trainer's sampler suppresses them)."""

    def ids_to_units(self, row: Sequence[int]) -> Units:
        """Sampled token ids (as `hf_tokenizer` numbers them) -> units, cut at EOS."""
        ...

    def sample(
        self, prompts: Sequence[Units], params: SamplingParams, adapter: str | None = None
    ) -> list[list[Units]]:
        """For each prompt, `params.n` continuations (new units only). Deterministic for a seed."""
        ...

    def logprob(self, sequences: Sequence[Units], adapter: str | None = None) -> list[LogProb]: ...


@runtime_checkable
class Vocoder(Protocol):
    sample_rate: int
    # Optional `num_units`: how many units it has embeddings for (Runtime.check_unit_layout).

    def decode(self, units: Units) -> np.ndarray: ...


@runtime_checkable
class ASR(Protocol):
    def transcribe(self, waves: Sequence[np.ndarray], sample_rate: int) -> list[str]: ...


@runtime_checkable
class Judge(Protocol):
    name: str
    prompt_version: str

    def score(self, prompt_text: str, continuation_text: str) -> Score: ...


@dataclass(frozen=True)
class Verdict:
    """A pairwise judgment: which of two continuations, in the order shown, is better.
    `choice` is None when the judge failed (never an invented answer)."""

    choice: str | None
    """A (the first shown), B (the second) or tie"""
    rationale: str = ""
    raw: str = ""
    error: str | None = None


@runtime_checkable
class PairwiseJudge(Protocol):
    """A judge that can also compare two continuations of one prompt (optional)."""

    name: str
    prompt_version: str

    def compare(self, prompt_text: str, first_text: str, second_text: str) -> Verdict: ...
