"""The speech components must agree on the units before units flow tokenizer -> unit LM ->
vocoder: a clear error names both sides instead of wrong speech or an index error."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from backend.runtime import UnitLayoutError


def _components(rt, k_tok, k_lm, k_voc):
    rt._components.update(tokenizer=SimpleNamespace(vocab_size=k_tok),
                          unit_lm=SimpleNamespace(vocab_size=k_lm),
                          vocoder=SimpleNamespace(num_units=k_voc))


def test_matching_units_pass(sqlite_runtime):
    rt = sqlite_runtime
    _components(rt, 500, 500, 500)
    rt.check_unit_layout()
    rt.forget_components()  # new components are checked again
    _components(rt, 500, 500, 1000)  # a vocoder with spare embeddings is fine
    rt.check_unit_layout()
    rt.forget_components()
    _components(rt, 500, 500, 200)
    with pytest.raises(UnitLayoutError):
        rt.check_unit_layout()


@pytest.mark.parametrize("k_tok,k_lm,k_voc,words", [
    (1000, 500, 500, ["tokenizer makes 1000 units", "unit LM models 500"]),
    (500, 500, 200, ["units 0..499", "embeddings for 200"]),
])
def test_a_mismatch_is_refused_with_both_sides_named(sqlite_runtime, k_tok, k_lm, k_voc, words):
    rt = sqlite_runtime
    _components(rt, k_tok, k_lm, k_voc)
    with pytest.raises(UnitLayoutError) as e:
        rt.check_unit_layout()
    assert all(w in str(e.value) for w in words), str(e.value)


def test_generation_refuses_before_sampling(sqlite_runtime):
    """A generate call on mismatched components fails at once with the reason."""
    rt = sqlite_runtime
    from backend import prompts, registry
    from backend.loop import generate
    from tests.rating.seed import FakeTokenizer, tone, wav_bytes

    prompts.upload_prompt(rt, wav_bytes(tone(300)), reference_text="x",
                          tokenizer=FakeTokenizer(), split="train")
    base = registry.create_baseline(rt, "base", "ref")
    _components(rt, 1000, 500, 500)
    with pytest.raises(UnitLayoutError, match="tokenizer makes 1000"):
        generate.generate(rt, base.id, split="train", n=1)
