"""The positive control of the loop (issue 16): with a judge whose preference is trivially
learnable (a continuation scores 5 when its transcript has one given word, else 1), one round
of the real machinery (sample -> vocode -> ASR -> judge -> pairs -> DPO + LoRA) must raise the
share of *fresh* held-out continuations that have the word, with a 95 % CI above zero. If it
does not, the machinery has a defect (the adapter not applied at sampling, pairs tokenised
differently from sampling, the loss on the wrong tokens...), whatever a real judge says.

On the shipped full world's LM, with STUDIO_SLOW=1 (the same procedure measured 2026-12-01 on
a full world of seed 0, code hash 0018473d40ae, 275 pairs, word "big": share 0.260 -> 0.353,
+0.093 [+0.072, +0.116] over 87 dev prompts x 10). The test bundle (tiny preset: 24 training
prompts, so at most 24 pairs) is too small to show it: +0.044 [-0.05, ...] over 16 prompts x 10,
so there is no always-run variant.
"""

from __future__ import annotations

import collections
import statistics

from models.interfaces import Score
from models.mini import world
from tests.loop.conftest import slow


class WordJudge:
    """5 when the transcript has `word`, else 1: a preference a round can surely learn."""

    def __init__(self, word: str, name: str):
        self.word, self.name = word, name
        self.prompt_version = f"control-{word}"

    def score(self, prompt_text: str, continuation_text: str) -> Score:
        has = self.word in world.words(continuation_text or "")
        return Score(5.0 if has else 1.0, rationale=f"has {self.word}: {has}", judge=self.name,
                     prompt_version=self.prompt_version)


def _transcripts(rt, version_id: int, split: str, seed: int) -> list[tuple[int, str]]:
    from sqlalchemy import select

    from db.schema import Prompt, Sample

    with rt.store.read() as s:
        return list(s.execute(
            select(Sample.prompt_id, Sample.transcript).join(Prompt, Prompt.id == Sample.prompt_id)
            .where(Sample.model_version_id == version_id, Sample.seed == seed,
                   Prompt.split == split).order_by(Sample.id)).all())


def _share_per_prompt(rows, word: str) -> dict[int, float]:
    per = collections.defaultdict(list)
    for pid, text in rows:
        per[pid].append(float(word in world.words(text or "")))
    return {p: statistics.fmean(v) for p, v in per.items()}


def positive_control(rt, heldout_n: int = 10, heldout_seed: int = 1000) -> dict:
    """Choose a word about a quarter of baseline samples have, train one round on the word
    judge, measure the word's share in fresh held-out samples of baseline and aligned."""
    from backend import registry
    from backend.loop import generate, rounds, transcribe
    from bench.loop import paired_bootstrap

    base = registry.ensure_baseline(rt)
    g = rt.settings.generation
    generate.generate(rt, base.id, split=g.train_split, n=g.n, seed=g.seed, limit=g.max_prompts)
    transcribe.transcribe(rt, version=base.id)
    rows = _transcripts(rt, base.id, g.train_split, g.seed)
    counts = collections.Counter(w for _, t in rows for w in set(world.words(t or "")))
    candidates = [(w, k / len(rows)) for w, k in counts.items()
                  if 0.1 <= k / len(rows) <= 0.4 and len(w) >= 3 and w not in world.NAMES]
    assert candidates, "no word in 10-40 % of baseline samples"
    word = min(candidates, key=lambda ws: abs(ws[1] - 0.25))[0]
    name = rt.settings.models.judges[0].name
    rt._components[f"judge:{name}"] = WordJudge(word, name)  # the round's only judge

    res = rounds.run_rounds(rt, base.name, "ai", rounds=1, evaluate=False)
    assert res["rounds"], res["stopped_early"]
    aligned = registry.get_version(rt, res["final_version"])
    shares = {}
    for v in (base, aligned):
        generate.generate(rt, v.id, split=g.heldout_split, n=heldout_n, seed=heldout_seed)
        transcribe.transcribe(rt, version=v.id)
        shares[v.name] = _share_per_prompt(
            _transcripts(rt, v.id, g.heldout_split, heldout_seed), word)
    return {"word": word, "n_pairs": res["rounds"][0]["n_pairs"],
            "metrics": res["rounds"][0]["metrics"],
            "share": paired_bootstrap(shares[base.name], shares[aligned.name])}


def _runtime(settings):
    from backend import prompts
    from backend.runtime import Runtime

    rt = Runtime(settings)
    prompts.import_bundle_prompts(rt)
    return rt


@slow
def test_positive_control_on_the_full_world(tmp_path_factory):
    from backend.config import Settings
    from backend.world import build_at

    data = tmp_path_factory.mktemp("full") / "data"
    build_at(data / "bundle", "full", 0)
    rt = _runtime(Settings(data_dir=data, world="mini"))
    try:
        res = positive_control(rt)
    finally:
        rt.close()
    assert res["share"]["ci"][0] > 0, res
