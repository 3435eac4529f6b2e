"""WhisperASR on a tiny random Whisper saved in openai-whisper's .pt format (the tokenizer assets
ship inside the package, so this is offline). The text is garbage; shapes, batching and
determinism are what we check."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.config import ASRConfig
from models.factory import ModelLoadError, build_asr
from models.interfaces import ASR

from .conftest import save_whisper_pt


@pytest.fixture(scope="module")
def whisper_pt(tmp_path_factory):
    return save_whisper_pt(tmp_path_factory.mktemp("whisper") / "tiny-random.pt")


def waves(n: int, sr: int = 16000) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [(0.1 * rng.standard_normal(int(sr * (0.5 + 0.25 * i)))).astype(np.float32)
            for i in range(n)]


def test_transcribe_batched_deterministic(whisper_pt):
    asr = build_asr(ASRConfig(kind="whisper", path=str(whisper_pt), batch_size=3))
    assert isinstance(asr, ASR) and asr.language == "en"
    ws = waves(3)
    out = asr.transcribe(ws, 16000)
    assert len(out) == 3 and all(isinstance(t, str) and t for t in out)
    assert len(set(out)) > 1  # the transcript depends on the audio
    assert asr.transcribe(ws, 16000) == out
    one = build_asr(ASRConfig(kind="whisper", path=str(whisper_pt), batch_size=1))
    assert one.transcribe(ws, 16000) == out
    assert asr.transcribe([], 16000) == []
    assert len(asr.transcribe(waves(2, sr=8000), 8000)) == 2


def test_load_errors(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        build_asr(ASRConfig(kind="whisper", path=str(tmp_path / "none.pt")))
    bad = tmp_path / "bad.pt"
    torch.save({"state": {}}, bad)
    with pytest.raises(ModelLoadError, match="bad.pt .*'dims' and 'model_state_dict'"):
        build_asr(ASRConfig(kind="whisper", path=str(bad)))


@pytest.fixture(scope="module")
def hf_whisper_dir(tmp_path_factory):
    """A tiny random WhisperForConditionalGeneration with a byte-level vocabulary + specials,
    and the generation config entries `generate(language=, task=)` needs."""
    import json

    from tokenizers import pre_tokenizers
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizer,
    )

    d = tmp_path_factory.mktemp("hf_whisper")
    specials = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|transcribe|>",
                "<|translate|>", "<|notimestamps|>"]
    vocab = {c: i for i, c in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    vocab.update({s: len(vocab) + i for i, s in enumerate(specials)})
    (d / "vocab.json").write_text(json.dumps(vocab))
    (d / "merges.txt").write_text("#version: 0.2\n")
    tok = WhisperTokenizer(str(d / "vocab.json"), str(d / "merges.txt"),
                           additional_special_tokens=specials[1:])
    WhisperProcessor(WhisperFeatureExtractor(feature_size=80), tok).save_pretrained(d)
    eot, sot = vocab["<|endoftext|>"], vocab["<|startoftranscript|>"]
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(WhisperConfig(
        vocab_size=len(vocab), num_mel_bins=80, d_model=32, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
        decoder_ffn_dim=64, max_source_positions=1500, max_target_positions=24,
        pad_token_id=eot, bos_token_id=eot, eos_token_id=eot, decoder_start_token_id=sot))
    model.generation_config = GenerationConfig(
        decoder_start_token_id=sot, eos_token_id=eot, pad_token_id=eot, max_length=16,
        lang_to_id={"<|en|>": vocab["<|en|>"]}, is_multilingual=True,
        task_to_id={"transcribe": vocab["<|transcribe|>"], "translate": vocab["<|translate|>"]},
        no_timestamps_token_id=vocab["<|notimestamps|>"])
    model.save_pretrained(d)
    return d


def test_hf_whisper_batched_deterministic(hf_whisper_dir):
    asr = build_asr(ASRConfig(kind="hf_whisper", path=str(hf_whisper_dir), batch_size=2))
    assert isinstance(asr, ASR)
    ws = waves(3)
    out = asr.transcribe(ws, 16000)
    assert len(out) == 3 and all(isinstance(t, str) for t in out)
    assert asr.transcribe(ws, 16000) == out
    one = build_asr(ASRConfig(kind="hf_whisper", path=str(hf_whisper_dir), batch_size=1))
    assert one.transcribe(ws, 16000) == out
