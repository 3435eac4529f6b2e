"""The mini vocoder gives a continuation the same wave whatever it is vocoded with.

Why it matters: the loop vocodes continuations in batches whose make-up depends on settings
(prompts per sampling call, group size); if a wave depended on its neighbours, the ASR would
hear other words and a setting that only changes speed would change the judged results."""

from __future__ import annotations

import numpy as np
import pytest

from models.mini import vocoder as voc


@pytest.fixture(scope="module")
def vocoder(tmp_path_factory):
    rng = np.random.default_rng(0)
    k = 12
    units = [rng.integers(0, k, size=n).repeat(2) for n in (40, 55, 70)]
    frames = [rng.normal(-4.0, 1.0, size=(len(u), 80)).astype(np.float32) for u in units]
    return voc.train(units, frames, k, tmp_path_factory.mktemp("vocoder"), gl_iters=4)


def test_a_wave_does_not_depend_on_its_batch(vocoder):
    rng = np.random.default_rng(1)
    conts = [list(rng.integers(0, vocoder.num_units, size=n)) for n in (3, 17, 40, 41, 90, 150)]
    conts.append([])  # nothing to say: an empty wave, and the others unaffected
    alone = [vocoder.decode(u) for u in conts]
    together = vocoder.decode_batch(conts)
    shuffled_order = [4, 0, 6, 2, 5, 1, 3]
    shuffled = vocoder.decode_batch([conts[i] for i in shuffled_order])
    pairs = vocoder.decode_batch(conts[4:6])
    for i, wave in enumerate(alone):
        assert wave.dtype == np.float32
        assert np.array_equal(together[i], wave), i
        assert np.array_equal(shuffled[shuffled_order.index(i)], wave), i
    assert np.array_equal(pairs[0], alone[4]) and np.array_equal(pairs[1], alone[5])
    assert len(alone[-1]) == 0 and all(len(w) > 0 for w in alone[:-1])
    # each wave is as long as its own mel, not its bucket's padding
    for u, w in zip(conts, alone, strict=True):
        assert len(w) == len(vocoder.mel_frames(u)) * voc.audio.HOP


def test_buckets_are_fixed_multiples():
    assert voc.bucket_frames(1) == 25
    assert voc.bucket_frames(25) == 25
    assert voc.bucket_frames(26) == 50
    assert all(voc.bucket_frames(n) >= n for n in range(1, 400))
