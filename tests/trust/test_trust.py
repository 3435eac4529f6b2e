"""Judge trust (backend.trust) through its public services on the real store: agreement with the
human majority per judge and per round, and the gate that keeps judges who disagree with people
(or were checked on too few items) out of a round's pairs, with the reason."""

from __future__ import annotations

import pytest

from backend import trust
from backend.config import JudgingConfig, Settings
from backend.loop import pairs
from backend.runtime import Runtime
from models.config import JudgeConfig, ModelsConfig
from tests.trust.world import FakeJudge, World, use_judges


def judges_cfg(*names: str) -> ModelsConfig:
    return ModelsConfig(judges=[JudgeConfig(name=n, kind="openai", base_url="http://127.0.0.1:9")
                                for n in names])


@pytest.fixture
def rt(tmp_path, db_url):
    r = Runtime(Settings(data_dir=tmp_path / "data", database_url=db_url, world="real",
                         models=judges_cfg("good", "bad", "few"),
                         judging=JudgingConfig(min_agreement=0.2, min_overlap=20,
                                               bootstrap_resamples=300)))
    use_judges(r, FakeJudge("good"), FakeJudge("bad"), FakeJudge("few"))
    yield r
    r.close()


def build(rt, tmp_path) -> World:
    """30 prompts, each with two continuations of a1; people prefer the first on 20 and the
    second on 10. "good" scores the preferred one 4 and the other 1, "bad" the reverse, "few"
    as good on 5 prompts only. Round 2 (a2): 10 items on which "good" is wrong."""
    w = World(rt, tmp_path)
    src = tmp_path / "ad"
    w.a2 = __import__("backend.registry", fromlist=["x"]).derive_aligned(rt, "a1", src, 2,
                                                                        name="a2")
    for k in range(40):
        version = w.a1 if k < 30 else w.a2
        p = w.prompt()
        x, y = w.sample(version, p), w.sample(version, p)
        win, lose = (x, y) if k % 3 else (y, x)
        w.ab(x, y, "A" if win == x else "B", user=0)
        w.ab(y, x, "B" if win == x else "A", user=1)  # the same view, stored the other way
        if k < 30:
            w.ai(win, 4.0, "good")
            w.ai(lose, 1.0, "good")
        else:  # on round 2's outputs the judge is wrong
            w.ai(win, 1.0, "good")
            w.ai(lose, 4.0, "good")
        w.ai(win, 1.0, "bad")
        w.ai(lose, 4.0, "bad")
        if k < 5:
            w.ai(win, 4.0, "few")
            w.ai(lose, 1.0, "few")
    return w


def by_key(rows):
    return {(t.judge, t.round_index): t for t in rows}


def test_agreement_per_judge_and_round_with_cis_and_n(rt, tmp_path):
    build(rt, tmp_path)
    t = by_key(trust.judge_trust(rt))
    good_r1, good_r2, good = t[("good@v1", 1)], t[("good@v1", 2)], t[("good@v1", None)]
    assert good_r1.ab.n == 30 and good_r1.ab.kappa.value == pytest.approx(1.0)
    assert good_r2.ab.n == 10 and good_r2.ab.kappa.value < -0.9  # always the wrong side
    assert good.ab.n == 40 and 0.2 < good.ab.kappa.value < 1.0
    assert good.ab.kappa.low < good.ab.kappa.value < good.ab.kappa.high
    assert good.ab.spearman.value > 0 and good.ab.spearman.n == 40
    bad = t[("bad@v1", None)].ab
    assert bad.kappa.value < -0.5 and bad.spearman.value == pytest.approx(-1.0)
    assert t[("few@v1", None)].ab.n == 5
    assert good.mos.n == 0 and good.mos.kappa is None  # no MOS ratings in this world


def test_mos_items_use_the_median_human_rating(rt, tmp_path):
    w = World(rt, tmp_path)
    for k in range(12):
        sid = w.sample(w.a1, w.prompt())
        level = 1 + k % 5
        for u, v in enumerate((level, level, 5 if level < 3 else 1)):  # one dissenter each
            w.mos(sid, float(v), user=u)
        w.ai(sid, float(level), "good")
    row = by_key(trust.judge_trust(rt))[("good@v1", None)]
    assert row.mos.n == 12 and row.mos.kappa.value == pytest.approx(1.0)
    assert 0 < row.mos.spearman.value < 1  # against the mean, which the dissenters pull


def test_both_and_auto_use_only_judges_that_agree_enough(rt, tmp_path):
    build(rt, tmp_path)
    both = {u.name: u for u in trust.judges_for_pairs(rt, "both")}
    assert both["good"].used and both["good"].weight == 1.0 and both["good"].n_items == 40
    assert not both["bad"].used and "below the minimum 0.2" in both["bad"].reason
    assert not both["few"].used and both["few"].reason == \
        "only 5 item(s) rated by people too, need 20"
    auto = {u.name: u for u in trust.judges_for_pairs(rt, "auto")}
    assert auto["good"].weight == pytest.approx(both["good"].agreement["value"])
    ai = trust.judges_for_pairs(rt, "ai")
    assert all(u.used for u in ai) and "not checked" in ai[0].reason


def test_pairs_from_both_come_from_the_trusted_judge_only(rt, tmp_path):
    w = build(rt, tmp_path)
    sel = rt.settings.selection
    th = pairs.Thresholds(3.0, 1.0, 1.0)
    # all three judges pooled: good and bad cancel out, no AI pair passes the thresholds
    assert pairs.select_pairs(rt, "ai", w.a1.id, sel, th, 1, "train") == []
    found = pairs.select_pairs(rt, "both", w.a1.id, sel, th, 1, "train")
    ai_side = [p for p in found if "ai" in p.provenance["sources"]]
    assert len(ai_side) == 30
    assert all(p.provenance.get("judges", p.provenance.get("parts", [{}])[0].get("judges"))
               == ["good"] for p in ai_side)
    assert all(p.provenance["agree"] for p in ai_side)  # the trusted judge sides with people


def test_no_judge_trusted_means_no_ai_pairs(rt, tmp_path):
    w = build(rt, tmp_path)
    rt.settings.judging.min_agreement = 0.99
    uses = trust.judges_for_pairs(rt, "both")
    assert not any(u.used for u in uses)
    found = pairs.select_pairs(rt, "both", w.a1.id, rt.settings.selection,
                               pairs.Thresholds(3.0, 1.0, 1.0), 1, "train", uses)
    assert found and all(p.provenance["sources"] == ["human"] for p in found)
