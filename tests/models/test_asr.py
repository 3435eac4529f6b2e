"""WhisperASR on a tiny random Whisper saved in openai-whisper's .pt format (the tokenizer assets
ship inside the package, so this is offline). The text is garbage; shapes, batching and
determinism are what we check."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest
import torch

from models.config import ASRConfig
from models.factory import ModelLoadError, build_asr
from models.interfaces import ASR


@pytest.fixture(scope="module")
def whisper_pt(tmp_path_factory):
    from whisper.model import ModelDimensions, Whisper

    torch.manual_seed(0)
    dims = ModelDimensions(n_mels=80, n_audio_ctx=1500, n_audio_state=32, n_audio_head=2,
                           n_audio_layer=1, n_vocab=51865, n_text_ctx=24, n_text_state=32,
                           n_text_head=2, n_text_layer=1)
    path = tmp_path_factory.mktemp("whisper") / "tiny-random.pt"
    model = Whisper(dims)
    with torch.no_grad():  # larger weights than the default init, so the text depends on audio
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.3)
    torch.save({"dims": asdict(dims), "model_state_dict": model.state_dict()}, path)
    return path


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
