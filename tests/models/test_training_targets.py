"""LoRA targets follow the architecture: TWIST-1.3B is an OPT model (`out_proj`), TWIST-7B and
the mini LM are Llama models (`o_proj`); a target that matches nothing is an error."""

from __future__ import annotations

import pytest

transformers = pytest.importorskip("transformers")

from models.training import lora_target_modules  # noqa: E402


def _llama():
    cfg = transformers.LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32,
                                   num_hidden_layers=1, num_attention_heads=2,
                                   num_key_value_heads=2)
    return transformers.LlamaForCausalLM(cfg)


def _opt():
    cfg = transformers.OPTConfig(vocab_size=32, hidden_size=16, ffn_dim=32, num_hidden_layers=1,
                                 num_attention_heads=2, word_embed_proj_dim=16)
    return transformers.OPTForCausalLM(cfg)


def test_attention_means_each_architectures_projections():
    assert lora_target_modules(_llama(), ["attention"]) == ["q_proj", "k_proj", "v_proj",
                                                            "o_proj"]
    assert lora_target_modules(_opt(), ["attention"]) == ["q_proj", "k_proj", "v_proj",
                                                          "out_proj"]


def test_a_target_the_model_lacks_is_an_error():
    assert lora_target_modules(_opt(), ["q_proj", "fc1"]) == ["q_proj", "fc1"]
    with pytest.raises(ValueError, match="'o_proj' matches no linear module.*out_proj"):
        lora_target_modules(_opt(), ["q_proj", "k_proj", "v_proj", "o_proj"])


def test_the_default_setting_is_the_attention_projections():
    from backend.config import DPOSettings

    assert DPOSettings().lora_targets == ["attention"]
