"""Build each speech component from its config section; `kind` picks the implementation.

Real-weights kinds load local files (see each module); kind "mini" delegates to the embedded mini
world (`models.mini`), except the unit LM, which the mini world saves as a plain HF Llama
directory and `HFUnitLM` serves in both worlds. Judge kind "mini-lm" is the mini world's held-out
LM judge (`models.mini.load_lm_judge`). Imports are lazy so that building one component does not
pull in the libraries of the others.
"""

from __future__ import annotations

from models.config import ASRConfig, JudgeConfig, TokenizerConfig, UnitLMConfig, VocoderConfig
from models.device import ModelLoadError

__all__ = ["ModelLoadError", "build_tokenizer", "build_unit_lm", "build_vocoder", "build_asr",
           "build_judge"]


def _unknown(what: str, kind: str) -> ModelLoadError:
    return ModelLoadError(f"unknown {what} kind {kind!r}")


def build_tokenizer(cfg: TokenizerConfig):
    if cfg.kind == "mini":
        from models.mini import load_tokenizer

        return load_tokenizer(cfg)
    if cfg.kind == "hubert":
        from models.tokenizer import HubertKMeansTokenizer

        return HubertKMeansTokenizer(cfg)
    raise _unknown("tokenizer", cfg.kind)


def build_unit_lm(cfg: UnitLMConfig):
    if cfg.kind in ("hf", "mini"):
        from models.unit_lm import HFUnitLM

        return HFUnitLM(cfg)
    raise _unknown("unit LM", cfg.kind)


def build_vocoder(cfg: VocoderConfig):
    if cfg.kind == "mini":
        from models.mini import load_vocoder

        return load_vocoder(cfg)
    if cfg.kind == "hifigan":
        from models.vocoder import UnitHiFiGAN

        return UnitHiFiGAN(cfg)
    raise _unknown("vocoder", cfg.kind)


def build_asr(cfg: ASRConfig):
    if cfg.kind == "mini":
        from models.mini import load_asr

        return load_asr(cfg)
    if cfg.kind == "whisper":
        from models.asr import WhisperASR

        return WhisperASR(cfg)
    if cfg.kind == "hf_whisper":
        from models.asr import HFWhisperASR

        return HFWhisperASR(cfg)
    raise _unknown("ASR", cfg.kind)


def build_judge(cfg: JudgeConfig):
    if cfg.kind == "mini":
        from models.mini import load_judge

        return load_judge(cfg)
    if cfg.kind == "mini-lm":
        from models.mini import load_lm_judge

        return load_lm_judge(cfg)
    if cfg.kind == "openai":
        from models.judges import OpenAIJudge

        return OpenAIJudge(cfg)
    if cfg.kind == "hf":
        from models.judges import HFChatJudge

        return HFChatJudge(cfg)
    raise _unknown("judge", cfg.kind)
