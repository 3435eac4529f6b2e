"""HFUnitLM on a tiny random Llama saved as an HF directory: sampling, scoring, LoRA adapters."""

from __future__ import annotations

import json

import pytest
import torch

from models.config import UnitLMConfig
from models.factory import ModelLoadError, build_unit_lm
from models.interfaces import SamplingParams, UnitLM
from models.unit_lm import HFUnitLM

from .conftest import BOS, EOS, OFFSET, PAD, K, save_unit_lm

PROMPTS = [[1, 2, 3, 4], [5, 6], [7, 8, 9, 10, 11, 12], [0]]
P = SamplingParams(n=3, temperature=0.8, top_k=10, top_p=0.95, max_new_units=12, seed=7)


def load(path, **kw) -> HFUnitLM:
    return build_unit_lm(UnitLMConfig(kind="hf", path=str(path), **kw))


@pytest.fixture(scope="module")
def lm(lm_dir) -> HFUnitLM:
    return load(lm_dir)


@pytest.fixture(scope="module")
def lm_ab(lm_dir, adapter_dirs) -> HFUnitLM:
    m = load(lm_dir)
    for name, d in adapter_dirs.items():
        m.load_adapter(name, d)
    return m


def test_layout_and_tokenizer(lm):
    assert isinstance(lm, UnitLM)
    assert (lm.n_units, lm.unit_offset, lm.bos_token_id, lm.eos_token_id) == (K, OFFSET, BOS, EOS)
    assert lm.vocab_size == K and lm.path.is_dir()
    tok = lm.hf_tokenizer
    assert tok.convert_tokens_to_ids(["<u0>", f"<u{K - 1}>"]) == [OFFSET, OFFSET + K - 1]
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (BOS, EOS, PAD)
    prompt, completion = lm.units_to_text([1, 2]), lm.units_to_text([3])
    ids = tok(tok.bos_token + " " + prompt + completion)["input_ids"]  # no separator: no merge
    assert ids == [BOS, OFFSET + 1, OFFSET + 2, OFFSET + 3]


def test_meta_file_states_the_layout(lm_dir):
    m = load(lm_dir, n_units=K, bos_token_id=BOS)
    assert (m.unit_offset, m.n_units, m.bos_token_id) == (OFFSET, K, BOS)
    for key, value in (("unit_offset", 0), ("n_units", 5), ("bos_token_id", None)):
        with pytest.raises(ModelLoadError, match=f"{key} = {value} but the checkpoint states"):
            load(lm_dir, **{key: value})


def test_kind_mini_is_hf_unit_lm(lm_dir):
    assert isinstance(build_unit_lm(UnitLMConfig(kind="mini", path=str(lm_dir))), HFUnitLM)


def test_sample_shapes_range_and_determinism(lm):
    a = lm.sample(PROMPTS, P)
    assert len(a) == len(PROMPTS) and all(len(c) == P.n for c in a)
    flat = [u for conts in a for c in conts for u in c]
    assert flat and all(0 <= u < K for u in flat)
    assert all(len(c) <= P.max_new_units for conts in a for c in conts)
    assert lm.sample(PROMPTS, P) == a
    other = lm.sample(PROMPTS, SamplingParams(**{**P.__dict__, "seed": 8}))
    assert other != a
    assert len({tuple(c) for c in a[0]}) > 1  # the n samples of one prompt differ


def test_batched_equals_one_at_a_time(lm_dir, lm):
    batched = lm.sample(PROMPTS, P)
    single = [lm.sample([p], P)[0] for p in PROMPTS]
    assert batched == single
    small_batches = load(lm_dir, batch_size=2).sample(list(reversed(PROMPTS)), P)
    assert small_batches == list(reversed(batched))


def test_greedy_is_argmax(lm):
    greedy = SamplingParams(n=2, temperature=0.0, max_new_units=1)
    out = lm.sample([[1, 2, 3]], greedy)[0]
    logits = lm.logits([1, 2, 3])[-1]
    allowed = logits.clone()
    allowed[:OFFSET] = -float("inf")
    allowed[EOS] = logits[EOS]
    best = int(allowed.argmax())
    assert out == [[best - OFFSET]] * 2 if best != EOS else out == [[], []]


def test_eos_stops_and_can_be_disabled(tmp_path):
    d = save_unit_lm(tmp_path / "eos_lm")
    m = load(d)
    with torch.no_grad():  # residual stream = embedding with a constant first coordinate
        for layer in m.model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        m.model.model.embed_tokens.weight[:, 0] = 1.0
        m.model.lm_head.weight[EOS, 0] = 1e4
    assert m.sample([[1, 2]], P) == [[[], [], []]]
    meta = json.loads((d / "studio_unit_lm.json").read_text())
    (d / "studio_unit_lm.json").write_text(json.dumps({**meta, "eos_token_id": None}))
    m2 = load(d)
    m2.model.load_state_dict(m.model.state_dict())
    assert all(len(c) == P.max_new_units for c in m2.sample([[1, 2]], P)[0])


def test_logprob_batched_matches_logits(lm_dir, lm):
    seqs = [[1, 2, 3], [4, 5, 6, 7, 8], [9]]
    out = load(lm_dir, batch_size=2).logprob(seqs)
    for s, lp in zip(seqs, out, strict=True):
        assert len(lp.per_token) == len(s)  # BOS present: every unit is scored
        assert lp.total == pytest.approx(sum(lp.per_token))
        ref = torch.log_softmax(lm.logits(s), -1)
        ids = [OFFSET + u for u in s]
        expected = [float(ref[i, t]) for i, t in enumerate(ids)]
        assert lp.per_token == pytest.approx(expected, abs=1e-4)
    assert [x.total for x in lm.logprob(seqs)] == pytest.approx([x.total for x in out], abs=1e-4)


def test_adapters_switch_and_none_is_base(lm, lm_ab, adapter_dirs, lm_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    units = [1, 2, 3, 4]
    base = lm.logits(units)
    ref = {}
    for name, d in adapter_dirs.items():
        pm = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(lm_dir), d).eval()
        with torch.no_grad():
            ref[name] = pm(input_ids=torch.tensor([[BOS] + [OFFSET + u for u in units]])).logits[0]
    for name in ["a", "b", "a", None, "b"]:
        got = lm_ab.logits(units, adapter=name)
        want = base if name is None else ref[name]
        assert torch.allclose(got, want, atol=1e-4), name
    assert not torch.allclose(ref["a"], base, atol=1e-2)
    assert not torch.allclose(ref["a"], ref["b"], atol=1e-2)
    assert lm_ab.sample(PROMPTS, P, adapter=None) == lm.sample(PROMPTS, P)
    assert lm_ab.sample(PROMPTS, P, adapter="a") != lm.sample(PROMPTS, P)
    assert lm_ab.logprob([units], adapter=None)[0].total == pytest.approx(
        lm.logprob([units])[0].total, abs=1e-4)
    with pytest.raises(KeyError):
        lm_ab.sample(PROMPTS, P, adapter="missing")


def test_save_adapter_round_trip_and_merge(lm_ab, lm_dir, tmp_path):
    units = [3, 1, 4, 1, 5]
    saved = lm_ab.save_adapter("b", tmp_path / "b_copy")
    assert (saved / "adapter_config.json").is_file()
    fresh = load(lm_dir)
    fresh.load_adapter("b2", saved)
    assert torch.equal(fresh.logits(units, adapter="b2"), lm_ab.logits(units, adapter="b"))
    merged = lm_ab.merge("a")
    assert not hasattr(merged, "peft_config")
    with torch.no_grad():
        m = merged(input_ids=torch.tensor([[BOS] + [OFFSET + u for u in units]])).logits[0]
    assert torch.allclose(m, lm_ab.logits(units, adapter="a"), atol=1e-4)
    # merging copies: the served model still switches adapters
    assert torch.allclose(lm_ab.logits(units, adapter=None), fresh.logits(units), atol=1e-5)


def test_load_errors_name_the_file(tmp_path, lm_dir):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="config.json"):
        load(tmp_path / "empty")
    d = save_unit_lm(tmp_path / "small", with_meta=False)
    with pytest.raises(ModelLoadError, match="vocabulary has 23 tokens"):
        load(d, n_units=500, unit_offset=OFFSET)
    with pytest.raises(ModelLoadError, match="adapter_config.json"):
        load(lm_dir).load_adapter("x", tmp_path / "empty")


def test_twist_offset_in_config_json_is_the_unit_layout(twist_dir):
    """TWIST states its offset in config.json and feeds `offset + unit` without a BOS: unit u
    must be token offset + u and EOS (below the offset) must still end a sample (the offset
    used to be 0: every unit shifted, units 0-3 on special tokens, EOS dropped)."""
    from transformers import AutoModelForCausalLM

    from .conftest import TWIST_EOS, TWIST_OFFSET

    assert json.loads((twist_dir / "config.json").read_text())["offset"] == TWIST_OFFSET
    assert not (twist_dir / "studio_unit_lm.json").exists()
    lm = load(twist_dir, n_units=K)
    assert (lm.unit_offset, lm.bos_token_id, lm.eos_token_id) == (TWIST_OFFSET, None, TWIST_EOS)
    assert lm.non_unit_ids == [i for i in range(TWIST_OFFSET) if i != TWIST_EOS]
    ref = AutoModelForCausalLM.from_pretrained(twist_dir, dtype=torch.float32).eval()
    units = [0, 3, 7, K - 1]
    with torch.no_grad():
        logits = ref(input_ids=torch.tensor([[TWIST_OFFSET + u for u in units]])).logits[0]
    want = torch.log_softmax(logits[:-1], -1).gather(
        -1, torch.tensor([[TWIST_OFFSET + u] for u in units[1:]]))[:, 0]
    assert lm.logprob([units])[0].per_token == pytest.approx(want.tolist(), abs=1e-4)
    flat = [u for c in lm.sample([units], P)[0] for u in c]
    assert flat and all(0 <= u < K for u in flat)


def test_a_configured_layout_that_contradicts_the_checkpoint_is_refused(twist_dir, tmp_path):
    with pytest.raises(ModelLoadError, match=r"unit_offset = 0 but the checkpoint states 4"):
        load(twist_dir, unit_offset=0)
    assert load(twist_dir, unit_offset=4, n_units=K).unit_offset == 4
    d = save_unit_lm(tmp_path / "no_offset", with_meta=False)
    with pytest.raises(ModelLoadError, match="config.json has no `offset`.*unit_offset"):
        load(d)
    assert load(d, unit_offset=OFFSET, n_units=K).unit_offset == OFFSET


def test_an_adapter_naming_modules_the_lm_lacks_is_refused(twist_dir, tmp_path):
    """A Llama-style adapter (o_proj) on an OPT TWIST (out_proj): peft would load the rest and
    silently skip o_proj; both architectures accept an adapter on their own projections."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from models.training import lora_target_modules

    base = AutoModelForCausalLM.from_pretrained(twist_dir, dtype=torch.float32)
    own = lora_target_modules(base, ["attention"])
    get_peft_model(base, LoraConfig(r=2, target_modules=own)).save_pretrained(tmp_path / "own")
    lm = load(twist_dir, n_units=K)
    lm.load_adapter("own", tmp_path / "own")
    assert lm.logits([1, 2], adapter="own").shape[0] == 2
    other = {"q_proj", "k_proj", "v_proj", "o_proj", "out_proj"} - set(own)
    cfg = json.loads((tmp_path / "own" / "adapter_config.json").read_text())
    (tmp_path / "foreign").mkdir()
    for f in (tmp_path / "own").iterdir():
        (tmp_path / "foreign" / f.name).write_bytes(f.read_bytes())
    (tmp_path / "foreign" / "adapter_config.json").write_text(
        json.dumps({**cfg, "target_modules": sorted(set(own) | other)}))
    with pytest.raises(ModelLoadError, match=f"target modules \\['{other.pop()}'\\]"):
        load(twist_dir, n_units=K).load_adapter("foreign", tmp_path / "foreign")


def test_adapter_names_may_hold_dots(lm_dir, adapter_dirs, tmp_path):
    """Aligned versions are named after the LM directory (`TWIST-1.3B-r1-...`): peft makes
    the adapter name a module name, which may not hold a dot (KeyError in the first round)."""
    m = load(lm_dir)
    m.load_adapter("TWIST-1.3B-r1", adapter_dirs["a"])
    ref = load(lm_dir)
    ref.load_adapter("a", adapter_dirs["a"])
    assert torch.equal(m.logits([1, 2], adapter="TWIST-1.3B-r1"), ref.logits([1, 2], adapter="a"))
    saved = m.save_adapter("TWIST-1.3B-r1", tmp_path / "saved")
    assert (saved / "adapter_config.json").is_file()
    m.unload_adapter("TWIST-1.3B-r1")
    assert m.adapters == {}
