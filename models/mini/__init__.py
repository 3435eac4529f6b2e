"""The embedded mini world: components built offline by `python -m backend bootstrap`.

`models.factory` calls these loaders when a component's config has `kind="mini"`; the unit LM is
a plain HF Llama directory loaded by `models.unit_lm.HFUnitLM` (see models/mini/unit_lm.py).
"""

from __future__ import annotations

from models.config import ASRConfig, JudgeConfig, TokenizerConfig, VocoderConfig


def load_tokenizer(cfg: TokenizerConfig):
    from models.mini.tokenizer import MiniTokenizer

    return MiniTokenizer(cfg.path)


def load_vocoder(cfg: VocoderConfig):
    from models.mini.vocoder import MiniVocoder

    return MiniVocoder(cfg.checkpoint)


def load_asr(cfg: ASRConfig):
    from models.mini.asr import MiniASR

    return MiniASR(cfg.path, batch_size=cfg.batch_size)


def load_judge(cfg: JudgeConfig):
    from models.mini.judge import MiniJudge

    return MiniJudge(cfg.path, name=cfg.name or "mini-judge")


def load_lm_judge(cfg: JudgeConfig):
    """The held-out LM judge (kind "mini-lm"): from `cfg.path` if set (a dir saved by
    `models.mini.lm_judge.build`), else learned from the world's generator at load (~1.5 s)."""
    from models.mini.lm_judge import MiniLMJudge

    return MiniLMJudge(cfg.path or None, name=cfg.name or "mini-lm-judge")


__all__ = ["load_tokenizer", "load_vocoder", "load_asr", "load_judge", "load_lm_judge"]
