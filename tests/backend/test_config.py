"""Settings that cannot work are refused where they are made, with the field's name."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from backend.config import DPOSettings, Settings


@pytest.mark.parametrize("bad, words", [
    ({"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0]}, "loss_weights has 1 values"),
    ({"loss_type": []}, "at least one loss"),
    ({"beta": 0.0}, "beta must be > 0"),
    ({"learning_rate": -1e-4}, "learning_rate must be > 0"),
    ({"lora_rank": 0}, "lora_rank must be >= 1"),
    ({"warmup_ratio": 1.5}, "warmup_ratio"),
    ({"mini_overrides": {"lerning_rate": 1e-4}}, "unknown DPO settings"),
])
def test_dpo_settings_cross_checks(bad, words):
    with pytest.raises(ValidationError, match=words):
        DPOSettings(**bad)


def test_defaults_of_both_worlds_are_consistent(tmp_path):
    for world in ("mini", "real"):
        s = Settings(world=world, data_dir=tmp_path)
        assert s.dpo.loss_weights is None or len(s.dpo.loss_weights) == len(s.dpo.loss_type)


def test_a_round_with_inconsistent_losses_is_refused_before_it_is_queued(tmp_path):
    from backend import jobs
    from backend.loop.rounds import start_round
    from backend.runtime import Runtime

    rt = Runtime(Settings(data_dir=tmp_path))
    try:
        with pytest.raises(ValidationError, match="loss_weights"):
            start_round(rt, None, overrides={"dpo": {"loss_weights": [1.0, 1.0, 1.0]}})
        assert jobs.list_jobs(rt) == []
    finally:
        rt.close()


@pytest.mark.parametrize("section, key", [
    ("models.unit_lm", "unit_ofset"), ("models.vocoder", "dur_predict"), ("dpo", "bta"),
    ("generation", "max_new_unit"), ("server", "prot"),
])
def test_a_typo_inside_a_section_is_refused_from_the_file(tmp_path, monkeypatch, section, key):
    """Every level refuses unknown keys, as the top level always did (a typo used to be
    accepted silently inside a section and the default used)."""
    toml = tmp_path / "studio.toml"
    toml.write_text(f"[{section}]\n{key} = 1\n")
    monkeypatch.setenv("STUDIO_CONFIG", str(toml))
    from backend.config import load_settings

    with pytest.raises(ValidationError, match=key):
        load_settings(data_dir=tmp_path)
