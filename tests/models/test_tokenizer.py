"""HubertKMeansTokenizer on a tiny random HuBERT (HF dir) + k-means as joblib KMeans and .npy."""

from __future__ import annotations

import joblib
import numpy as np
import pytest
import torch

from models.config import TokenizerConfig
from models.factory import ModelLoadError, build_tokenizer
from models.interfaces import SpeechTokenizer, dedup

HIDDEN, LAYER, N_CLUSTERS = 32, 1, 8


@pytest.fixture(scope="module")
def hubert(tmp_path_factory):
    """(HuBERT dir, joblib KMeans path, npy path, the fitted KMeans)."""
    from sklearn.cluster import KMeans
    from transformers import HubertConfig, HubertModel

    root = tmp_path_factory.mktemp("hubert")
    torch.manual_seed(0)
    cfg = HubertConfig(
        hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        conv_dim=(32, 32, 32), conv_stride=(5, 4, 4), conv_kernel=(10, 8, 8),
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
    )
    model = HubertModel(cfg).eval()
    model.save_pretrained(root / "hubert")
    with torch.no_grad():
        feats = model(torch.from_numpy(_wave(1.0, seed=1))[None], output_hidden_states=True)
    x = feats.hidden_states[LAYER][0].numpy()
    km = KMeans(n_clusters=N_CLUSTERS, n_init=1, random_state=0).fit(x)
    joblib.dump(km, root / "km.bin")
    np.save(root / "km.npy", km.cluster_centers_.astype(np.float32))
    return root / "hubert", root / "km.bin", root / "km.npy", km, model


def _wave(seconds: float, sr: int = 16000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * 220 * t) + 0.1 * rng.standard_normal(len(t))).astype(
        np.float32)


def _frames(n: int) -> int:
    """Frames out of the conv front end (kernels 10, 8, 8; strides 5, 4, 4) for n samples
    plus the 40 zeros on each side."""
    n += 80
    for k, st in ((10, 5), (8, 4), (8, 4)):
        n = (n - k) // st + 1
    return n


def _tok(hubert, kmeans=None, **kw):
    d, km_bin, _, _, _ = hubert
    return build_tokenizer(TokenizerConfig(kind="hubert", path=str(d),
                                           kmeans_path=str(kmeans or km_bin), layer=LAYER, **kw))


def _reference_units(hubert, wave: np.ndarray) -> list[int]:
    """Units as slamkit's HuBERT extractor makes them: the raw 16 kHz wave padded with 40
    zeros on each side, hidden_states[layer], the joblib k-means' predict."""
    _, _, _, km, model = hubert
    x = torch.nn.functional.pad(torch.from_numpy(wave)[None], (40, 40))
    with torch.no_grad():
        feats = model(x, output_hidden_states=True).hidden_states[LAYER][0].numpy()
    return km.predict(feats).tolist()


def test_units_are_nearest_centroids(hubert):
    tok = _tok(hubert)
    assert isinstance(tok, SpeechTokenizer) and tok.vocab_size == N_CLUSTERS
    wave = _wave(0.5, seed=3)
    units = tok.encode(wave, 16000, deduplicate=False)
    assert len(units) == _frames(len(wave))
    assert units == _reference_units(hubert, wave)
    assert tok.encode(wave, 16000) == dedup(units)


def test_front_end_matches_the_reference_whatever_preprocessor_config_says(hubert, tmp_path):
    """slamkit feeds the raw wave padded by 40 samples a side; a preprocessor_config.json
    with do_normalize (as HF directories may carry) must not change the units (it did, and
    the padding was missing: units differed from the reference's for the same weights)."""
    import json
    import shutil

    d = tmp_path / "hubert_with_preprocessor"
    shutil.copytree(hubert[0], d)
    (d / "preprocessor_config.json").write_text(json.dumps(
        {"do_normalize": True, "feature_size": 1, "sampling_rate": 16000}))
    wave = 0.05 * _wave(0.7, seed=9) + 0.02  # far from zero mean, unit variance
    tok = build_tokenizer(TokenizerConfig(kind="hubert", path=str(d),
                                          kmeans_path=str(hubert[1]), layer=LAYER))
    want = _reference_units(hubert, wave)
    assert tok.encode(wave, 16000, deduplicate=False) == want
    normed = _tok(hubert, normalize=True).encode(wave, 16000, deduplicate=False)
    z = (wave - wave.mean()) / np.sqrt(wave.var() + 1e-5)
    assert normed == _reference_units(hubert, z.astype(np.float32))


def test_npy_and_joblib_agree(hubert):
    wave = _wave(0.4, seed=4)
    assert _tok(hubert).encode(wave, 16000) == _tok(hubert, hubert[2]).encode(wave, 16000)


def test_batch_equals_single_and_resamples(hubert):
    tok = _tok(hubert)
    waves = [_wave(0.3, seed=5), _wave(0.5, seed=6), _wave(0.3, seed=7)]
    assert tok.encode_batch(waves, 16000) == [tok.encode(w, 16000) for w in waves]
    w8k = _wave(0.5, sr=8000, seed=8)
    units = tok.encode(w8k, 8000, deduplicate=False)
    assert len(units) == _frames(8000)
    assert tok.encode(w8k, 8000) == tok.encode(w8k, 8000)


def test_load_errors(hubert, tmp_path):
    np.save(tmp_path / "bad.npy", np.zeros((4, HIDDEN + 1), np.float32))
    with pytest.raises(ModelLoadError, match=r"bad.npy: centroid dim 33 != HuBERT hidden size 32"):
        _tok(hubert, tmp_path / "bad.npy")
    with pytest.raises(ModelLoadError, match="k-means centroids: .*missing.npy does not exist"):
        _tok(hubert, tmp_path / "missing.npy")
    with pytest.raises(ModelLoadError, match="layer 12 requested but the model has 2 layers"):
        d, km_bin = hubert[0], hubert[1]
        build_tokenizer(TokenizerConfig(kind="hubert", path=str(d), kmeans_path=str(km_bin),
                                        layer=12))
    with pytest.raises(ModelLoadError, match="config.json"):
        build_tokenizer(TokenizerConfig(kind="hubert", path=str(tmp_path), kmeans_path="x.npy"))
