"""Listen's featured prompt and its cards tell one story: the featured gain is the difference
of the means the cards show (over all of a version's continuations of the prompt), not of
the one continuation each card plays."""

from __future__ import annotations

import uuid

import pytest

from app.listen import version_head
from backend import prompts
from db.schema import Judgment, Sample
from tests.rating.seed import seed

# prompt index -> (baseline scores, aligned scores), one per continuation (two each)
SCORES = {0: ((2, 2), (3, 3)), 1: ((1, 3), (5, 4)), 2: ((4, 4), (4, 3))}


def test_featured_gain_is_the_difference_of_the_cards_means(sqlite_runtime):
    rt = sqlite_runtime
    info = seed(rt, n_prompts=3, samples_per_version=2, tasks=False)
    judge = prompts.training_judge_names(rt)[0]
    with rt.store.session() as s:
        for i, pid in enumerate(info["prompts"]):
            for v, values in zip((info["base"], info["aligned"]), SCORES[i], strict=True):
                samples = s.query(Sample).filter_by(prompt_id=pid, model_version_id=v.id) \
                    .order_by(Sample.index).all()
                for smp, val in zip(samples, values, strict=True):
                    s.add(Judgment(kind="ai", rater=f"ai:{judge}@v1", task_key=uuid.uuid4().hex,
                                   sample_id=smp.id, judge_name=judge, prompt_version="v1",
                                   value=float(val)))
    f = prompts.featured_prompt(rt)
    # prompt 1 gained most: means 2.0 -> 4.5, while its first continuations went 1 -> 5
    assert f["prompt_id"] == info["prompts"][1] and f["gain"] == pytest.approx(2.5)
    view = prompts.prompt_view(rt, f["prompt_id"], per_version=1)
    means = {v["name"]: (v["ai_mean"], v["n_samples"], len(v["samples"]))
             for v in view["versions"]}
    assert means == {"test-base": (2.0, 2, 1), "test-aligned": (4.5, 2, 1)}
    heads = {v["name"]: version_head(v) for v in view["versions"]}
    assert "mean AI score 4.50 over its 2 continuations" in heads["test-aligned"]
    assert "mean AI score 2.00 over its 2 continuations" in heads["test-base"]


def test_a_card_without_judgments_says_so():
    head = version_head({"name": "r1", "kind": "aligned", "round": 1, "n_samples": 1,
                         "samples": [{}], "ai_mean": None})
    assert head == "### r1\n_aligned, round 1_ · 1 continuation of this prompt, not judged yet"
