"""Typed configs of the speech components, one per component (slamkit style).

They are pydantic models so that `backend.config.Settings` can nest them and load them from a
TOML file and environment variables. `kind` picks the implementation in `models.factory`:
the real-weights one (`hubert`, `hf`, `hifigan`, `whisper`, `openai`, ...) or the embedded mini
world's (`mini`). `path` is a local path or, where a hub is reachable, a hub name.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# The unit layout (n_units, unit_offset) a studio-made unit LM directory carries beside its
# config.json; read by models.unit_lm, copied into fully fine-tuned versions by models.training.
META_FILE = "studio_unit_lm.json"

Device = Literal["auto", "cpu", "cuda"]
DType = Literal["float32", "float16", "bfloat16"]


class Section(BaseModel):
    """A settings section: an unknown key (a typo such as `unit_ofset`) is an error, never
    silently ignored. Every section of `backend.config.Settings` derives from this."""

    model_config = ConfigDict(extra="forbid")

    only_for_kinds: ClassVar[dict[str, tuple[str, ...]]] = {}
    """Fields that only some `kind`s read (field -> those kinds): setting one for another kind
    is refused too, since nothing would use it. So are `mini_overrides` naming no field."""

    @model_validator(mode="after")
    def _set_fields_are_used(self):
        unknown = set(getattr(self, "mini_overrides", None) or {}) - set(type(self).model_fields)
        if unknown:
            raise ValueError(f"mini_overrides names unknown settings: {sorted(unknown)}")
        kind = getattr(self, "kind", None)
        for name, kinds in self.only_for_kinds.items():
            if name in self.model_fields_set and kind not in kinds:
                raise ValueError(f"{name} is not used by kind {kind!r} (only by "
                                 f"{', '.join(repr(k) for k in kinds)})")
        return self


class TokenizerConfig(Section):
    kind: Literal["hubert", "mini"] = "mini"
    path: str = ""
    """HuBERT: HF model dir or hub name (e.g. mHuBERT-base-25Hz). Mini: bundle tokenizer dir."""
    kmeans_path: str = ""
    """k-means centroids: a joblib/pickle sklearn KMeans (textlesslib) or a .npy array (K, dim)."""
    layer: int = 11
    """HuBERT layer whose output is clustered (hidden_states[layer]: TWIST's units are L11's)."""
    normalize: bool = False
    """Normalize each wave to zero mean, unit variance first. False: slamkit feeds mHuBERT-25Hz
    the raw wave (textlesslib follows the fairseq checkpoint's task `normalize`); the HF
    directory's preprocessor_config.json `do_normalize` is not read."""
    device: Device = "auto"

    only_for_kinds = {k: ("hubert",) for k in ("kmeans_path", "layer", "normalize", "device")}


class UnitLMConfig(Section):
    kind: Literal["hf", "mini"] = "mini"
    path: str = ""
    """HF causal-LM directory (TWIST-350M/1.3B are OPT models, TWIST-7B a Llama model)."""
    unit_offset: int | None = None
    """Token id of unit 0 in the LM vocabulary (units occupy offset..offset+K-1). None = as the
    checkpoint states it (TWIST: `offset` in config.json; a saved studio LM: studio_unit_lm.json);
    setting it to another value than the checkpoint's is an error."""
    n_units: int = 500
    """Units the LM models (the k-means K); a studio_unit_lm.json states its own."""
    bos_token_id: int | None = None
    """Token prepended to every prompt; None = none (TWIST feeds units without a BOS)."""
    dtype: DType = "float32"
    device: Device = "auto"
    batch_size: int = 64


class VocoderConfig(Section):
    kind: Literal["hifigan", "mini"] = "mini"
    checkpoint: str = ""
    """speech-resynthesis style generator checkpoint (.pt with a 'generator' state dict)."""
    config_path: str = ""
    """its JSON config (upsample rates, num_embeddings, dur_predictor_params, ...)."""
    dur_prediction: bool | None = None
    """Repeat each (deduplicated) unit by the generator's predicted duration, as TWIST calls
    its vocoder. None = when the JSON config has `dur_predictor_params`; False = one frame per
    unit; True = required (a generator without a duration predictor is a load error)."""
    device: Device = "auto"

    only_for_kinds = {k: ("hifigan",) for k in ("config_path", "dur_prediction", "device")}


class ASRConfig(Section):
    kind: Literal["whisper", "hf_whisper", "mini"] = "mini"
    path: str = ""
    """openai-whisper checkpoint file (.pt), or an HF Whisper directory for `hf_whisper`."""
    language: str = "en"
    batch_size: int = 16
    device: Device = "auto"

    only_for_kinds = {k: ("whisper", "hf_whisper") for k in ("language", "device")}


class JudgeConfig(Section):
    name: str = "mini-judge"
    """Default "mini-judge"; "mini-lm-judge" for kind `mini-lm` when not set."""
    kind: Literal["openai", "hf", "mini", "mini-lm"] = "mini"
    """`mini-lm`: the mini world's held-out LM judge (models/mini/lm_judge.py), learned from
    text rather than from the generator's tables; the mini world's evaluation judge."""
    trains: bool = True
    """False: an evaluation judge. It scores samples (held-out evaluation, Listen, the
    Leaderboard) but never feeds preference pairs or an online method's reward, so it can
    tell whether training learned the task or only its training judge (the paper trains on
    Mistral's scores and evaluates with GPT-4o's)."""
    model: str = "gpt-4o"
    base_url: str | None = None
    """OpenAI-compatible endpoint (vLLM, Ollama, ...); None = api.openai.com."""
    api_key_env: str = "OPENAI_API_KEY"
    """Name of the environment variable that holds the key. The key itself never enters config."""
    path: str = ""
    """HF instruct model dir for `hf`; mini bundle judge dir for `mini`; for `mini-lm` optional
    (a dir saved by models.mini.lm_judge.build; empty = learn it from the world code at load)."""
    timeout_s: float = 60.0
    max_retries: int = 4
    retry_backoff_s: float = 1.0
    """First retry wait; doubles per attempt (a server's Retry-After wins when it sends one)."""
    max_retry_wait_s: float = 60.0
    concurrency: int = 4
    temperature: float = 0.0
    max_tokens: int = 400
    cache_dir: str = ""
    price_per_1k_input: float = 0.0
    price_per_1k_output: float = 0.0

    only_for_kinds = {
        **{k: ("openai",) for k in ("model", "base_url", "api_key_env", "timeout_s",
                                    "max_retries", "retry_backoff_s", "max_retry_wait_s",
                                    "temperature")},
        **{k: ("openai", "hf") for k in ("concurrency", "max_tokens", "cache_dir",
                                         "price_per_1k_input", "price_per_1k_output")},
        "path": ("hf", "mini", "mini-lm"),
    }

    @model_validator(mode="after")
    def _kind_default_name(self) -> JudgeConfig:
        if self.kind == "mini-lm" and "name" not in self.model_fields_set:
            self.name = "mini-lm-judge"
        return self


class ModelsConfig(Section):
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)
    unit_lm: UnitLMConfig = Field(default_factory=UnitLMConfig)
    vocoder: VocoderConfig = Field(default_factory=VocoderConfig)
    asr: ASRConfig = Field(default_factory=ASRConfig)
    judges: list[JudgeConfig] = Field(default_factory=lambda: [JudgeConfig()])
