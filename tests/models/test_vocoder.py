"""UnitHiFiGAN on a tiny random generator saved as speech-resynthesis does: a .pt whose
"generator" state dict has weight-normed convs (weight_g/weight_v), plus its JSON config."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from models.config import VocoderConfig
from models.factory import ModelLoadError, build_vocoder
from models.interfaces import Vocoder
from models.vocoder import CodeGenerator

BASE = {
    "resblock": "1", "upsample_rates": [4, 4], "upsample_kernel_sizes": [8, 8],
    "upsample_initial_channel": 16, "resblock_kernel_sizes": [3, 5],
    "resblock_dilation_sizes": [[1, 3], [1, 3]], "num_embeddings": 20, "embedding_dim": 8,
    "model_in_dim": 8, "sampling_rate": 16000,
}
DUR = {"dur_predictor_params": {  # as published: no dur_prediction key (the caller decides)
    "encoder_embed_dim": 8, "var_pred_hidden_dim": 8, "var_pred_kernel_size": 3,
    "var_pred_dropout": 0.5}}
HOP = 16


def save_published(tmp_path, h: dict, seed: int = 0, parametrized: bool = False):
    """Build the generator, apply torch's weight norm like the training code does (old-style
    `weight_g`/`weight_v`, or newer torch's `parametrizations.weight.original0/1`), save
    {"generator": state_dict} and the config; return (ckpt, config, reference module)."""
    torch.manual_seed(seed)
    gen = CodeGenerator(h)
    convs = [gen.conv_pre, gen.conv_post, *gen.ups]
    for block in gen.resblocks:
        convs += [*block.convs1, *block.convs2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for c in convs:
            if parametrized:
                torch.nn.utils.parametrizations.weight_norm(c)
            else:
                torch.nn.utils.weight_norm(c)
    with torch.no_grad():  # g != ||v||, so folding must really use g
        for c in convs:
            g = c.parametrizations.weight.original0 if parametrized else c.weight_g
            g.mul_(1.5)
    gen.eval()
    state = gen.state_dict()
    g_key = "parametrizations.weight.original0" if parametrized else "weight_g"
    assert any(k.endswith(g_key) for k in state)
    tmp_path.mkdir(parents=True, exist_ok=True)
    ckpt, conf = tmp_path / "g_00400000.pt", tmp_path / "config.json"
    torch.save({"generator": state, "steps": 400000}, ckpt)
    conf.write_text(json.dumps(h))
    return ckpt, conf, gen


def load(ckpt, conf, **kw):
    return build_vocoder(VocoderConfig(kind="hifigan", checkpoint=str(ckpt),
                                       config_path=str(conf), **kw))


@pytest.mark.parametrize("parametrized", [False, True])
def test_decode_length_determinism_and_reference(tmp_path, parametrized):
    ckpt, conf, ref = save_published(tmp_path, BASE, parametrized=parametrized)
    voc = load(ckpt, conf)
    assert isinstance(voc, Vocoder) and voc.sample_rate == 16000
    units = [1, 5, 5, 7, 19, 0, 3]
    wave = voc.decode(units)
    assert wave.dtype == np.float32 and wave.shape == (len(units) * HOP,)
    assert np.abs(wave).max() <= 1.0 and np.abs(wave).max() > 0
    assert np.array_equal(voc.decode(units), wave)
    with torch.no_grad():
        want = ref(torch.tensor([units]))[0].numpy()
    np.testing.assert_allclose(wave, want, atol=1e-5)
    assert voc.decode([]).shape == (0,)
    with pytest.raises(ValueError):
        voc.decode([20])


def test_duration_prediction(tmp_path):
    """A published config has `dur_predictor_params` but no `dur_prediction` key (TWIST asks
    for durations when it calls the vocoder): by default durations are predicted (they were
    not: one frame per deduplicated unit, speech too short)."""
    ckpt, conf, ref = save_published(tmp_path, {**BASE, **DUR})
    voc = load(ckpt, conf)
    units = [2, 4, 6, 8]
    with torch.no_grad():
        log_dur = ref.dur_predictor(ref.dict(torch.tensor([units])))
    dur = torch.clamp(torch.round(torch.exp(log_dur) - 1).long(), min=1)
    wave = voc.decode(units)
    assert wave.shape == (int(dur.sum()) * HOP,)
    with torch.no_grad():
        want = ref(torch.tensor([units]), dur_prediction=True)[0].numpy()
    np.testing.assert_allclose(wave, want, atol=1e-5)
    assert int(dur.sum()) != len(units)  # the durations really change the length
    assert load(ckpt, conf, dur_prediction=False).decode(units).shape == (len(units) * HOP,)
    plain, plain_conf, _ = save_published(tmp_path / "plain", BASE)
    assert load(plain, plain_conf).decode(units).shape == (len(units) * HOP,)
    with pytest.raises(ModelLoadError, match="dur_prediction is true but .* dur_predictor_params"):
        load(plain, plain_conf, dur_prediction=True)


def test_load_errors_name_the_file(tmp_path):
    ckpt, conf, _ = save_published(tmp_path, BASE)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**BASE, "num_embeddings": 30}))
    with pytest.raises(ModelLoadError, match="g_00400000.pt does not match .*other.json"):
        load(ckpt, other)
    torch.save({"model": {}}, tmp_path / "nogen.pt")
    with pytest.raises(ModelLoadError, match="nogen.pt has no 'generator'"):
        load(tmp_path / "nogen.pt", conf)
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"num_embeddings": 20}))
    with pytest.raises(ModelLoadError, match="partial.json lacks"):
        load(ckpt, partial)
    with pytest.raises(ModelLoadError, match="does not exist"):
        load(tmp_path / "missing.pt", conf)
