"""Pair-selection strategies: pure functions, no DB."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.loop.pairs import (
    ABVote,
    Candidate,
    MOSRating,
    Thresholds,
    WordBigramLM,
    auto_bleu,
    curriculum_thresholds,
    human_ab_pairs,
    human_mos_pairs,
    mix_pairs,
    recognizable_share,
    repetition_filter,
    select_ai_pairs,
    select_asr_pairs,
    select_likelihood_pairs,
)


def c(sid, pid, score=None, text="a b c d", units=(1, 2, 3), lp=None, judge="j"):
    return Candidate(sid, pid, tuple(units), text, {} if score is None else {judge: score}, lp)


def test_auto_bleu():
    assert auto_bleu([]) == 0.0
    assert auto_bleu(["a", "b", "c", "d"]) == 0.0
    assert auto_bleu(["a", "b"] * 4) == 1.0
    # "a b" occurs twice among 4 bigrams (a b, b a, a b, b c)
    assert auto_bleu(list("abab") + ["c"]) == pytest.approx(0.5)
    assert auto_bleu("x y z x y".split()) == pytest.approx(0.5)


def test_repetition_filter_words_then_units():
    ok, rep = c(1, 1, text="the cat sat"), c(2, 1, text="the cat the cat the cat")
    no_text = Candidate(3, 1, (5, 6, 5, 6, 5, 6), None)
    kept, dropped = repetition_filter([ok, rep, no_text], 0.3, on="words")
    assert [k.sample_id for k in kept] == [1]
    assert {d.sample_id for d in dropped} == {2, 3}  # 3 falls back to its units
    kept, _ = repetition_filter([rep], 0.3, on="units")  # units (1,2,3) are not repetitive
    assert len(kept) == 1


def test_ai_pairs_thresholds_and_provenance():
    cands = [c(1, 10, 4), c(2, 10, 1), c(3, 10, 2),  # pair (1, 2)
             c(4, 11, 4), c(5, 11, 2),               # rejected too good for 3/1
             c(6, 12, 2), c(7, 12, 1),               # chosen too bad
             c(8, 13, 5),                            # one candidate
             c(9, 14, 3), c(10, 14, None)]           # unscored ignored
    pairs = select_ai_pairs(cands, Thresholds(3, 1, 0.3))
    assert [(p.prompt_id, p.chosen_id, p.rejected_id) for p in pairs] == [(10, 1, 2)]
    p = pairs[0]
    assert p.source == "ai" and p.margin == 3
    assert p.provenance["chosen_score"] == 4 and p.provenance["rejected_score"] == 1
    assert p.provenance["thresholds"]["chosen_min"] == 3
    assert p.provenance["n_candidates"] == 3


def test_ai_pairs_repetition_filter_applies_before_pairing():
    cands = [c(1, 1, 5, text="la la la la la la"), c(2, 1, 4), c(3, 1, 1)]
    pairs = select_ai_pairs(cands, Thresholds(3, 1, 0.3))
    assert (pairs[0].chosen_id, pairs[0].rejected_id) == (2, 3)
    assert pairs[0].provenance["n_dropped_repetitive"] == 1


def test_ai_pairs_mean_over_judges_and_ties():
    a = Candidate(1, 1, (), "a b", {"x": 5, "y": 3})
    b = Candidate(2, 1, (), "c d", {"x": 1, "y": 1})
    d = Candidate(3, 1, (), "e f", {"x": 4, "y": 4})
    pairs = select_ai_pairs([a, b, d], Thresholds(3, 1, 0.3))
    assert (pairs[0].chosen_id, pairs[0].rejected_id) == (1, 2)  # tie at 4: lower id wins
    pairs = select_ai_pairs([a, b, d], Thresholds(3, 1, 0.3), judges=["y"])
    assert pairs[0].chosen_id == 3
    # all equal: no pair
    assert select_ai_pairs([c(1, 1, 3), c(2, 1, 3)], Thresholds(1, 5, 1)) == []


def test_curriculum_schedule():
    base = Thresholds(3, 1, 0.3)
    assert curriculum_thresholds(base, 1) == base
    r2 = curriculum_thresholds(base, 2)
    assert (r2.chosen_min, r2.rejected_max) == (4, 2)  # the paper's 3/1 -> 4/2
    r5 = curriculum_thresholds(base, 5)
    assert (r5.chosen_min, r5.rejected_max) == (5, 5)  # clamped to the scale
    assert curriculum_thresholds(base, 3, step=0.5).chosen_min == 4


def test_likelihood_pairs_prefer_fluent_transcripts():
    lm = WordBigramLM(["the cat sat on the mat"] * 5 + ["a dog ran in the park"] * 5)
    assert lm.perplexity("the cat sat on the mat") < lm.perplexity("mat the on sat cat the")
    cands = [c(1, 1, text="the cat sat on the mat"), c(2, 1, text="mat on cat the sat"),
             c(3, 2, text="a dog ran in the park"), c(4, 2, text="a dog ran in the park")]
    pairs = select_likelihood_pairs(cands, lm=lm)
    assert [(p.chosen_id, p.rejected_id) for p in pairs] == [(1, 2)]  # prompt 2: equal, dropped
    assert pairs[0].provenance["strategy"] == "word_bigram_likelihood"
    up = select_likelihood_pairs([c(1, 1, lp=-1.0), c(2, 1, lp=-3.0)], use_unit_logprob=True)
    assert (up[0].chosen_id, up[0].rejected_id, up[0].margin) == (1, 2, 2.0)
    # fitted on the candidates themselves when no LM is given
    assert select_likelihood_pairs(cands)


def test_asr_pairs():
    vocab = {"the", "cat", "sat"}
    assert recognizable_share("the cat xq", vocab) == pytest.approx(2 / 3)
    assert recognizable_share("", vocab) == 0.0
    cands = [c(1, 1, text="the cat sat"), c(2, 1, text="zz qq cat"), c(3, 1, text="the xx")]
    pairs = select_asr_pairs(cands, vocab, margin=0.1)
    assert (pairs[0].chosen_id, pairs[0].rejected_id) == (1, 2)
    assert select_asr_pairs(cands, vocab, margin=0.9) == []


def test_human_ab_majority_and_ties():
    votes = [ABVote(1, 10, 11, "A", "u1"), ABVote(1, 10, 11, "A", "u2"),
             ABVote(1, 11, 10, "A", "u3"),                       # same pair, shown swapped
             ABVote(2, 20, 21, "A", "u1"), ABVote(2, 20, 21, "B", "u2"),  # tie: dropped
             ABVote(3, 30, 31, "tie", "u1"), ABVote(3, 30, 31, "both_bad", "u2"),
             ABVote(4, 40, 41, "B", "u1")]
    pairs = human_ab_pairs(votes, min_votes=1)
    got = {(p.prompt_id, p.chosen_id, p.rejected_id) for p in pairs}
    assert got == {(1, 10, 11), (4, 41, 40)}
    p1 = next(p for p in pairs if p.prompt_id == 1)
    assert p1.provenance["votes_for"] == 2 and p1.provenance["votes_against"] == 1
    assert p1.source == "human"
    assert {p.prompt_id for p in human_ab_pairs(votes, min_votes=2)} == {1}


def test_human_mos_margin():
    ratings = [MOSRating(1, 10, 5, "u1"), MOSRating(1, 10, 4, "u2"), MOSRating(1, 11, 2, "u1"),
               MOSRating(1, 12, 3, "u1"), MOSRating(2, 20, 3, "u1"), MOSRating(2, 21, 2.5, "u1")]
    pairs = human_mos_pairs(ratings, margin=1.0)
    assert [(p.chosen_id, p.rejected_id, p.margin) for p in pairs] == [(10, 11, 2.5)]
    assert pairs[0].provenance["n_ratings"] == {"10": 2, "11": 1}


def test_mix_weights_conflicts_and_provenance():
    ai = select_ai_pairs([c(1, 1, 5), c(2, 1, 1), c(3, 2, 5), c(4, 2, 1)], Thresholds(3, 1, 1))
    human = human_ab_pairs([ABVote(1, 1, 2, "A"), ABVote(2, 3, 4, "B"), ABVote(3, 5, 6, "A")])
    mixed = mix_pairs({"ai": ai, "human": human}, {"ai": 1.0, "human": 2.0})
    by = {p.prompt_id: p for p in mixed}
    assert set(by) == {1, 2, 3}
    assert by[1].source == "both" and by[1].provenance["agree"]
    assert by[1].provenance["sources"] == ["ai", "human"]
    assert (by[2].chosen_id, by[2].rejected_id) == (4, 3)  # human outweighs ai
    assert not by[2].provenance["agree"]
    assert by[3].source == "human"
    # equal weights on a conflict: dropped; zero weight drops a source
    assert 2 not in {p.prompt_id for p in mix_pairs({"ai": ai, "human": human})}
    only_ai = mix_pairs({"ai": ai, "human": human}, {"human": 0})
    assert {p.source for p in only_ai} == {"ai"} and len(only_ai) == 2


# --- properties (hypothesis): every selection against a direct restatement of its rule ---------
TEXTS = ["she saw a small rose", "he went home", "la la la la la la", "the the the the", "a b"]


@st.composite
def scored_candidates(draw):
    n = draw(st.integers(0, 24))
    return [Candidate(sid, draw(st.integers(1, 4)), (), draw(st.sampled_from(TEXTS)),
                      {} if (s := draw(st.one_of(st.none(), st.integers(1, 5)))) is None
                      else {"j": float(s)})
            for sid in range(n)]


@settings(max_examples=300, deadline=None)
@given(scored_candidates(), st.integers(1, 5), st.integers(1, 5), st.sampled_from([0.1, 0.3, 1]),
       st.randoms(use_true_random=False))
def test_ai_pairs_property(cands, chosen_min, rejected_max, autobleu_max, rnd):
    th = Thresholds(chosen_min, rejected_max, autobleu_max)
    pairs = select_ai_pairs(cands, th)
    by_id = {x.sample_id: x for x in cands}
    usable = [x for x in cands
              if x.scores and auto_bleu(x.transcript.split()) <= autobleu_max]
    expected_prompts = set()
    for pid in {x.prompt_id for x in usable}:
        scores = [x.scores["j"] for x in usable if x.prompt_id == pid]
        if (len(scores) >= 2 and max(scores) > min(scores) and max(scores) >= chosen_min
                and min(scores) <= rejected_max):
            expected_prompts.add(pid)
    assert sorted(p.prompt_id for p in pairs) == sorted(expected_prompts)  # one per prompt
    for p in pairs:
        ch, rj = by_id[p.chosen_id], by_id[p.rejected_id]
        assert ch in usable and rj in usable and ch.prompt_id == rj.prompt_id == p.prompt_id
        group = [x.scores["j"] for x in usable if x.prompt_id == p.prompt_id]
        assert ch.scores["j"] == max(group) >= chosen_min
        assert rj.scores["j"] == min(group) <= rejected_max
        assert p.margin == ch.scores["j"] - rj.scores["j"] > 0
    shuffled = list(cands)
    rnd.shuffle(shuffled)
    assert select_ai_pairs(shuffled, th) == pairs  # input order does not matter


votes_strategy = st.lists(st.builds(
    ABVote, st.just(1), st.integers(0, 3), st.integers(0, 3),
    st.sampled_from(["A", "B", "tie", "both_bad"]), st.sampled_from(["u1", "u2", "u3"])),
    max_size=30)


@settings(max_examples=300, deadline=None)
@given(votes_strategy, st.integers(1, 4), st.randoms(use_true_random=False))
def test_human_ab_pairs_property(votes, min_votes, rnd):
    wins: dict[tuple[int, int], int] = {}
    for v in votes:
        if v.choice in ("A", "B") and v.sample_a != v.sample_b:
            w, lo = (v.sample_a, v.sample_b) if v.choice == "A" else (v.sample_b, v.sample_a)
            wins[(w, lo)] = wins.get((w, lo), 0) + 1
    expected = {(a, b) for (a, b), n in wins.items()
                if n > wins.get((b, a), 0) and n + wins.get((b, a), 0) >= min_votes}
    pairs = human_ab_pairs(votes, min_votes)
    assert {(p.chosen_id, p.rejected_id) for p in pairs} == expected
    assert len(pairs) == len(expected)  # no sample pair twice, in either direction
    shuffled = list(votes)
    rnd.shuffle(shuffled)
    assert human_ab_pairs(shuffled, min_votes) == pairs


@settings(max_examples=200, deadline=None)
@given(votes_strategy, votes_strategy, st.floats(0, 3), st.floats(0, 3))
def test_mix_pairs_property(votes1, votes2, w1, w2):
    g1, g2 = human_ab_pairs(votes1), human_ab_pairs(votes2)
    mixed = mix_pairs({"a": g1, "b": g2}, {"a": w1, "b": w2})
    keys = [(min(p.chosen_id, p.rejected_id), max(p.chosen_id, p.rejected_id)) for p in mixed]
    assert len(keys) == len(set(keys))  # one direction per sample pair
    def weight(chosen, rejected):
        return sum(w for g, w in ((g1, w1), (g2, w2)) if w > 0
                   for q in g if (q.chosen_id, q.rejected_id) == (chosen, rejected))

    for p in mixed:
        assert weight(p.chosen_id, p.rejected_id) > weight(p.rejected_id, p.chosen_id)
        assert set(p.provenance["sources"]) <= {s for s, w in (("a", w1), ("b", w2)) if w > 0}
    if w2 == 0:
        assert mixed == mix_pairs({"a": g1}, {"a": w1})  # a zero weight drops the source


def test_best_of_k_keeps_each_prompts_best_above_the_bar():
    from backend.loop.pairs import Candidate, best_of_k

    cands = [Candidate(1, 10, (1, 2), scores={"j": 5.0}), Candidate(2, 10, (3,), scores={"j": 4.0}),
             Candidate(3, 10, (4,), scores={"j": 5.0}), Candidate(4, 11, (5,), scores={"j": 3.0}),
             Candidate(5, 12, (), scores={"j": 5.0}),  # empty: never imitated
             Candidate(6, 13, (6,), scores={})]  # unjudged
    assert [c.sample_id for c in best_of_k(cands, 4.0, 2)] == [1, 3]
    assert [c.sample_id for c in best_of_k(cands, 3.0, 1)] == [1, 4]
    assert [c.sample_id for c in best_of_k(cands, 4.0, 3)] == [1, 3, 2]
