"""backend.evaluation on a real SQLite store with protocol test doubles (see conftest)."""

from __future__ import annotations

import json
import uuid

import numpy as np
import pytest
from sqlalchemy import select

from backend import jobs, registry
from backend.loop import evaluate
from db.schema import EvalResult, Judgment, Prompt, Sample


def _aligned(rt, tmp_path, bias):
    base = registry.baseline(rt) or registry.create_baseline(rt, "base", "base-ref")
    src = tmp_path / "adapter-src"
    src.mkdir(exist_ok=True)
    (src / "adapter.json").write_text(json.dumps({"bias": bias}))
    return base, registry.derive_aligned(rt, base.id, src, 1, name="aligned-r1")


def test_read_item_file_validates(tmp_path):
    p = tmp_path / "x.item"
    p.write_text("filename id correct\na 1 1\nb 1 0\nc 2 1\nd 2 0\n")
    pairs = evaluate.read_item_file(p)
    assert [(q.id, q.good, q.bad) for q in pairs] == [("1", "a", "b"), ("2", "c", "d")]
    p.write_text("filename id\na 1\n")
    with pytest.raises(evaluate.EvaluationError, match="header"):
        evaluate.read_item_file(p)
    p.write_text("filename id correct\na 1 1\nb 1 1\n")
    with pytest.raises(evaluate.EvaluationError, match="exactly one"):
        evaluate.read_item_file(p)


def test_pair_outcomes_ties_half():
    assert evaluate.pair_outcomes([1, 2, 3], [0, 2, 4]).tolist() == [1.0, 0.5, 0.0]


def test_benchmark_accuracy_summed_and_normalized(eval_rt):
    res = evaluate.evaluate_benchmark(eval_rt, "sblimp", "dev", adapter=None)
    acc, norm = res
    assert acc["metric"] == "accuracy" and norm["metric"] == "accuracy_norm"
    assert acc["details"]["outcomes"] == [1.0, 1.0, 0.5, 0.0]
    assert norm["details"]["outcomes"] == [1.0, 0.0, 0.5, 0.0]
    assert acc["value"] == pytest.approx(0.625) and norm["value"] == pytest.approx(0.375)
    assert acc["n"] == 4 and acc["ci_low"] < 0.625 < acc["ci_high"]
    assert acc["details"]["ids"] == ["p0", "p1", "p2", "p3"]


def test_units_cached_per_file_and_tokenizer(eval_rt):
    tok = eval_rt.tokenizer
    evaluate.evaluate_benchmark(eval_rt, "sblimp", "dev", adapter=None)
    first = tok.calls
    assert first == 8
    cache = eval_rt.settings.data_dir / "cache" / "units"
    # content-addressed: p2's good item and p3's bad item are the same audio -> 7 entries
    assert len(list(cache.rglob("*.json"))) == 7
    evaluate.evaluate_benchmark(eval_rt, "sblimp", "dev", adapter=None)
    assert tok.calls == first  # second run reads the cache


def _judgments(rt, version_id, values, split="dev", extra=()):
    with rt.store.session() as s:
        for v in values:
            key = uuid.uuid4().hex
            p = Prompt(audio_path=f"/{key}.wav", audio_sha256=key, duration_s=1.0, split=split)
            s.add(p)
            s.flush()
            smp = Sample(prompt_id=p.id, model_version_id=version_id, seed=0, units=[1, 2])
            s.add(smp)
            s.flush()
            s.add(Judgment(kind="ai", rater="ai:j@v1", task_key=f"s{smp.id}", sample_id=smp.id,
                           judge_name="j", value=v))
            for k, kw in enumerate(extra):
                s.add(Judgment(kind="ai", rater=f"ai:j@v1#{k}", task_key=f"s{smp.id}",
                               sample_id=smp.id, judge_name="j", **kw))


def test_judge_score_excludes_failed_and_flagged(eval_rt):
    base = registry.create_baseline(eval_rt, "base", "ref")
    _judgments(eval_rt, base.id, [2.0, 4.0, 3.0, 5.0], extra=[
        {"value": None, "error": "timeout"},
        {"value": 1.0, "flagged": True, "flag_reason": "admin"}])
    _judgments(eval_rt, base.id, [1.0], split="train")  # other split: ignored
    res = evaluate.evaluate_judge(eval_rt, base.id, "dev")
    assert len(res) == 1
    r = res[0]
    assert r["benchmark"] == "judge:j@v1" and r["value"] == pytest.approx(3.5) and r["n"] == 4
    assert r["ci_low"] < 3.5 < r["ci_high"]
    assert r["details"]["histogram"] == {"1": 0, "2": 1, "3": 1, "4": 1, "5": 1}


def test_judge_score_per_prompt_version(eval_rt):
    """Two prompt versions of one judge give two judge scores, never one pooled mean."""
    base = registry.create_baseline(eval_rt, "base", "ref")
    with eval_rt.store.session() as s:
        for k, (v1, v2) in enumerate([(2.0, 5.0), (3.0, 4.0)]):
            p = Prompt(audio_path=f"/pv{k}.wav", audio_sha256=f"pv{k}", duration_s=1.0,
                       split="dev")
            s.add(p)
            s.flush()
            smp = Sample(prompt_id=p.id, model_version_id=base.id, seed=0, units=[1])
            s.add(smp)
            s.flush()
            for pv, value in (("v1", v1), ("v2", v2)):
                s.add(Judgment(kind="ai", rater=f"ai:j@{pv}", task_key=f"s{smp.id}",
                               sample_id=smp.id, judge_name="j", prompt_version=pv,
                               value=value))
    res = {r["benchmark"]: r["value"] for r in evaluate.evaluate_judge(eval_rt, base.id,
                                                                       "dev")}
    assert res == {"judge:j@v1": pytest.approx(2.5), "judge:j@v2": pytest.approx(4.5)}


def test_evaluate_version_stores_reports_and_compares(eval_rt, tmp_path):
    base, aligned = _aligned(eval_rt, tmp_path, {"4": 3.0, "5": 3.0})
    seen = []
    out_b = evaluate.evaluate_version(eval_rt, "base", progress=lambda f, m="": seen.append(f))
    assert {(r["benchmark"], r["metric"]) for r in out_b} == {
        ("sblimp", "accuracy"), ("sblimp", "accuracy_norm"),
        ("swuggy", "accuracy"), ("swuggy", "accuracy_norm")}
    assert seen == sorted(seen) and seen[-1] == 1.0
    out_a = evaluate.evaluate_version(eval_rt, aligned.name, benchmarks=["sblimp"])
    acc = {r["metric"]: r["value"] for r in out_a}
    assert acc["accuracy"] == pytest.approx(0.875)  # the adapter flips p3
    lm = eval_rt.unit_lm
    assert aligned.name in lm.adapters and any(a == aligned.name for _, a in lm.calls)
    with eval_rt.store.session() as s:
        rows = s.scalars(select(EvalResult)).all()
        assert len(rows) == 6
        assert all(r.details["split"] == "dev" for r in rows)
    rep = eval_rt.settings.data_dir / "reports"
    assert (rep / "base" / "report.md").is_file() and (rep / "base" / "accuracy.png").is_file()
    assert "sblimp" in (rep / "aligned-r1" / "report.md").read_text()

    rows = evaluate.compare_versions(eval_rt, resamples=500)
    acc_row = next(r for r in rows if r["benchmark"] == "sblimp" and r["metric"] == "accuracy")
    assert acc_row["diff"] == pytest.approx(0.25) and acc_row["n_paired"] == 4
    assert acc_row["ci_low"] <= 0.25 <= acc_row["ci_high"]
    assert not any(r["benchmark"] == "swuggy" for r in rows)  # aligned has no swuggy result
    path = evaluate.write_comparison(eval_rt, rows, tmp_path / "cmp")
    assert "+0.2500" in path.read_text() and (tmp_path / "cmp" / "comparison.csv").is_file()


def test_unknown_benchmark_is_a_clean_error(eval_rt):
    registry.create_baseline(eval_rt, "base", "ref")
    with pytest.raises(evaluate.EvaluationError, match="ssc"):
        evaluate.evaluate_version(eval_rt, "base", benchmarks=["ssc"])


def test_evaluate_job_runs_through_the_worker(eval_rt):
    registry.create_baseline(eval_rt, "base", "ref")
    jid = jobs.submit(eval_rt, "evaluate", {"version": "base", "benchmarks": "sblimp"})
    assert jobs.Worker(eval_rt).run_once()
    j = jobs.get(eval_rt, jid)
    assert j.status == "done", j.error
    assert j.progress == 1.0
    assert {r["benchmark"] for r in j.result["results"]} == {"sblimp"}
    with eval_rt.store.session() as s:
        assert s.scalar(select(EvalResult.job_id).limit(1)) == jid


def test_cli_evaluate_inline_and_report(eval_rt, monkeypatch, capsys, tmp_path):
    from backend import cli
    from backend.cli import common

    monkeypatch.setattr(common, "runtime_from", lambda args: eval_rt)
    _aligned(eval_rt, tmp_path, {"4": 3.0})
    assert cli.main(["evaluate", "base", "--bench", "sblimp"]) == 0
    assert cli.main(["evaluate", "aligned-r1", "--bench", "sblimp"]) == 0
    out = capsys.readouterr().out
    assert "sblimp" in out and "report:" in out
    assert cli.main(["evaluate", "base", "--no-wait"]) == 0
    assert "queued evaluate job" in capsys.readouterr().out
    assert cli.main(["report", "--out", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "report.md").is_file()
    assert cli.main(["evaluate", "base", "--bench", "nope"]) == 2


def test_scores_are_batched(eval_rt):
    n = evaluate.SCORE_BATCH * 2 + 3
    seqs = [[0, 1, 2]] * n
    total, mean = evaluate.score_sequences(eval_rt, seqs, None)
    assert [c for c, _ in eval_rt.unit_lm.calls] == [64, 64, 3]
    assert np.allclose(mean, total / 2)
