"""How much a mini-world unit LM depends on frame phase: nats/unit on training stories as the
LM was trained (each sentence tokenized from its own recording, so starting on a frame boundary)
vs the same stories tokenized as one recording (sentences at arbitrary sub-frame offsets, as in
the benchmarks and in any continuous speech). A large gap means the LM memorised unit strings.

    .venv/bin/python -m bench.lm_phase --bundle data/bundle [--stories 40]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--stories", type=int, default=40)
    ap.add_argument("--gap-ms", type=float, default=50.0, help="silence between sentences")
    a = ap.parse_args()
    from models.interfaces import dedup
    from models.mini import audio, world
    from models.mini import unit_lm as lm_mod
    from models.mini.tokenizer import MiniTokenizer

    m = json.loads((a.bundle / "manifest.json").read_text())
    cfg, seed = m["preset_config"], m["seed"]
    tok = MiniTokenizer(a.bundle / "tokenizer")
    lm = lm_mod.load(a.bundle / "unit_lm")
    stories = world.generate(cfg["n_train"], 0, 0, seed, cfg["noise"])["train"]
    rng = random.Random(1)
    gap = np.zeros(int(a.gap_ms * audio.SR / 1000), np.float32)

    def speak(text: str, voice: str) -> np.ndarray:
        return audio.synthesize(text, voice, audio.speed_for(text, voice, seed))

    per_sentence, one_recording = [], []
    for s in rng.sample([x for x in stories if x.coherent], a.stories):
        voice = rng.choice(cfg["voices"])
        waves = [speak(x, voice) for x in s.sentences]
        per_sentence.append(dedup([u for w in waves for u in tok.encode(w, audio.SR)]))
        joined = np.concatenate([x for w in waves for x in (w, gap)][:-1])
        one_recording.append(list(tok.encode(joined, audio.SR)))
    for name, seqs in (("per-sentence (as trained)", per_sentence),
                       ("one recording", one_recording)):
        lp = lm_mod.logprobs(lm, seqs)
        print(f"{name:26s} {-sum(lp) / sum(map(len, seqs)):.3f} nats/unit "
              f"({np.mean([len(x) for x in seqs]):.0f} units/story)")


if __name__ == "__main__":
    main()
