"""Corrupt bundle or checkpoint on disk: named with its fix, never loaded; the rest works."""

from __future__ import annotations

import shutil

import pytest

from backend import health, registry
from backend.config import Settings
from backend.runtime import AdapterCorruptError, Runtime


@pytest.fixture
def bundle_copy(tmp_path, mini_bundle):
    """A private copy of the tiny bundle that the test may damage."""
    data = tmp_path / "data"
    shutil.copytree(mini_bundle, data / "bundle")
    return data


def _runtime(data) -> Runtime:
    return Runtime(Settings(data_dir=data, database_url=f"sqlite:///{data / 'studio.db'}",
                            world="mini"))


def test_intact_bundle_has_no_problems(bundle_copy):
    rt = _runtime(bundle_copy)
    assert health.check(rt) == []
    rt.close()


@pytest.mark.parametrize("victim", ["unit_lm/model.safetensors", "asr/model.pt",
                                    "tokenizer/centroids.npy", "judge/config.json"])
def test_truncated_bundle_file_is_named_with_the_rebuild_command(bundle_copy, victim):
    f = bundle_copy / "bundle" / victim
    f.write_bytes(f.read_bytes()[: max(1, f.stat().st_size // 3)])
    rt = _runtime(bundle_copy)
    problems = health.check(rt)
    assert len(problems) == 1, problems
    component = victim.split("/")[0]
    assert problems[0]["component"].replace("judge mini-judge", "judge") == component
    assert str(bundle_copy / "bundle" / component) in problems[0]["path"]
    assert "bootstrap --force" in problems[0]["fix"]
    assert problems[0]["component"] in health.describe(problems)
    rt.close()


def _lora_adapter(lm_dir, out):
    """A real (random) LoRA adapter for the bundle's unit LM, saved by peft."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForCausalLM

    model = get_peft_model(LlamaForCausalLM.from_pretrained(lm_dir),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                      init_lora_weights=False))
    model.save_pretrained(out)
    return out


def test_corrupt_adapter_is_reported_refused_and_parent_still_works(bundle_copy, tmp_path):
    rt = _runtime(bundle_copy)
    base = registry.ensure_baseline(rt)
    good = registry.derive_aligned(rt, base.id, _lora_adapter(
        bundle_copy / "bundle" / "unit_lm", tmp_path / "a1"), 1)
    bad = registry.derive_aligned(rt, base.id, _lora_adapter(
        bundle_copy / "bundle" / "unit_lm", tmp_path / "a2"), 1)
    weights = next(p for p in (bundle_copy / "checkpoints" / bad.name).rglob("*.safetensors"))
    raw = bytearray(weights.read_bytes())
    raw[-5] ^= 0xFF  # one flipped bit pattern in the tensor data: still a loadable file
    weights.write_bytes(bytes(raw))

    problems = health.check(rt)
    assert [p["component"] for p in problems] == [f"adapter of {bad.name}"]
    with pytest.raises(AdapterCorruptError, match=bad.name):
        rt.adapter(bad)
    assert rt.adapter(good) == good.name  # siblings and the parent are unaffected
    assert rt.adapter(base) is None
    rt.close()


def test_server_starts_on_a_corrupt_bundle_and_names_the_file(bundle_copy):
    """The app serves (raters can still vote) and the console names the bad file and the fix."""
    import urllib.request

    from tests.app.conftest import Server

    bad = bundle_copy / "bundle" / "unit_lm" / "model.safetensors"
    bad.write_bytes(bad.read_bytes()[:1000])
    srv = Server(bundle_copy, extra_env={"STUDIO_SERVER__SEED_SAMPLES": "4"})
    try:
        with urllib.request.urlopen(srv.url + "/", timeout=10) as r:
            assert r.status == 200
        log = srv.log()
        assert "unit_lm" in log and str(bad.parent) in log, log
        assert "bootstrap --force" in log, log
        assert "seeding_jobs" not in log  # no jobs queued that would only fail
    finally:
        srv.stop()
