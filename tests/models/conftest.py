"""Tiny random-init models saved in the real on-disk formats, built once per test session."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

K = 20  # units
OFFSET = 3  # <pad>=0, <s>=1, </s>=2, then units
PAD, BOS, EOS = 0, 1, 2


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny models on a shared 2-core box: OpenMP spin-waiting across threads made them ~50x
    slower than one thread. Scoped to these tests; restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def save_unit_lm(path: Path, seed: int = 0, with_meta: bool = True, hidden: int = 32) -> Path:
    """An HF Llama directory (no tokenizer.json: HFUnitLM builds one) + studio_unit_lm.json."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=OFFSET + K, hidden_size=hidden, intermediate_size=2 * hidden,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
        max_position_embeddings=256, pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():  # a peakier distribution than random init, so samples differ by seed
        model.lm_head.weight.mul_(20)
    model.save_pretrained(path)
    if with_meta:
        (path / "studio_unit_lm.json").write_text(json.dumps(
            {"n_units": K, "unit_offset": OFFSET, "bos_token_id": BOS, "eos_token_id": EOS,
             "pad_token_id": PAD}))
    return path


TWIST_OFFSET = 4  # this fixture's choice; a TWIST checkpoint states its own as config.json `offset`
TWIST_PAD, TWIST_EOS = 1, 2


def save_twist_lm(path: Path, arch: str = "opt", seed: int = 0, hidden: int = 32,
                  n_units: int = K) -> Path:
    """A unit LM as TWIST publishes it: an HF OPT (TWIST-350M/1.3B) or Llama (TWIST-7B)
    directory whose config.json carries `offset` (unit u is token offset + u, fed without a
    BOS), fp16 safetensors weights, no tokenizer and no studio_unit_lm.json."""
    from transformers import LlamaConfig, LlamaForCausalLM, OPTConfig, OPTForCausalLM

    torch.manual_seed(seed)
    common = dict(vocab_size=TWIST_OFFSET + n_units, hidden_size=hidden, num_hidden_layers=2,
                  num_attention_heads=4, max_position_embeddings=256, pad_token_id=TWIST_PAD,
                  bos_token_id=TWIST_EOS, eos_token_id=TWIST_EOS)
    if arch == "opt":
        model = OPTForCausalLM(OPTConfig(ffn_dim=2 * hidden, word_embed_proj_dim=hidden,
                                         **common))
    else:
        model = LlamaForCausalLM(LlamaConfig(intermediate_size=2 * hidden,
                                             num_key_value_heads=4, **common))
    model.config.offset = TWIST_OFFSET
    model.half().save_pretrained(path, safe_serialization=True)
    return path


def save_mhubert(d: Path, km_path: Path, n_clusters: int, n_layers: int = 2,
                 layer: int = 1) -> None:
    """A tiny random HF HubertModel directory (a 320-sample hop, as mHuBERT's front end) and a
    joblib MiniBatchKMeans fitted on its layer-`layer` features, as textlesslib ships k-means."""
    import joblib
    import numpy as np
    from sklearn.cluster import MiniBatchKMeans
    from transformers import HubertConfig, HubertModel

    torch.manual_seed(0)
    model = HubertModel(HubertConfig(
        hidden_size=32, num_hidden_layers=n_layers, num_attention_heads=2, intermediate_size=64,
        conv_dim=(32, 32, 32), conv_stride=(5, 8, 8), conv_kernel=(10, 8, 8),
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)).eval()
    model.save_pretrained(d)
    wave = np.random.default_rng(0).standard_normal(16000 * 3 * n_clusters // 100)
    with torch.no_grad():
        feats = model(torch.from_numpy(wave.astype(np.float32))[None],
                      output_hidden_states=True).hidden_states[layer][0].numpy()
    joblib.dump(MiniBatchKMeans(n_clusters=n_clusters, n_init=1, random_state=0).fit(feats),
                km_path)


def save_whisper_pt(path: Path) -> Path:
    """A tiny random Whisper in openai-whisper's .pt format (dims + model_state_dict)."""
    from dataclasses import asdict

    from whisper.model import ModelDimensions, Whisper

    torch.manual_seed(0)
    dims = ModelDimensions(n_mels=80, n_audio_ctx=1500, n_audio_state=32, n_audio_head=2,
                           n_audio_layer=1, n_vocab=51865, n_text_ctx=24, n_text_state=32,
                           n_text_head=2, n_text_layer=1)
    model = Whisper(dims)
    with torch.no_grad():  # larger weights than the default init, so the text depends on audio
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"dims": asdict(dims), "model_state_dict": model.state_dict()}, path)
    return path


def save_adapter(base_dir: Path, out: Path, seed: int) -> Path:
    """A random (non-zero) LoRA adapter on the attention projections, saved with peft."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(base_dir)
    torch.manual_seed(seed)
    peft = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                           init_lora_weights=False))
    with torch.no_grad():
        for n, p in peft.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    peft.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def lm_dir(tmp_path_factory) -> Path:
    return save_unit_lm(tmp_path_factory.mktemp("unit_lm"))


@pytest.fixture(scope="session", params=["opt", "llama"])
def twist_dir(request, tmp_path_factory) -> Path:
    return save_twist_lm(tmp_path_factory.mktemp(f"twist_{request.param}"), request.param)


@pytest.fixture(scope="session")
def adapter_dirs(lm_dir, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("adapters")
    return {name: save_adapter(lm_dir, root / name, seed)
            for name, seed in (("a", 1), ("b", 2))}
