"""backend.leaderboard on a real SQLite store filled through the SQLAlchemy models."""

from __future__ import annotations

import math
import uuid

import numpy as np
import pytest

from backend import leaderboard, registry
from backend.config import RatingConfig, Settings
from backend.runtime import Runtime
from db.schema import EvalResult, Judgment, Prompt, Sample, User


@pytest.fixture
def rt(tmp_path):
    settings = Settings(data_dir=tmp_path / "data",
                        rating=RatingConfig(leaderboard_min_votes=5,
                                            leaderboard_preliminary_votes=30,
                                            bootstrap_resamples=300))
    r = Runtime(settings)
    yield r
    r.close()


class World:
    def __init__(self, rt, tmp_path):
        self.rt = rt
        self.base = registry.create_baseline(rt, "base", "ref")
        src = tmp_path / "ad"
        src.mkdir()
        (src / "adapter_config.json").write_text("{}")
        self.a1 = registry.derive_aligned(rt, "base", src, 1, name="a1")
        self.a2 = registry.derive_aligned(rt, "a1", src, 2, name="a2")
        self.users = []
        with rt.store.session() as s:
            for k in range(3):
                u = User(name=f"r{k}", password_hash="x", role="rater")
                s.add(u)
                s.flush()
                self.users.append(u.id)
        self._k = 0

    def prompt(self):
        key = uuid.uuid4().hex
        with self.rt.store.session() as s:
            p = Prompt(audio_path=f"/{key}.wav", audio_sha256=key, duration_s=1.0, split="dev")
            s.add(p)
            s.flush()
            return p.id

    def sample(self, version, prompt):
        self._k += 1
        with self.rt.store.session() as s:
            smp = Sample(prompt_id=prompt, model_version_id=version.id, seed=self._k,
                         units=[1, 2, 3])
            s.add(smp)
            s.flush()
            return smp.id

    def ab(self, sa, sb, choice, user=0, flagged=False):
        self._k += 1
        with self.rt.store.session() as s:
            s.add(Judgment(kind="ab", rater=f"user:{self.users[user]}", task_key=f"t{self._k}",
                           sample_id=sa, sample_b_id=sb, choice=choice,
                           user_id=self.users[user], flagged=flagged,
                           flag_reason="admin" if flagged else None))

    def mos(self, sid, value, user=0, aspect="meaningfulness", flagged=False):
        self._k += 1
        with self.rt.store.session() as s:
            s.add(Judgment(kind="mos", aspect=aspect, rater=f"user:{self.users[user]}",
                           task_key=f"m{self._k}", sample_id=sid, value=value,
                           user_id=self.users[user], flagged=flagged,
                           flag_reason="admin" if flagged else None))

    def ai(self, sid, value, judge="j1", error=None, prompt_version="v1", raw=None):
        self._k += 1
        with self.rt.store.session() as s:
            s.add(Judgment(kind="ai", rater=f"ai:{judge}@{prompt_version}", task_key=f"a{self._k}",
                           sample_id=sid, judge_name=judge, prompt_version=prompt_version,
                           value=value, error=error, raw=raw))


def test_win_rate_bt_and_listing_from_human_votes(rt, tmp_path):
    w = World(rt, tmp_path)
    # a1 vs base: 12 wins, 4 losses, 4 ties, 3 both_bad; half stored with base as sample A
    for k in range(23):
        p = w.prompt()
        sb, s1 = w.sample(w.base, p), w.sample(w.a1, p)
        outcome = ["win"] * 12 + ["loss"] * 4 + ["tie"] * 4 + ["both_bad"] * 3
        o = outcome[k]
        if k % 2:  # a1 stored as A
            w.ab(s1, sb, {"win": "A", "loss": "B", "tie": "tie", "both_bad": "both_bad"}[o])
        else:
            w.ab(sb, s1, {"win": "B", "loss": "A", "tie": "tie", "both_bad": "both_bad"}[o])
        # flagged votes (always for base) must not count anywhere
        w.ab(sb, s1, "A", user=1, flagged=True)
    # a2 has only 2 votes: not listed
    p = w.prompt()
    w.ab(w.sample(w.base, p), w.sample(w.a2, p), "B")
    w.ab(w.sample(w.base, p), w.sample(w.a2, p), "B")

    lb = leaderboard.leaderboard(rt, "human")
    names = [r["version"] for r in lb["rows"]]
    assert names == ["a1", "base"]
    assert lb["unlisted"] == [{"version": "a2", "n_judgments": 2}]
    a1 = lb["rows"][0]
    wr = a1["win_rate"]
    assert (wr["wins"], wr["losses"], wr["ties"]) == (12, 4, 4)
    assert wr["value"] == pytest.approx(14 / 20)
    assert wr["low"] < 0.7 < wr["high"]
    assert a1["both_bad"] == 3 and a1["n_judgments"] == 23 and a1["preliminary"]
    # BT with baseline pinned at 0: a1 - base ~ log(14/6) (ridge 0.01 shrinks it a hair;
    # a2's two wins over base barely move the base)
    assert a1["bt"]["value"] == pytest.approx(math.log(14 / 6), abs=0.02)
    assert a1["bt"]["low"] < a1["bt"]["value"] < a1["bt"]["high"]
    assert lb["rows"][1]["bt"]["value"] == 0.0


def test_ai_source_comparisons_mos_and_flagged(rt, tmp_path):
    w = World(rt, tmp_path)
    rng = np.random.default_rng(0)
    for _ in range(40):
        p = w.prompt()
        for v, mu in ((w.base, 2.0), (w.a1, 3.0), (w.a2, 4.0)):
            for _ in range(2):
                sid = w.sample(v, p)
                w.ai(sid, float(np.clip(np.round(mu + rng.normal(0, 0.7)), 1, 5)))
    # failed AI judgments and another judge
    w.ai(w.sample(w.a2, w.prompt()), None, error="timeout")
    sid = w.sample(w.base, w.prompt())
    w.ai(sid, 5.0, judge="j2")
    w.mos(sid, 4.0)
    w.mos(sid, 1.0, user=1, flagged=True)

    lb = leaderboard.leaderboard(rt, "j1@v1")
    assert [r["version"] for r in lb["rows"]] == ["a2", "a1", "base"]
    a2 = lb["rows"][0]
    assert a2["ai_score"]["n"] == 80 and 3.5 < a2["ai_score"]["value"] < 4.5
    assert a2["win_rate"]["n"] == 40 and a2["win_rate"]["value"] > 0.8
    assert lb["n_ai"] == 240
    assert not a2["preliminary"]
    # clearly apart: three ranks; the readable scale puts the baseline at 1000
    assert [r["rank"] for r in lb["rows"]] == [1, 2, 3]
    base_row = lb["rows"][2]
    assert base_row["score"]["value"] == 1000.0 and a2["score"]["value"] > 1100
    assert a2["score"]["value"] == pytest.approx(
        1000 + 400 / math.log(10) * a2["bt"]["value"])
    assert [r["parent"] for r in lb["rows"]] == ["a1", "base", None]
    m = lb["matrix"]
    assert m["versions"] == ["a2", "a1", "base"]
    assert m["share"][0][2] > 0.8 and m["share"][0][2] + m["share"][2][0] == pytest.approx(1)
    assert m["n"][0][2] == 40 and m["share"][1][1] is None

    all_ = leaderboard.leaderboard(rt, "all")
    base = next(r for r in all_["rows"] if r["version"] == "base")
    assert base["mos"]["meaningfulness"]["value"] == 4.0  # flagged 1.0 excluded
    assert base["mos"]["meaningfulness"]["n"] == 1
    assert all(1 <= r["ai_score"]["low"] <= r["ai_score"]["high"] <= 5 for r in all_["rows"])
    with pytest.raises(ValueError, match="unknown source"):
        leaderboard.leaderboard(rt, "nobody")


def test_ai_comparisons_one_per_prompt_and_pair():
    from backend.queries import AIScore

    rows = [AIScore("j@v1", v, p, sid, val) for val, v, p, sid in (
        (3.0, 1, 10, 100), (5.0, 1, 10, 101), (4.0, 2, 10, 102), (2.0, 1, 11, 103),
        (2.0, 2, 11, 104))]
    assert sorted(leaderboard.ai_comparisons(rows)) == [(1, 2, 0.5), (1, 2, 0.5)]


def test_agreement_ai_vs_human_and_inter_rater(rt, tmp_path):
    w = World(rt, tmp_path)
    vals = [1, 2, 3, 4, 5, 2, 3, 4]
    for v in vals:
        sid = w.sample(w.base, w.prompt())
        w.ai(sid, float(v))
        w.mos(sid, float(v), user=0)
        w.mos(sid, float(v), user=1)
    s1, s2 = w.sample(w.a1, w.prompt()), w.sample(w.base, w.prompt())
    w.ab(s1, s2, "A", user=0)
    w.ab(s2, s1, "B", user=1)  # the same preference, stored the other way round
    res = leaderboard.agreement(rt)
    (row,) = res["ai_vs_human"]
    assert row["judge"] == "j1@v1" and row["n_samples"] == 8
    assert row["cohen_kappa"] == pytest.approx(1.0) and row["spearman"] == pytest.approx(1.0)
    mos = next(x for x in res["inter_rater"] if x["what"] == "mos:meaningfulness")
    assert mos["alpha_ordinal"] == pytest.approx(1.0) and mos["units_with_2plus"] == 8
    ab = next(x for x in res["inter_rater"] if x["what"] == "ab")
    assert ab["units_with_2plus"] == 1


def test_round_curves_write_pngs(rt, tmp_path):
    w = World(rt, tmp_path)
    with rt.store.session() as s:
        for v, acc, js in ((w.base, 0.6, 2.5), (w.a1, 0.65, 3.0), (w.a2, 0.7, 3.4)):
            s.add(EvalResult(model_version_id=v.id, benchmark="sblimp", metric="accuracy",
                             value=acc, n=100, ci_low=acc - 0.1, ci_high=acc + 0.1,
                             details={"split": "dev"}))
            s.add(EvalResult(model_version_id=v.id, benchmark="judge:j1",
                             metric="mean_score", value=js, n=50, ci_low=js - 0.2,
                             ci_high=js + 0.2, details={"split": "dev"}))
    series = leaderboard.round_series(rt)
    (judge,) = series["judge score"].values()
    assert [(p[1], p[2]) for p in judge] == [(0, 2.5), (1, 3.0), (2, 3.4)]
    assert [p[1] for p in series["benchmark accuracy"]["sblimp"]] == [0, 1, 2]
    assert series["fault rate"] == {}  # no judge evidence stored
    paths = leaderboard.round_curves(rt, tmp_path / "curves")
    assert [p.name for p in paths] == ["judge_score.png", "fault_rate.png",
                                       "benchmark_accuracy.png"]
    assert all(p.stat().st_size > 1000 for p in paths)


def test_two_prompt_versions_of_one_judge_are_two_judges(rt, tmp_path):
    """A judge whose prompt changed is a new judge: its scores are never pooled with the old
    prompt's, on the leaderboard or in agreement with humans."""
    w = World(rt, tmp_path)
    for _ in range(6):
        p = w.prompt()
        sb, s1 = w.sample(w.base, p), w.sample(w.a1, p)
        w.ai(sb, 2.0, prompt_version="v1")
        w.ai(s1, 4.0, prompt_version="v1")  # v1 prefers a1
        w.ai(sb, 5.0, prompt_version="v2")
        w.ai(s1, 1.0, prompt_version="v2")  # v2 prefers base
        w.mos(s1, 4.0)
    assert leaderboard.judge_names(rt) == ["j1@v1", "j1@v2"]
    v1 = {r["version"]: r for r in leaderboard.leaderboard(rt, "j1@v1")["rows"]}
    v2 = {r["version"]: r for r in leaderboard.leaderboard(rt, "j1@v2")["rows"]}
    assert v1["a1"]["ai_score"]["value"] == 4.0 and v1["a1"]["win_rate"]["value"] == 1.0
    assert v2["a1"]["ai_score"]["value"] == 1.0 and v2["a1"]["win_rate"]["value"] == 0.0
    judges = {r["judge"]: r["n_samples"] for r in leaderboard.agreement(rt)["ai_vs_human"]}
    assert judges == {"j1@v1": 6, "j1@v2": 6}


def test_fault_rates_from_the_training_judges_evidence(rt, tmp_path):
    """Per version, the share of dev continuations with each fault the training judge saw, with
    a Wilson CI; the evaluation judge's evidence (and its scores) do not count."""
    import json

    from backend import stats

    w = World(rt, tmp_path)
    ok = {"n_words": 6, "n_known": 6, "on_topic": 3, "off_topic": 0, "wrong_pronouns": 0,
          "other_names": [], "fluency": 0.9, "broken_cause": False}
    bad = {**ok, "on_topic": 1, "off_topic": 3, "wrong_pronouns": 2}
    for k in range(8):
        sid = w.sample(w.a1, w.prompt())
        w.ai(sid, 3.0, judge="mini-judge", raw=json.dumps(bad if k < 2 else ok))
        w.ai(sid, 1.0, judge="mini-lm-judge", raw=json.dumps(bad))
    rates = leaderboard.fault_rates(rt, "dev")
    assert set(rates) == {w.a1.id}
    assert rates[w.a1.id]["off_topic"] == stats.wilson(2, 8)
    assert rates[w.a1.id]["wrong_pronoun"].value == 0.25
    assert rates[w.a1.id]["broken_cause"].value == 0.0
    series = leaderboard.round_series(rt)["fault rate"]
    assert [p[2] for p in series["off topic"]] == [0.25]
