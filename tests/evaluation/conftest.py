"""Honest test doubles for the speech protocols, a tiny benchmark tree and a store.

- `LevelTokenizer` (SpeechTokenizer protocol): audio is a lossless "unit code", each unit a block
  of BLOCK samples at level (u+1)/(K+1), so wav files round-trip to known units.
- `UnigramLM` (UnitLM protocol + the HFUnitLM adapter API): log p(u) from a fixed table; an
  adapter directory holds a JSON `{"bias": {unit: delta}}` added to the table (renormalized).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from models.interfaces import LogProb, dedup

K = 8
BLOCK = 16
SR = 16000


def units_to_wave(units: list[int]) -> np.ndarray:
    return np.concatenate([np.full(BLOCK, (u + 1) / (K + 1), np.float32) for u in units])


class LevelTokenizer:
    sample_rate = SR
    vocab_size = K

    def __init__(self):
        self.calls = 0

    def encode(self, wave, sample_rate, deduplicate=True):
        self.calls += 1
        levels = np.asarray(wave, float)[::BLOCK]
        units = [int(round(x * (K + 1))) - 1 for x in levels]
        return dedup(units) if deduplicate else units


class UnigramLM:
    """log p(u) = log softmax(table + bias_adapter)[u]; the first unit is not scored (no BOS)."""

    vocab_size = K

    def __init__(self):
        # units 0..3 likely, 4..7 unlikely
        self.table = np.array([2.0, 2.0, 2.0, 2.0, 0.0, 0.0, 0.0, 0.0])
        self.adapters: dict[str, np.ndarray] = {}
        self.calls: list[tuple[int, str | None]] = []

    def load_adapter(self, name, path):
        if name in self.adapters:
            return
        bias = json.loads((Path(path) / "adapter.json").read_text())["bias"]
        vec = np.zeros(K)
        for u, d in bias.items():
            vec[int(u)] = d
        self.adapters[name] = vec

    def _logp(self, adapter):
        t = self.table + (self.adapters[adapter] if adapter else 0.0)
        return t - math.log(np.exp(t).sum())

    def logprob(self, sequences, adapter=None):
        self.calls.append((len(sequences), adapter))
        lp = self._logp(adapter)
        out = []
        for s in sequences:
            per = [float(lp[u]) for u in s[1:]]
            out.append(LogProb(float(sum(per)), per))
        return out

    def sample(self, prompts, params, adapter=None):  # not used by evaluation
        raise NotImplementedError


def write_benchmark(root: Path, name: str, split: str, pairs: list[tuple[str, list, list]],
                    header: str = "filename voice type id correct") -> None:
    import soundfile as sf

    d = root / name
    (d / split).mkdir(parents=True, exist_ok=True)
    lines = [header]
    ncol = len(header.split())
    for pid, good, bad in pairs:
        for correct, units in ((1, good), (0, bad)):
            fname = f"{split}_{pid}_{correct}"
            sf.write(d / split / f"{fname}.wav", units_to_wave(units), SR, subtype="FLOAT")
            fields = {"filename": fname, "id": pid, "correct": str(correct)}
            row = [fields.get(h, "x") for h in header.split()]
            assert len(row) == ncol
            lines.append(" ".join(row))
    (d / f"{split}.item").write_text("\n".join(lines) + "\n")


# Expected outcomes under the base table (log p: likely units -1.513, unlikely -3.513):
#   p0: good all-likely vs bad all-unlikely (same length)           -> sum 1, norm 1
#   p1: good short with one unlikely unit vs bad long all-likely    -> sum 1 (-3.5 > -25.7),
#       norm 0 (mean -3.5 < -1.5): the length-normalized metric differs
#   p2: same scores (mirror sequences)                              -> 0.5, 0.5
#   p3: good unlikely vs bad likely                                 -> 0, 0
PAIRS = [
    ("p0", [0, 1, 2, 3], [4, 5, 6, 7]),
    ("p1", [0, 4], [0, 1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2]),
    ("p2", [1, 2, 1], [2, 1, 2]),
    ("p3", [4, 5, 4], [1, 2, 1]),
]


@pytest.fixture
def eval_rt(tmp_path):
    from backend.config import Settings
    from backend.runtime import Runtime

    rt = Runtime(Settings(data_dir=tmp_path / "data"))
    rt._components["tokenizer"] = LevelTokenizer()
    rt._components["unit_lm"] = UnigramLM()
    root = rt.settings.data_dir / "benchmarks"
    write_benchmark(root, "sblimp", "dev", PAIRS)
    write_benchmark(root, "swuggy", "dev", PAIRS[:2] + PAIRS[3:],
                    header="filename voice frequency word phones id correct")
    yield rt
    rt.close()
