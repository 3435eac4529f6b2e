"""The loop's bars: a round on AI feedback raises the held-out judge score.

Tiny stand-in world: fast, always run. Mini world (the real embedded default): slow tests, run
with STUDIO_SLOW=1, and the end-to-end test (< 3 min) once the mini bundle fixture exists.
"""

from __future__ import annotations

import pytest

from bench.loop import measure, paired_bootstrap
from tests.loop.conftest import make_tiny_runtime, slow


def test_paired_bootstrap():
    res = paired_bootstrap({1: 1.0, 2: 2.0, 3: 3.0}, {1: 2.0, 2: 3.0, 3: 4.0, 4: 9.0})
    assert res["n"] == 3 and res["mean_diff"] == 1.0 and res["ci"] == [1.0, 1.0]
    assert paired_bootstrap({}, {1: 1.0})["n"] == 0


def test_one_round_raises_heldout_judge_score_tiny(tmp_path, tiny_lm_dir):
    rt = make_tiny_runtime(tmp_path / "d", tiny_lm_dir, n_train=24, n_dev=24)
    res = measure(rt, rounds=1)
    r = res["rounds"][0]
    assert r["n"] == 24 and r["ci"][0] > 0, r
    rt.close()


def _mini_runtime(request, tmp_path):
    try:
        settings = request.getfixturevalue("mini_settings")
    except pytest.FixtureLookupError:
        pytest.skip("mini world fixture (tests/mini_world.py) not available yet")
    from backend import prompts
    from backend.runtime import Runtime

    if callable(settings):
        settings = settings(tmp_path)
    rt = Runtime(settings)
    prompts.import_bundle_prompts(rt)
    return rt


def test_end_to_end_on_mini_bundle(request, tmp_path):
    """generate -> transcribe -> judge -> pairs -> DPO -> evaluate, one round on the tiny bundle.
    Its wall time is a benchmark figure (bench/loop.py prints it), not asserted here."""
    from backend.loop import rounds

    rt = _mini_runtime(request, tmp_path)
    res = rounds.run_rounds(rt, None, "ai", rounds=1, evaluate=True,
                            overrides={"method": "dpo", "steps": 10, "max_prompts": 32})
    assert res["rounds"], res["stopped_early"]
    assert res["rounds"][0]["n_pairs"] >= rt.settings.selection.min_pairs
    assert "error" not in res["rounds"][0]["evaluation"], res["rounds"][0]["evaluation"]
    measured = {r["benchmark"] for r in res["rounds"][0]["evaluation"]["results"]}
    assert {"swuggy", "sblimp", "ssc", "tsc"} <= measured, measured
    rt.close()


@pytest.mark.parametrize("method, settings", [
    ("rft", {"rft": {"max_steps": 4, "min_score": 2.0}}),  # the tiny LM rarely scores 4
    ("grpo", {"grpo": {"max_steps": 2, "num_generations": 4, "prompts_per_step": 2}}),
])
def test_each_online_or_imitation_method_runs_on_mini_bundle(request, tmp_path, method,
                                                             settings):
    """rft and grpo a few steps on the tiny bundle through the real speech path (vocoder, ASR,
    mini judge): a registered, loadable version whose round says how it trained."""
    from backend import registry
    from backend.loop import rounds

    rt = _mini_runtime(request, tmp_path)
    res = rounds.run_rounds(rt, None, "ai", rounds=1, evaluate=False,
                            overrides={"method": method, "max_prompts": 8, "n": 4, **settings})
    (done,) = res["rounds"]
    assert done["metrics"]["steps"] == settings[method]["max_steps"]
    assert registry.get_version(rt, done["version"]).adapter_intact()
    (rec,) = rounds.list_rounds(rt)
    assert rec.method == method and rec.status == "done" and rec.n_pairs == 0
    rt.close()


@slow
def test_mini_one_round_raises_heldout_score(request, tmp_path):
    rt = _mini_runtime(request, tmp_path)
    r = measure(rt, rounds=1)["rounds"][0]
    assert r["ci"][0] > 0, r
    rt.close()


@slow
def test_mini_three_curriculum_rounds_beat_baseline(request, tmp_path):
    rt = _mini_runtime(request, tmp_path)
    res = measure(rt, rounds=3, curriculum=True)
    final = res["rounds"][-1]
    assert len(res["rounds"]) == 3, res["stopped_early"]
    assert final["mean_diff"] > 0 and final["ci"][0] > 0, final
    rt.close()


def test_dpo_sweep_variants_parse_into_round_overrides():
    from backend.loop.rounds import split_overrides
    from bench.dpo_sweep import parse_variant

    v = parse_variant("lr=1e-4, steps=80,loss_type=sigmoid+sft,loss_weights=1+0.5,n=10")
    assert split_overrides(v) == {
        "training": {}, "online_dpo": {}, "grpo": {}, "rft": {},
        "dpo": {"learning_rate": 1e-4, "max_steps": 80, "loss_type": ["sigmoid", "sft"],
                "loss_weights": [1, 0.5]},
        "selection": {}, "generation": {"n": 10}}
    assert parse_variant("") == {}
    with pytest.raises(SystemExit):
        parse_variant("lr")


def test_align_bench_diversity_and_fault_measures():
    from bench.align import diversity, faults

    same = {1: ["she saw a red rose", "she saw a red rose"]}
    varied = {1: ["she saw a red rose", "he kicked an acorn today"]}
    assert diversity(same) == {"distinct_2": 0.5, "self_bleu_2": 1.0}
    assert diversity(varied) == {"distinct_2": 1.0, "self_bleu_2": 0.0}
    ev = [  # as the mini judge's evidence (MiniJudge.analyse)
        {"n_words": 6, "n_known": 6, "on_topic": 0, "off_topic": 0, "wrong_pronouns": 0,
         "other_names": [], "broken_cause": False, "fluency": 1.0},  # content-free
        {"n_words": 8, "n_known": 8, "on_topic": 1, "off_topic": 3, "wrong_pronouns": 1,
         "other_names": ["tom"], "broken_cause": True, "fluency": 0.5},
        {"n_words": 5, "n_known": 1, "on_topic": 0, "off_topic": 0, "wrong_pronouns": 0,
         "other_names": [], "broken_cause": False, "fluency": 0.0},  # unintelligible
        {"n_words": 8, "n_known": 8, "on_topic": 3, "off_topic": 0, "wrong_pronouns": 0,
         "other_names": [], "broken_cause": False, "fluency": 0.9},
    ]
    f = faults(ev)
    assert f["n"] == 4 and f["content_free"] == 0.25 and f["unintelligible"] == 0.25
    assert f["off_topic"] == f["wrong_pronoun"] == f["other_name"] == f["broken_cause"] == 0.25
    assert f["not_fluent"] == 0.5
    assert faults([{"value": 3}]) == {}  # another judge's evidence: nothing to count


def test_align_bench_benchmark_change_pairs_items_and_reports_points():
    """A change is measured on the items both versions were scored on, in points, with a
    paired interval: one item of 4 flipped from right to wrong is -25 points."""
    from bench.align import accuracy, benchmark_change

    base = {"tsc": {"dev/0": 1.0, "dev/1": 1.0, "test/0": 0.0, "test/1": 1.0, "dev/9": 1.0}}
    new = {"tsc": {"dev/0": 1.0, "dev/1": 0.0, "test/0": 0.0, "test/1": 1.0}, "ssc": {"a": 1.0}}
    ch = benchmark_change(base, new)
    assert set(ch) == {"tsc"}
    assert ch["tsc"]["n_items"] == 4 and ch["tsc"]["points"] == -25.0
    assert ch["tsc"]["ci"][0] <= -25.0 <= ch["tsc"]["ci"][1] <= 0.0
    assert accuracy(new) == {"tsc": 0.5, "ssc": 1.0} and accuracy(None) is None


def test_align_bench_reports_each_round_at_what_it_had_used(tmp_path):
    """The table and plot place every round of a method at the wall time and judged samples
    spent by its end, not at the method's total."""
    from PIL import Image

    from bench.align import plot, table

    def rnd(diff, wall, judged):
        cmp = {"diff": diff, "ci": [diff - 0.1, diff + 0.1]}
        return {"vs_baseline": {"mini-judge": cmp, "lm-judge": cmp},
                "diversity": {"distinct_2": 0.6, "self_bleu_2": 0.5},
                "faults": {"content_free": 0.0},
                "benchmark_change": {"swuggy": {"points": -1.0, "ci": [-2.0, 0.0]}},
                "cumulative": {"wall_seconds": wall, "judged_samples": judged}}

    res = {"baseline": {"mean": {"mini-judge": 2.7, "lm-judge": 1.9},
                        "diversity": {"distinct_2": 0.68}, "faults": {"content_free": 0.0}},
           "methods": [
               {"method": "dpo", "wall_seconds": 300.0, "judged_samples": 3000,
                "rounds": [rnd(0.01, 300.0, 3000)]},
               {"method": "rft:rounds=2", "wall_seconds": 1500.0, "judged_samples": 6000,
                "rounds": [rnd(0.36, 700.0, 3000), rnd(0.57, 1500.0, 6000)]}]}
    lines = table(res).splitlines()
    assert len(lines) == 2 + 1 + 3  # header, rule, baseline, three rounds
    r1, r2 = lines[4].split(" | "), lines[5].split(" | ")
    assert r1[2:4] == ["700", "3000"] and r2[2:4] == ["1500", "6000"]
    assert "+0.570 [+0.470, +0.670]" in lines[5] and "-1.0 [-2.0, +0.0] / - / - / -" in lines[5]
    assert "self-BLEU-2" in lines[0] and r2[-3:-1] == ["0.5", "0.0"]  # self-BLEU, content-free
    plot(res, tmp_path / "align.png")
    with Image.open(tmp_path / "align.png") as im:
        assert im.size[0] > 600 and im.size[1] > 300


def test_align_bench_counts_each_rounds_sampling_in_its_wall_time(tiny_rt):
    """A round's "wall s (so far)" runs from its method's start to the round's end, so it holds
    the round's own sampling and judging (done before its round row exists) and the last
    round's figure is the method's whole wall time."""
    from bench.align import run

    res = run(tiny_rt, ["rft:rounds=2,steps=2,min_score=1,per_prompt=1,lora_rank=4"], 1,
              heldout_n=1, seed=7, with_benchmarks=False)
    (m,) = res["methods"]
    walls = [r["cumulative"]["wall_seconds"] for r in m["rounds"]]
    judged = [r["cumulative"]["judged_samples"] for r in m["rounds"]]
    assert len(walls) == 2 and 0 < walls[0] < walls[1]
    assert judged[1] == 2 * judged[0] > 0  # round 2 sampled the training prompts anew
    assert abs(walls[1] - m["wall_seconds"]) <= 0.05 * m["wall_seconds"] + 0.5
