"""Fair pairwise AI judging (backend.loop.judge.judge_pairs) through the service on the real
store: every pair is asked in both orders, a verdict whose orders disagree counts as a tie (or is
dropped, by setting) and stays stored, each judge's position-bias rate is reported, and the
verdicts feed judge trust."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from backend import trust
from backend.config import JudgingConfig, Settings
from backend.loop.judge import judge_pairs
from backend.runtime import Runtime
from db.schema import Judgment, RatingTask, Sample, User
from tests.rating.seed import seed
from tests.trust.test_trust import judges_cfg
from tests.trust.world import FakeJudge, use_judges


@pytest.fixture
def rt(tmp_path, db_url):
    r = Runtime(Settings(data_dir=tmp_path / "data", database_url=db_url, world="real",
                         models=judges_cfg("fair", "biased"),
                         judging=JudgingConfig(bootstrap_resamples=200)))
    yield r
    r.close()


def aligned_texts(rt) -> set[str]:
    with rt.store.read() as s:
        return {t for t in s.scalars(select(Sample.transcript)) if t.startswith("test-aligned")}


def verdicts(rt, judge: str) -> list[Judgment]:
    with rt.store.read() as s:
        return list(s.scalars(select(Judgment).where(Judgment.rater == f"ai:{judge}@v1")
                              .order_by(Judgment.id)))


def test_both_orders_ties_on_disagreement_and_position_bias(rt):
    w = seed(rt, n_prompts=3, raters=("r1",))
    use_judges(rt, FakeJudge("fair", likes=aligned_texts(rt)),
               FakeJudge("biased", first_bias=True))
    res = judge_pairs(rt)
    n_tasks = w["tasks"]["ab"]
    assert res == {"judged": 2 * n_tasks, "inconsistent": n_tasks, "failed": 0, "skipped": 0}

    aligned = w["aligned"].id
    with rt.store.read() as s:
        version = dict(s.execute(select(Sample.id, Sample.model_version_id)).all())
    for j in verdicts(rt, "fair"):
        raw = json.loads(j.raw)
        assert raw["consistent"] and not raw["first_position"]
        better = j.sample_id if j.choice == "A" else j.sample_b_id
        assert version[better] == aligned and j.sample_id < j.sample_b_id
    for j in verdicts(rt, "biased"):  # "the first one" both times: no verdict, a tie
        raw = json.loads(j.raw)
        assert raw == {**raw, "lo_first": "A", "hi_first": "A", "consistent": False,
                       "first_position": True}
        assert j.choice == "tie"

    bias = {b.judge: b for b in trust.position_bias(rt)}
    assert bias["biased@v1"].n == n_tasks and bias["biased@v1"].inconsistent.value == 1.0
    assert bias["biased@v1"].first_position.value == 1.0
    assert bias["fair@v1"].inconsistent.value == 0.0
    assert bias["fair@v1"].inconsistent.high < 0.5  # Wilson interval around 0 of n_tasks

    assert judge_pairs(rt)["skipped"] == 2 * n_tasks  # nothing is asked twice


def test_disagreeing_orders_can_be_dropped_and_stay_stored(rt):
    seed(rt, n_prompts=2, raters=("r1",))
    rt.settings.judging.order_conflict = "drop"
    use_judges(rt, FakeJudge("fair", likes=aligned_texts(rt)),
               FakeJudge("biased", first_bias=True))
    judge_pairs(rt)
    biased = verdicts(rt, "biased")
    assert biased and all(j.choice is None and j.error.startswith("dropped") for j in biased)
    with rt.store.read() as s:
        from backend import queries

        counted = {v.judge for v in queries.ai_pair_verdicts(s)}
    assert counted == {"fair@v1"}  # the dropped ones are kept, never counted


def test_pairwise_verdicts_are_what_trust_measures_on_ab_items(rt):
    seed(rt, n_prompts=4, raters=("r1",))
    # "fair" prefers the aligned clip of each prompt's first pair and the base clip of its
    # second (so its answers vary); people agree with it except on two tasks
    likes = {"test-aligned continuation 0", "test-base continuation 1"}
    use_judges(rt, FakeJudge("fair", likes=likes), FakeJudge("biased", first_bias=True))
    judge_pairs(rt)
    with rt.store.session() as s:
        text = dict(s.execute(select(Sample.id, Sample.transcript)).all())
        uid = s.scalar(select(User.id).where(User.name == "r1"))
        for k, t in enumerate(s.scalars(select(RatingTask).order_by(RatingTask.id)).all()):
            fair_says_a = text[t.sample_a_id] in likes
            choice = "A" if fair_says_a == (k >= 2) else "B"
            s.add(Judgment(kind="ab", rater=f"user:{uid}", task_key=f"ab:{t.id}",
                           sample_id=t.sample_a_id, sample_b_id=t.sample_b_id, task_id=t.id,
                           user_id=uid, choice=choice))
    rows = {t.judge: t for t in trust.judge_trust(rt) if t.round_index is None}
    assert rows["fair@v1"].ab.n == 8
    assert 0 < rows["fair@v1"].ab.kappa.value < 1  # right on 6 of 8
    # the position-biased judge's verdicts are all ties: no agreement beyond chance
    assert rows["biased@v1"].ab.n == 8 and rows["biased@v1"].ab.kappa.value == pytest.approx(0)
