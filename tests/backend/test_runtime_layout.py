"""The speech components must agree on the units before units flow tokenizer -> unit LM ->
vocoder: a clear error names both sides instead of wrong speech or an index error."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from backend.config import Settings
from backend.runtime import Runtime, UnitLayoutError


@pytest.fixture
def rt(tmp_path):
    r = Runtime(Settings(data_dir=tmp_path / "data",
                         database_url=f"sqlite:///{tmp_path / 'store.db'}"))
    yield r
    r.close()


def _components(rt, k_tok, k_lm, k_voc):
    rt._components.update(tokenizer=SimpleNamespace(vocab_size=k_tok),
                          unit_lm=SimpleNamespace(vocab_size=k_lm),
                          vocoder=SimpleNamespace(num_units=k_voc))


def test_matching_units_pass(rt):
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
def test_a_mismatch_is_refused_with_both_sides_named(rt, k_tok, k_lm, k_voc, words):
    _components(rt, k_tok, k_lm, k_voc)
    with pytest.raises(UnitLayoutError) as e:
        rt.check_unit_layout()
    assert all(w in str(e.value) for w in words), str(e.value)


def test_generation_refuses_before_sampling(rt):
    """A generate call on mismatched components fails at once with the reason."""
    from backend import prompts, registry
    from backend.loop import generate
    from tests.rating.seed import FakeTokenizer, tone, wav_bytes

    prompts.upload_prompt(rt, wav_bytes(tone(300)), reference_text="x",
                          tokenizer=FakeTokenizer(), split="train")
    base = registry.create_baseline(rt, "base", "ref")
    _components(rt, 1000, 500, 500)
    with pytest.raises(UnitLayoutError, match="tokenizer makes 1000"):
        generate.generate(rt, base.id, split="train", n=1)
