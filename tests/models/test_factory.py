"""The factory: kind "mini" delegates to models.mini's loaders with the same config object;
unknown kinds are clear errors."""

from __future__ import annotations

import pytest

import models.mini
from models import factory
from models.config import ASRConfig, JudgeConfig, TokenizerConfig, UnitLMConfig, VocoderConfig


@pytest.mark.parametrize("build, loader, cfg", [
    ("build_tokenizer", "load_tokenizer", TokenizerConfig(kind="mini", path="/bundle/tokenizer")),
    ("build_vocoder", "load_vocoder", VocoderConfig(kind="mini", checkpoint="/bundle/vocoder")),
    ("build_asr", "load_asr", ASRConfig(kind="mini", path="/bundle/asr")),
    ("build_judge", "load_judge", JudgeConfig(kind="mini", path="/bundle/judge")),
])
def test_mini_kinds_delegate(monkeypatch, build, loader, cfg):
    seen = []
    monkeypatch.setattr(models.mini, loader, lambda c: seen.append(c) or "component")
    assert getattr(factory, build)(cfg) == "component"
    assert seen == [cfg]


@pytest.mark.parametrize("build, cfg_cls", [
    ("build_tokenizer", TokenizerConfig), ("build_unit_lm", UnitLMConfig),
    ("build_vocoder", VocoderConfig), ("build_asr", ASRConfig), ("build_judge", JudgeConfig),
])
def test_unknown_kind(build, cfg_cls):
    with pytest.raises(factory.ModelLoadError, match="unknown .* kind 'nope'"):
        getattr(factory, build)(cfg_cls.model_construct(kind="nope"))


def test_missing_paths_are_load_errors(tmp_path):
    with pytest.raises(factory.ModelLoadError, match="no path configured for HuBERT"):
        factory.build_tokenizer(TokenizerConfig(kind="hubert"))
    with pytest.raises(factory.ModelLoadError, match="vocoder checkpoint"):
        factory.build_vocoder(VocoderConfig(kind="hifigan", checkpoint=str(tmp_path / "g.pt")))
    with pytest.raises(factory.ModelLoadError, match="HF Whisper directory"):
        factory.build_asr(ASRConfig(kind="hf_whisper", path=str(tmp_path / "w")))
    with pytest.raises(factory.ModelLoadError, match="judge 'j' model directory"):
        factory.build_judge(JudgeConfig(name="j", kind="hf", path=str(tmp_path / "j")))
