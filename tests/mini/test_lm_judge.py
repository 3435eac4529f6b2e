"""The held-out LM judge (models/mini/lm_judge.py) on generated held-out material.

It is learned from generated text only, so these check behaviour, not tables: true continuations
beat shuffled ones, a wrong character or place costs, content-free endings stay in the middle,
gibberish is 1, and it agrees (in rank) with MiniJudge without being it. No bundle needed; the
judge learns itself in ~3 s, and the whole module runs in a few seconds.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter

import pytest
from scipy.stats import spearmanr

from models.config import JudgeConfig
from models.interfaces import Judge
from models.mini import lm_judge, world

SEED = 2718  # held-out material: none of the judge's own seeds


@pytest.fixture(scope="module")
def judge():
    t = time.perf_counter()
    j = lm_judge.MiniLMJudge()
    print(f"\nmini-lm judge learned and calibrated in {time.perf_counter() - t:.2f} s; "
          f"fit {j.fit}; calibration gamma={j.calibration['gamma']} "
          f"thresholds={j.calibration['thresholds']} hist={j.calibration['hist']}")
    return j


@pytest.fixture(scope="module")
def held():
    return [s for s in lm_judge.corpus(SEED, 400) if len(s.sentences) >= 3]


def _v(judge, p: str, c: str) -> float:
    return judge.score(p, c).value


def _swap_pronouns(text: str) -> str:
    m = {"she": "he", "he": "she", "She": "He", "He": "She"}
    return " ".join(m.get(w, w) for w in text.split())


def _pairs(held, n, seed):
    """(prompt, true next sentence, another topic's sentence at the same position); the next
    sentence is a content sentence (see / event / act), never the ending."""
    rng = random.Random(seed)
    out = []
    for s in held[:n]:
        k = rng.randint(1, min(3, len(s.sentences) - 1))
        o = rng.choice([x for x in held if x.topic != s.topic and len(x.sentences) > k])
        out.append((" ".join(s.sentences[:k]), s.sentences[k], o.sentences[k], s))
    return out


def test_protocol_and_evidence(judge):
    assert isinstance(judge, Judge)
    assert judge.name == "mini-lm-judge" and judge.prompt_version == "mini-lm-v1"
    sc = judge.score("Anna went to the garden to plant some seeds.",
                     "She saw a small rose in the garden.")
    assert sc.ok and sc.value in (1.0, 2.0, 3.0, 4.0, 5.0)
    assert sc.judge == "mini-lm-judge" and sc.prompt_version == "mini-lm-v1"
    raw = json.loads(sc.raw)
    assert {"fluency", "pmi", "relevance", "z", "thresholds", "words"} <= set(raw)
    assert [w for w, _, _ in raw["words"]] == world.words("She saw a small rose in the garden.")
    assert "PMI" in sc.rationale and sc.rationale.endswith(f"Score: {int(sc.value)}")


def test_true_beats_shuffled(judge, held):
    pairs = _pairs(held, 200, 0)
    scores = [(judge.score(p, t), judge.score(p, o)) for p, t, o, _ in pairs]
    wins = [a.value > b.value for a, b in scores]
    z_wins = [json.loads(a.raw)["z"] > json.loads(b.raw)["z"] for a, b in scores]
    hist = [dict(sorted(Counter(x[i].value for x in scores).items())) for i in (0, 1)]
    print(f"\ntrue > shuffled: {sum(wins)}/{len(wins)} by score, {sum(z_wins)}/{len(z_wins)} by "
          f"z; scores of true {hist[0]}, of shuffled {hist[1]}")
    assert len(pairs) == 200 and sum(wins) / len(wins) >= 0.90
    assert sum(z_wins) / len(z_wins) >= 0.97


def test_wrong_pronoun_and_other_topic_cost(judge, held):
    p = "Anna went to the garden to plant some seeds."
    good = _v(judge, p, "She saw a small rose in the garden.")
    assert good >= 4
    assert _v(judge, p, "He saw a small rose in the garden.") < good
    assert _v(judge, p, "She saw a small crab in the beach.") < good
    assert _v(judge, p, "She saw a small crab in the beach.") <= 2
    p2 = "Tom went to the kitchen to bake a cake."
    good2 = _v(judge, p2, "He cracked the egg on the table.")
    assert _v(judge, p2, "She cracked the egg on the table.") < good2
    assert _v(judge, p2, "He followed the crab by the waves.") < good2

    rng = random.Random(1)
    hist: dict[str, Counter] = {"true": Counter(), "pronoun": Counter(), "topic": Counter()}
    res: dict[str, list] = {"pronoun": [], "topic": []}  # (score lower, score higher, z lower)
    for p, t, _, s in _pairs(held, 150, 2):
        k = s.sentences.index(t)
        other = rng.choice([x for x in sorted(world.TOPICS) if x != s.topic])
        # the same sentence of the same story shape, about another place (test-side tables only)
        variants = {"topic": world.body(random.Random(k), other, world.NAMES[s.name], 4,
                                        s.name)[k - 1]}
        if (swapped := _swap_pronouns(t)) != t:
            variants["pronoun"] = swapped
        a = judge.score(p, t)
        hist["true"][a.value] += 1
        for kind, c in variants.items():
            b = judge.score(p, c)
            hist[kind][b.value] += 1
            res[kind].append((b.value < a.value, b.value > a.value,
                              json.loads(b.raw)["z"] < json.loads(a.raw)["z"]))
    print("\n" + "\n".join(f"{k:8s} {dict(sorted(c.items()))}" for k, c in hist.items()))
    for kind, r in res.items():
        below, above, z_below = (sum(x[i] for x in r) for i in range(3))
        print(f"{kind}: score lower than the true sentence's {below}/{len(r)}, higher {above}, "
              f"z lower {z_below}/{len(r)}")
        assert z_below == len(r) and above == 0, kind
    assert sum(x[0] for x in res["topic"]) == len(res["topic"])
    assert sum(x[0] for x in res["pronoun"]) / len(res["pronoun"]) >= 0.85


def test_content_free_endings_stay_in_the_middle(judge, held):
    p = "Anna went to the garden to plant some seeds."
    assert _v(judge, p, "She was happy and went home.") <= 3
    assert _v(judge, p, "She was happy and went home.") < _v(
        judge, p, "She saw a small rose in the garden.")
    seen = set()
    generic, true2 = Counter(), Counter()
    below = []
    for s in held:  # every distinct held-out opening
        if s.sentences[0] in seen:
            continue
        seen.add(s.sentences[0])
        pron = world.PRON[world.NAMES[s.name]][0]
        v_true = _v(judge, s.sentences[0], s.sentences[1])  # its true on-topic sentence 2
        true2[v_true] += 1
        for ending in (f"{pron} was happy and went home",
                       f"{pron.title()} was happy and went home.",
                       f"{pron} was happy and went home {pron} smiled and went home"):
            v = _v(judge, s.sentences[0], ending)
            generic[v] += 1
            below.append(v < v_true)
        generic[_v(judge, s.sentences[0], f"{pron} smiled and went home")] += 1
    print(f"\n{len(seen)} openings: true sentence 2 {dict(sorted(true2.items()))}; "
          f"content-free endings {dict(sorted(generic.items()))}; "
          f"ending < sentence 2 in {sum(below)}/{len(below)}")
    assert len(seen) >= 100
    assert generic[5] == 0 and generic[4] <= 0.02 * sum(generic.values())
    assert (true2[4] + true2[5]) / sum(true2.values()) >= 0.95
    assert sum(below) / len(below) >= 0.95


def test_garbage_is_one(judge, held):
    p = held[0].sentences[0]
    rng = random.Random(3)
    for c in ("tn hn s", "blorf zint quag mip florp", "", "she saw",
              " ".join(world.nonword(w, rng) for w in world.words(held[0].sentences[1])),
              "the the the the the the", "rose she the in a saw garden small"):
        assert _v(judge, p, c) == 1, c
    # ASR near-misses are snapped to the lexicon, not treated as gibberish
    noisy = judge.score("Anna went to the garden to plant some seeds.",
                        "she saw a smal rose neer the fense she pickd the rose")
    assert noisy.value >= 4, noisy.rationale


def test_deterministic_and_saved_dir(judge, held, tmp_path):
    from models.factory import build_judge

    items = [(p, c) for p, t, o, _ in _pairs(held, 20, 4) for c in (t, o, _swap_pronouns(t))]
    first = [judge.score(p, c) for p, c in items]
    assert [judge.score(p, c) for p, c in items] == first
    other = build_judge(JudgeConfig(kind="mini-lm"))  # a second, independently learned judge
    assert isinstance(other, lm_judge.MiniLMJudge) and other.name == "mini-lm-judge"
    assert other.prompt_version == "mini-lm-v1"
    assert [other.score(p, c) for p, c in items] == first
    saved = judge.save(tmp_path / "lmj")  # what lm_judge.build(dir) writes, without relearning
    assert {p.name for p in (tmp_path / "lmj").iterdir()} == {"config.json", "model.npz"}
    loaded = build_judge(JudgeConfig(kind="mini-lm", name="lm2", path=str(tmp_path / "lmj")))
    assert loaded.name == "lm2" and saved.calibration == judge.calibration
    assert [(s.value, s.rationale) for s in (loaded.score(p, c) for p, c in items)] == \
        [(s.value, s.rationale) for s in first]


def test_missing_dir_is_a_load_error(tmp_path):
    from models.device import ModelLoadError
    from models.factory import build_judge

    with pytest.raises(ModelLoadError, match="no config.json"):
        build_judge(JudgeConfig(kind="mini-lm", path=str(tmp_path / "nope")))
    assert JudgeConfig(kind="mini-lm").name == "mini-lm-judge"
    assert JudgeConfig(kind="mini-lm", name="x").name == "x"
    assert JudgeConfig().name == "mini-judge"


def test_rank_correlation_with_mini_judge(judge, held, tmp_path):
    from models.mini import judge as mini_judge

    knowledge = world.generate(3000, 0, 0, SEED + 1000, noise_frac=0.0)["train"]
    mj = mini_judge.build(tmp_path / "mj", [s.text for s in knowledge])
    rng = random.Random(5)
    rows = []
    for p, t, o, s in _pairs(held, 100, 6):
        salad = world.words(t)
        rng.shuffle(salad)
        for kind, c in (("true", t), ("shuffled", o), ("pronoun", _swap_pronouns(t)),
                        ("scrambled", " ".join(salad)),
                        ("generic", f"{world.PRON[world.NAMES[s.name]][0]} was happy and went "
                                    "home")):
            rows.append((kind, mj.score(p, c).value, judge.score(p, c).value))
    rho = spearmanr([r[1] for r in rows], [r[2] for r in rows]).statistic
    by_kind = {k: (round(sum(r[1] for r in rows if r[0] == k) / 100, 2),
                   round(sum(r[2] for r in rows if r[0] == k) / 100, 2))
               for k in dict.fromkeys(r[0] for r in rows)}
    print(f"\nSpearman(MiniJudge, MiniLMJudge) = {rho:.3f} on {len(rows)} continuations; "
          f"mean (MiniJudge, MiniLMJudge) by kind: {by_kind}")
    for k in by_kind:
        print(f"  {k:9s} MiniJudge {dict(sorted(Counter(r[1] for r in rows if r[0] == k).items()))}"
              f"  MiniLMJudge {dict(sorted(Counter(r[2] for r in rows if r[0] == k).items()))}")
    assert rho > 0.5
    assert by_kind["generic"][1] < by_kind["generic"][0]  # where the two judges should differ
