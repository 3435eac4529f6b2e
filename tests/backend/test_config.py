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
    ({"mini_overrides": {"lerning_rate": 1e-4}}, "mini_overrides names unknown settings"),
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


@pytest.mark.parametrize("toml, words", [
    # fields nothing read: the HuBERT front end is 16 kHz, the vocoder's rate is its JSON's
    ('world = "real"\n[models.tokenizer]\nsample_rate = 8000\n', "sample_rate"),
    ('world = "real"\n[models.vocoder]\nsample_rate = 22050\n', "sample_rate"),
    # fields the chosen kind does not read
    ('world = "real"\n[models.tokenizer]\nkind = "mini"\nkmeans_path = "km.bin"\n',
     "kmeans_path is not used by kind 'mini'"),
    ('world = "real"\n[models.vocoder]\nkind = "mini"\ndur_prediction = false\n',
     "dur_prediction is not used by kind 'mini'"),
    ('world = "real"\n[[models.judges]]\nname = "m"\nkind = "hf"\nbase_url = "http://x"\n',
     "base_url is not used by kind 'hf'"),
    ('world = "real"\n[models.asr]\nkind = "mini"\nlanguage = "fr"\n',
     "language is not used by kind 'mini'"),
    # the mini world loads every component from its bundle
    ('[models.unit_lm]\nkind = "hf"\npath = "/weights/TWIST-1.3B"\n',
     "world = 'mini' loads its components from its bundle: models.unit_lm"),
    ('[[models.judges]]\nname = "mine"\nkind = "mini"\npath = "/j"\n',
     "models.judges \\('mine', kind 'mini'\\) would not be used"),
    ('[generation]\nmini_overrides = {m = 3}\n', r"mini_overrides names unknown settings: \['m'\]"),
])
def test_a_value_nothing_would_use_is_refused(tmp_path, monkeypatch, toml, words):
    """A value that is set but read by nothing is an error, not silently dropped."""
    (tmp_path / "studio.toml").write_text(toml)
    monkeypatch.setenv("STUDIO_CONFIG", str(tmp_path / "studio.toml"))
    with pytest.raises(ValidationError, match=words):
        Settings(data_dir=tmp_path)


def test_values_the_kind_reads_are_accepted(tmp_path):
    s = Settings(world="real", data_dir=tmp_path, models={
        "tokenizer": {"kind": "hubert", "path": "/w/mhubert", "kmeans_path": "/w/km.bin",
                      "layer": 11},
        "vocoder": {"kind": "hifigan", "checkpoint": "/w/g.pt", "config_path": "/w/g.json",
                    "dur_prediction": True},
        "judges": [{"name": "gpt", "kind": "openai", "base_url": "http://x", "max_tokens": 9}]})
    assert s.models.vocoder.dur_prediction and s.models.judges[0].max_tokens == 9
    assert Settings(data_dir=tmp_path, models={"judges": [{"name": "g", "kind": "openai"}]}
                    ).models.judges[-1].name == "g"
