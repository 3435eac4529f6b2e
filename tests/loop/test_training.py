"""DPO rounds on a tiny random Llama: learning, registry, reload, cancel, kill + recovery."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from sqlalchemy import func, select

from backend import jobs, registry
from backend.config import DPOSettings
from backend.loop import rounds, train
from db.schema import Job, ModelVersion, PreferencePair, TrainingRound
from tests.loop import tiny
from tests.polling import wait_for

ROOT = Path(__file__).resolve().parents[2]


def synthetic_triples(n=32, seed=0):
    rng = random.Random(seed)
    return [([rng.randrange(tiny.K) for _ in range(5)],
             [rng.randrange(tiny.K // 2) for _ in range(8)],
             [rng.randrange(tiny.K // 2, tiny.K) for _ in range(8)]) for _ in range(n)]


def test_dpo_learns_registers_and_reloads_identically(tiny_rt, tmp_path):
    rt = tiny_rt
    lm = rt.unit_lm
    base = registry.ensure_baseline(rt)
    cfg = DPOSettings(learning_rate=5e-3, lora_rank=8, lora_alpha=16, max_steps=16,
                      batch_size=8, warmup_ratio=0.0)
    probe = [3, 9, 1, 12, 5]
    seen = {}

    def keep(model):
        model.eval()
        with torch.no_grad():
            seen["logits"] = model(input_ids=torch.tensor([lm._ids(probe)])).logits[0].clone()

    live = []
    out = tmp_path / "adapter"
    m = train.train_dpo(base.base_ref, [], lm.hf_tokenizer,
                           train.make_examples(lm, synthetic_triples()), cfg, out,
                           report=lambda **kw: live.append(kw), on_trained=keep)
    assert m["steps"] == 16
    assert m["reward_accuracy_last"] > m["reward_accuracy_first"]
    assert m["reward_accuracy_last"] >= 0.8 and m["reward_margin_last"] > 0
    assert live and "rewards/margins" in live[-1]["train_metrics"]

    v1 = registry.derive_aligned(rt, base.id, out, 1, config={"test": True})
    assert v1.kind == "aligned" and Path(v1.adapter_path).is_dir()
    assert v1.adapter_intact()
    lm.load_adapter(v1.name, v1.adapter_path)
    assert torch.allclose(lm.logits(probe, adapter=v1.name), seen["logits"], atol=1e-5)
    assert not torch.allclose(lm.logits(probe, adapter=None), seen["logits"], atol=1e-4)

    # round 2 from the aligned parent: its adapter is self-contained on the base weights
    out2 = tmp_path / "adapter2"
    train.train_dpo(base.base_ref, [v1.adapter_path], lm.hf_tokenizer,
                       train.make_examples(lm, synthetic_triples(seed=1)), cfg, out2,
                       on_trained=keep)
    v2 = registry.derive_aligned(rt, v1.id, out2, 2)
    lm.load_adapter(v2.name, v2.adapter_path)
    assert torch.allclose(lm.logits(probe, adapter=v2.name), seen["logits"], atol=1e-4)
    assert [v.name for v in registry.lineage(rt, v2.id)] == [
        v2.name, v1.name, base.name]


def test_round_end_to_end_on_tiny_world(tiny_rt):
    rt = tiny_rt
    res = rounds.run_rounds(rt, None, "ai", rounds=2, curriculum=True,
                            overrides={"steps": 8}, evaluate=False)
    assert len(res["rounds"]) >= 1
    with rt.store.session() as s:
        rows = s.scalars(select(TrainingRound).order_by(TrainingRound.id)).all()
        assert rows[0].status == "done" and rows[0].result_version_id
        assert rows[0].selection["chosen_min"] == 3.0
        if len(rows) > 1:
            assert rows[1].selection["chosen_min"] == 4.0  # curriculum +1
            assert rows[1].parent_version_id == rows[0].result_version_id
        pairs = s.scalars(select(PreferencePair).where(PreferencePair.round_id == rows[0].id))
        pairs = pairs.all()
        assert len(pairs) == rows[0].n_pairs >= 4
        assert pairs[0].provenance["strategy"] == "ai_score"
        assert rows[0].metrics["steps"] == 8 and "history" in rows[0].metrics


def _no_partial_state(rt):
    with rt.store.session() as s:
        assert s.scalar(select(func.count()).select_from(ModelVersion)
                        .where(ModelVersion.kind == "aligned")) == 0
    ck = rt.settings.checkpoints_dir
    assert not ck.exists() or not any(ck.iterdir()), list(ck.iterdir())
    tmp = rt.settings.data_dir / "tmp"
    assert not tmp.exists() or not any(tmp.iterdir()), list(tmp.iterdir())


def test_cancel_mid_training_leaves_nothing(tiny_rt):
    rt = tiny_rt
    jid = rounds.start_round(rt, None, "ai", 1, overrides={"steps": 100000}, evaluate=False)
    worker = jobs.Worker(rt)
    t = threading.Thread(target=worker.run_once)
    t.start()
    wait_for(lambda: "DPO step" in jobs.get(rt, jid).message, 120, "training to start", 0.2)
    assert jobs.cancel(rt, jid) == "running"
    t.join(60)
    job = jobs.get(rt, jid)
    assert job.status == "cancelled"
    assert job.result["train_step"] >= 1
    with rt.store.session() as s:
        r = s.scalars(select(TrainingRound)).one()
        assert r.status == "cancelled" and r.result_version_id is None
    _no_partial_state(rt)


def test_killed_round_is_failed_by_recovery(tmp_path, tiny_lm_dir):
    data = tmp_path / "data"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.loop.round_proc", str(data), str(tiny_lm_dir)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    from tests.loop.conftest import tiny_settings

    rt = tiny.tiny_runtime_class()(tiny_settings(data, tiny_lm_dir), upgrade=False)
    try:
        def training_started() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"round process exited before training: {proc.stdout.read()[-2000:]}")
            try:
                with rt.store.session() as s:
                    job = s.scalars(select(Job).where(Job.kind == "round")).first()
                    return "DPO step" in (job.message if job else "")
            except Exception:  # noqa: BLE001 - schema may not exist yet
                return False

        wait_for(training_started, 120, "the round to reach training", 0.2)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        with rt.store.session() as s:
            assert s.scalars(select(TrainingRound)).one().status == "running"
        touched = jobs.recover_stale(rt, stale_after_s=0)
        assert touched
        with rt.store.session() as s:
            job = s.scalars(select(Job).where(Job.kind == "round")).one()
            assert job.status == "failed" and "interrupted" in job.error
            r = s.scalars(select(TrainingRound)).one()
            assert r.status == "failed" and "interrupted" in r.error
            assert r.result_version_id is None
        _no_partial_state(rt)
    finally:
        if proc.poll() is None:
            proc.kill()
        rt.close()


def test_effective_dpo_and_round_overrides(tmp_path):
    from backend.config import Settings

    mini = Settings(world="mini", data_dir=tmp_path)
    assert train.effective_dpo(mini).learning_rate == 2e-4  # mini_overrides
    assert train.effective_dpo(mini).loss_type == ["sigmoid", "sft"]
    explicit = Settings(world="mini", data_dir=tmp_path, dpo={"learning_rate": 1e-6})
    assert train.effective_dpo(explicit).learning_rate == 1e-6  # explicit setting wins
    real = Settings(world="real", data_dir=tmp_path)
    assert train.effective_dpo(real).learning_rate == 5e-5
    assert train.effective_dpo(real, {"max_steps": 3}).max_steps == 3
    # a one-item loss list may be given as its item (`--set loss_type=sigmoid`, the sweep's)
    one = train.effective_dpo(mini, {"loss_type": "sigmoid", "loss_weights": 1})
    assert one.loss_type == ["sigmoid"] and one.loss_weights == [1.0]
    ov = rounds.split_overrides({"steps": 5, "chosen_min": 4, "n": 2, "dpo": {"beta": 0.2}})
    assert ov == {"training": {}, "dpo": {"max_steps": 5, "beta": 0.2}, "online_dpo": {},
                  "grpo": {}, "rft": {},
                  "selection": {"chosen_min": 4}, "generation": {"n": 2}}
    # flat training settings go to the round's method's section
    ov = rounds.split_overrides({"method": "grpo", "steps": 5, "lr": 1e-3, "n": 2})
    assert ov["training"] == {"method": "grpo"} and ov["dpo"] == {}
    assert ov["grpo"] == {"max_steps": 5, "learning_rate": 1e-3}
    ov = rounds.split_overrides({"method": "online-dpo", "steps": 5, "num_generations": 4})
    assert ov["online_dpo"] == {"max_steps": 5, "num_generations": 4} and ov["grpo"] == {}
    assert train.effective(mini, "online-dpo").learning_rate == 2e-4  # its mini_overrides
    assert train.effective(real, "online-dpo").learning_rate == 5e-5
    with pytest.raises(ValueError, match="nonsense"):
        rounds.split_overrides({"nonsense": 1})
    with pytest.raises(ValueError, match="method"):
        rounds.split_overrides({"method": "ppo"})
    with pytest.raises(ValueError, match="num_generations"):  # a GRPO setting under dpo
        rounds.split_overrides({"num_generations": 4})
    # generation.mini_overrides: 10 continuations per prompt in the mini world unless set
    assert mini.generation.n == 10 and real.generation.n == 5
    assert Settings(world="mini", data_dir=tmp_path, generation={"n": 3}).generation.n == 3


def test_loss_type_setting_reaches_trl(tiny_rt, tmp_path):
    """`dpo.loss_type = ["sft"]` trains on the chosen continuations' NLL (RPO's extra term):
    its loss starts near the random model's per-unit NLL, not DPO's ln 2, and the chosen
    sequences become likelier."""
    import math

    rt = tiny_rt
    lm = rt.unit_lm
    base = registry.ensure_baseline(rt)
    triples = synthetic_triples()
    cfg = DPOSettings(learning_rate=5e-3, lora_rank=8, lora_alpha=16, max_steps=12,
                      batch_size=8, warmup_ratio=0.0, loss_type=["sft"])

    def chosen_logprob(model) -> float:
        total = 0.0
        with torch.no_grad():
            for prompt, chosen, _ in triples[:8]:
                ids = torch.tensor([lm._ids(prompt + chosen)])
                lp = model(input_ids=ids).logits[0, :-1].log_softmax(-1)
                total += float(lp.gather(-1, ids[0, 1:, None]).sum())
        return total

    before = chosen_logprob(lm.model)
    seen = {}
    m = train.train_dpo(base.base_ref, [], lm.hf_tokenizer,
                           train.make_examples(lm, triples), cfg, tmp_path / "adapter",
                           on_trained=lambda model: seen.update(after=chosen_logprob(model.eval())))
    assert m["loss_first"] > math.log(2) + 1.0  # an NLL over ~K units, not the sigmoid loss
    assert m["loss_last"] < m["loss_first"]
    assert seen["after"] > before + 5.0


def test_grpo_round_end_to_end_on_tiny_world(tiny_rt):
    """method grpo: the trainer samples on the training prompts, every sample goes through
    the judge path (vocoder, ASR, judge) as reward, no pairs are stored, and the adapter is
    registered and loadable like a DPO round's."""
    rt = tiny_rt
    ov = {"method": "grpo", "grpo": {"max_steps": 3, "num_generations": 4, "prompts_per_step": 2,
                                     "learning_rate": 1e-3, "lora_rank": 4}}
    res = rounds.run_rounds(rt, None, "ai", rounds=1, overrides=ov, evaluate=False)
    (done,) = res["rounds"]
    m = done["metrics"]
    assert m["steps"] == 3 and m["judged_samples"] == 3 * 2 * 4
    assert m["reward_first"] is not None and 1 <= m["reward_first"] <= 5
    with rt.store.session() as s:
        (row,) = s.scalars(select(TrainingRound)).all()
        assert row.method == "grpo" and row.status == "done" and row.n_pairs == 0
        assert row.train_config["num_generations"] == 4
        assert s.scalar(select(func.count()).select_from(PreferencePair)) == 0
    v = registry.get_version(rt, done["version"])
    assert v.adapter_intact() and v.config["method"] == "grpo"
    from backend.loop.generate import sample_continuations
    from models.interfaces import SamplingParams
    (conts,) = sample_continuations(rt, v, [[1, 2, 3]], SamplingParams(n=2, max_new_units=5))
    assert len(conts) == 2 and all(0 <= u < tiny.K for c in conts for u in c)
    with pytest.raises(ValueError, match="AI judge only"):
        rounds.start_round(rt, None, "human", overrides={"method": "grpo"})


def test_dpo_teaches_eos_only_where_the_continuation_ended(tiny_rt, tmp_path):
    """TRL appends EOS to every completion; a continuation cut at max_new_units never ended,
    so its example must not teach the model to stop there. The trainer's tokenized data has
    EOS exactly on the completions that ended, and trained on the chosen continuations' NLL
    alone, P(EOS | prompt + chosen) ends higher when the chosen ended than when it was cut."""
    from trl import DPOConfig

    from models.training import unit_dpo_trainer

    rt = tiny_rt
    lm = rt.unit_lm
    base = registry.ensure_baseline(rt)
    triples = synthetic_triples()
    ends = [(k % 2 == 0, k % 3 == 0) for k in range(len(triples))]
    tr = unit_dpo_trainer()(
        model=lm.model, args=DPOConfig(output_dir=str(tmp_path / "t"), use_cpu=True,
                                       report_to="none", max_steps=1),
        train_dataset=__import__("datasets").Dataset.from_list(
            train.make_examples(lm, triples, ends)), processing_class=lm.hf_tokenizer)
    ds = tr.train_dataset
    assert "chosen_ends" not in ds.column_names
    for (c_end, r_end), c_ids, r_ids, (_, c, r) in zip(ends, ds["chosen_ids"], ds["rejected_ids"],
                                                       triples, strict=True):
        assert (c_ids[-1] == 2) == c_end and len(c_ids) == len(c) + c_end
        assert (r_ids[-1] == 2) == r_end and len(r_ids) == len(r) + r_end

    cfg = DPOSettings(learning_rate=5e-3, lora_rank=8, lora_alpha=16, max_steps=16,
                      batch_size=8, warmup_ratio=0.0, loss_type=["sft"])
    p, c, _ = triples[0]
    ids = torch.tensor([lm._ids(list(p) + list(c))])

    def p_eos(model):
        model.eval()
        with torch.no_grad():
            return float(torch.softmax(model(input_ids=ids).logits[0, -1], -1)[2])

    after = {}
    for ended in (True, False):
        train.train_dpo(base.base_ref, [], lm.hf_tokenizer,
                        train.make_examples(lm, triples, [(ended, ended)] * len(triples)),
                        cfg, tmp_path / f"a-{ended}",
                        on_trained=lambda m, e=ended: after.__setitem__(e, p_eos(m)))
    assert after[True] > after[False], after


def test_rft_round_imitates_the_best_judged_continuations(tiny_rt, capsys):
    """method rft: the parent's training samples are judged as for DPO, then the best ones
    of each prompt (score >= min_score, at most per_prompt) are the fine-tuning data; the
    round keeps their sample ids and no pairs. Training prints no log dicts over the CLI's
    progress bar (transformers' PrinterCallback is removed)."""
    from backend.loop.pairs import ai_candidates, best_of_k, mean_score

    rt = tiny_rt
    ov = {"method": "rft", "rft": {"max_steps": 4, "min_score": 3.0, "per_prompt": 1,
                                   "learning_rate": 1e-3, "lora_rank": 4}}
    res = rounds.run_rounds(rt, None, "ai", rounds=1, overrides=ov, evaluate=False)
    (done,) = res["rounds"]
    assert done["metrics"]["steps"] == 4 and done["metrics"]["n_examples"] >= 1
    assert "'loss'" not in capsys.readouterr().out
    base = registry.ensure_baseline(rt)
    cands = ai_candidates(rt, base.id, "train", ["tiny-judge"])
    expect = best_of_k(cands, 3.0, 1, ["tiny-judge"])
    assert expect and all(mean_score(c) >= 3.0 for c in expect)
    assert len({c.prompt_id for c in expect}) == len(expect)  # one per prompt
    with rt.store.session() as s:
        (row,) = s.scalars(select(TrainingRound)).all()
        assert row.method == "rft" and row.n_pairs == 0 and row.status == "done"
        assert row.metrics["imitated_sample_ids"] == [c.sample_id for c in expect]
        assert s.scalar(select(func.count()).select_from(PreferencePair)) == 0
    assert registry.get_version(rt, done["version"]).adapter_intact()


def test_rft_keeps_eos_only_on_continuations_that_ended(tiny_rt, tmp_path):
    """The SFT side of the EOS rule: tokenized examples end with EOS (in the inputs and the
    labels) exactly where the continuation ended."""
    from datasets import Dataset
    from trl import SFTConfig

    from models.training import unit_sft_trainer

    lm = tiny_rt.unit_lm
    triples = synthetic_triples(8)
    ends = [k % 2 == 0 for k in range(len(triples))]
    rows = [{"prompt": r["prompt"], "completion": r["chosen"], "completion_ends": e}
            for r, e in zip(train.make_examples(lm, triples), ends, strict=True)]
    tr = unit_sft_trainer()(
        model=lm.model, args=SFTConfig(output_dir=str(tmp_path / "t"), use_cpu=True,
                                       report_to="none", max_steps=1, completion_only_loss=True),
        train_dataset=Dataset.from_list(rows), processing_class=lm.hf_tokenizer)
    ds = tr.train_dataset
    assert "completion_ends" not in ds.column_names
    for e, ids, labels, (p, c, _) in zip(ends, ds["input_ids"], ds["labels"], triples,
                                         strict=True):
        assert (ids[-1] == 2) == e and len(ids) == 1 + len(p) + len(c) + e
        assert len(labels) == len(ids) and (labels[-1] == 2) == e
        assert sum(x != -100 for x in labels) == len(c) + e  # loss on the continuation only


def test_online_dpo_round_end_to_end_on_tiny_world(tiny_rt):
    """method online-dpo: each step the trainer samples num_generations continuations of each
    prompt, every one goes once through the judge path (vocoder, ASR, judge), the best and the
    worst of a prompt are its pair (margin >= 0, a tie has none), no pairs are stored, and the
    adapter is registered and samples like any other version's."""
    rt = tiny_rt
    judge = rt.judge("tiny-judge")
    calls0 = judge.calls
    ov = {"method": "online-dpo", "online_dpo": {
        "max_steps": 3, "num_generations": 4, "prompts_per_step": 2, "learning_rate": 1e-3,
        "lora_rank": 4}}
    res = rounds.run_rounds(rt, None, "ai", rounds=1, overrides=ov, evaluate=False)
    (done,) = res["rounds"]
    m = done["metrics"]
    assert m["steps"] == 3 and m["pairs"] == 3 * 2 and m["judged_samples"] == 3 * 2 * 4
    assert judge.calls - calls0 == m["judged_samples"]  # each sample judged once
    assert 0 <= m["tied_pairs"] <= m["pairs"]
    assert 1 <= m["score_first"] <= 5
    with rt.store.session() as s:
        (row,) = s.scalars(select(TrainingRound)).all()
        margins = [h["objective/scores_margin"] for h in row.metrics["history"]
                   if "objective/scores_margin" in h]
        assert len(margins) == 3 and all(x >= 0 for x in margins)
        assert row.method == "online-dpo" and row.status == "done" and row.n_pairs == 0
        assert row.train_config["num_generations"] == 4
        assert s.scalar(select(func.count()).select_from(PreferencePair)) == 0
    v = registry.get_version(rt, done["version"])
    assert v.adapter_intact() and v.config["method"] == "online-dpo"
    assert v.config["online-dpo"]["prompts_per_step"] == 2
    from backend.loop.generate import sample_continuations
    from models.interfaces import SamplingParams
    (conts,) = sample_continuations(rt, v, [[1, 2, 3]], SamplingParams(n=2, max_new_units=5))
    assert len(conts) == 2 and all(0 <= u < tiny.K for c in conts for u in c)
    with pytest.raises(ValueError, match="AI judge only"):
        rounds.start_round(rt, None, "human", overrides={"method": "online-dpo"})
    with pytest.raises(ValueError, match="even"):
        rounds.start_round(rt, None, "ai", overrides={"method": "online-dpo",
                                                      "num_generations": 3})
    with pytest.raises(ValueError, match="unknown online_dpo setting"):
        rounds.split_overrides({"online_dpo": {"num_generation": 4}})


def test_online_dpo_pairs_best_with_worst_and_ties_give_no_gradient(tiny_rt, tmp_path):
    """The pair of a prompt is its best- and worst-scored of k samples; when every sample of
    every prompt scores the same, each pair is one sample twice: the DPO loss is ln 2 and
    the adapter does not move."""
    import math

    from backend.config import OnlineDPOSettings
    from models.training import train_online_dpo

    lm = tiny_rt.unit_lm
    base = registry.ensure_baseline(tiny_rt)
    prompts = [{"prompt": train.make_examples(lm, [([k, k + 1], [], [])])[0]["prompt"],
                "prompt_id": k} for k in range(4)]
    cfg = OnlineDPOSettings(max_steps=2, num_generations=6, prompts_per_step=2,
                            learning_rate=1e-2, lora_rank=4)
    sampling = {"temperature": 1.0, "top_k": 0, "max_new_units": 6}
    seen = []

    def good_share(rows, ids):  # the share of "good" units, as the tiny judge
        out = []
        for c in ids:
            u = lm.ids_to_units(c)
            out.append(sum(x < tiny.K // 2 for x in u) / len(u) if u else None)
        seen.append(out)
        return out

    m = train_online_dpo(base.base_ref, [], lm.hf_tokenizer, prompts, good_share, cfg,
                         sampling, tmp_path / "a", suppress_tokens=lm.non_unit_ids)
    assert [len(s) for s in seen] == [2 * 6, 2 * 6]
    for step, h in zip(seen, [h for h in m["history"] if "objective/scores_margin" in h],
                       strict=True):
        groups = [[v for v in step[g * 6:(g + 1) * 6] if v is not None] for g in range(2)]
        expect = sum(max(g) - min(g) for g in groups) / 2
        assert h["objective/scores_margin"] == pytest.approx(expect, abs=1e-6)

    flat = train_online_dpo(base.base_ref, [], lm.hf_tokenizer, prompts,
                            lambda rows, ids: [3.0] * len(ids), cfg, sampling, tmp_path / "b",
                            suppress_tokens=lm.non_unit_ids)
    assert flat["tied_pairs"] == flat["pairs"] == 4
    losses = [h["loss"] for h in flat["history"] if "loss" in h]
    assert losses and all(x == pytest.approx(math.log(2), abs=1e-4) for x in losses)
    from safetensors.torch import load_file
    weights = load_file(str(tmp_path / "b" / "adapter_model.safetensors"))
    lora_b = [w for k, w in weights.items() if "lora_B" in k]
    assert lora_b and all(float(w.abs().max()) == 0.0 for w in lora_b)  # B starts at zero


def _write_benchmark(root: Path, name: str, pairs: list[tuple[list[int], list[int]]]) -> None:
    """A ZeroSpeech-layout benchmark in the tiny world's lossless audio code."""
    import soundfile as sf

    (root / name / "dev").mkdir(parents=True)
    lines = ["filename id correct"]
    for k, (good, bad) in enumerate(pairs):
        for tag, units, correct in (("g", good, 1), ("b", bad, 0)):
            sf.write(root / name / "dev" / f"{tag}{k}.wav", tiny.units_to_wave(units), tiny.SR,
                     subtype="FLOAT")
            lines.append(f"{tag}{k} {k} {correct}")
    (root / name / "dev.item").write_text("\n".join(lines) + "\n")


def test_full_finetune_round_makes_a_model_of_its_own(tiny_rt, tiny_lm_dir):
    """finetune = "full": the round trains every weight; the version is a whole model directory
    (its own base_ref) with weights unlike the base's; generation (what Listen plays) samples
    it and evaluation scores it through a unit LM of its own; a LoRA round from it adapts
    those weights, served from that same LM."""
    import numpy as np
    from safetensors.torch import load_file

    from backend.loop import evaluate
    from backend.loop.generate import generate, sample_continuations
    from db.schema import Sample
    from models.interfaces import SamplingParams

    rt = tiny_rt
    ov = {"method": "rft", "rft": {"max_steps": 3, "min_score": 3.0, "per_prompt": 1,
                                   "learning_rate": 1e-3, "finetune": "full"}}
    (done,) = rounds.run_rounds(rt, None, "ai", rounds=1, overrides=ov, evaluate=False)["rounds"]
    v = registry.get_version(rt, done["version"])
    assert v.finetune == "full" and v.base_ref == v.adapter_path and v.adapters == []
    assert v.adapter_intact() and v.config["rft"]["finetune"] == "full"
    d = Path(v.adapter_path)
    assert (d / "config.json").is_file() and not (d / "adapter_config.json").exists()
    base_w = load_file(str(tiny_lm_dir / "model.safetensors"))
    new_w = load_file(str(d / "model.safetensors"))
    assert base_w.keys() == new_w.keys()
    changed = [k for k in base_w if not torch.equal(base_w[k], new_w[k])]
    assert len(changed) > len(base_w) // 2  # not an adapter: (nearly) every tensor moved

    lm = rt.lm(v)
    assert lm is not rt.unit_lm and rt.adapter(v) is None and rt.lm(v) is lm
    base = registry.ensure_baseline(rt)
    assert rt.lm(base) is rt.unit_lm
    seqs = [[3, 9, 1, 12, 5], [0, 7, 7, 2]]
    own, _ = evaluate.score_sequences(rt, seqs, rt.adapter(v), lm=lm)
    ref, _ = evaluate.score_sequences(rt, seqs, None)
    assert not np.allclose(own, ref)

    generate(rt, v.id, split="dev", n=2, max_new_units=6)
    with rt.store.session() as s:
        units = s.scalars(select(Sample.units).where(Sample.model_version_id == v.id)).all()
    assert len(units) == 4 * 2 and all(0 <= u < tiny.K for us in units for u in us)
    _write_benchmark(rt.settings.data_dir / "benchmarks", "sblimp",
                     [([1, 2, 3, 4], [4, 3, 2, 1]), ([5, 6, 7], [7, 5, 6])])
    (res,) = [r for r in evaluate.evaluate_version(rt, v.name, ["sblimp"], "dev", judge=False)
              if r["metric"] == "accuracy"]
    assert res["n"] == 2 and 0 <= res["value"] <= 1

    # a LoRA round from the fully fine-tuned version: its adapter applies to those weights
    ov = {"method": "rft", "rft": {"max_steps": 2, "min_score": 1.0, "per_prompt": 1,
                                   "learning_rate": 1e-3, "lora_rank": 4},
          "max_prompts": 2, "n": 2}
    (child,) = rounds.run_rounds(rt, v.name, "ai", rounds=1, overrides=ov,
                                 evaluate=False)["rounds"]
    c = registry.get_version(rt, child["version"])
    assert c.finetune == "lora" and c.base_ref == v.adapter_path and c.adapters == [c.adapter_path]
    assert rt.lm(c) is lm and rt.adapter(c) == c.name
    (conts,) = sample_continuations(rt, c, [[1, 2, 3]], SamplingParams(n=2, max_new_units=5))
    assert len(conts) == 2 and all(0 <= u < tiny.K for cont in conts for u in cont)


def test_full_dpo_from_a_lora_parent_keeps_the_parent_as_reference(tiny_rt, tmp_path):
    """Full fine-tuning has no adapter to switch off, so TRL loads a frozen reference copy
    from the model's path: from a LoRA parent that must be the parent (base + its adapter),
    not the bare base. At the first step the policy is the parent, so DPO's implicit rewards
    are zero; and the saved version is a whole model equal to what was trained."""
    lm = tiny_rt.unit_lm
    base = registry.ensure_baseline(tiny_rt)
    lora = DPOSettings(learning_rate=5e-3, lora_rank=8, lora_alpha=16, max_steps=8,
                       batch_size=8, warmup_ratio=0.0)
    train.train_dpo(base.base_ref, [], lm.hf_tokenizer,
                    train.make_examples(lm, synthetic_triples()), lora, tmp_path / "parent")
    full = lora.model_copy(update={"finetune": "full", "max_steps": 2, "learning_rate": 1e-3})
    seen = {}
    probe = [3, 9, 1, 12, 5]

    def keep(model):
        model.eval()
        with torch.no_grad():
            seen["logits"] = model(input_ids=torch.tensor([lm._ids(probe)])).logits[0].clone()

    m = train.train_dpo(base.base_ref, [str(tmp_path / "parent")], lm.hf_tokenizer,
                        train.make_examples(lm, synthetic_triples(seed=1)), full,
                        tmp_path / "full", on_trained=keep)
    first = next(h for h in m["history"] if "rewards/chosen" in h)
    assert abs(first["rewards/chosen"]) < 1e-4 and abs(first["rewards/margins"]) < 1e-4
    out = tmp_path / "full"
    assert (out / "config.json").is_file() and not (out / "adapter_config.json").exists()
    from models.config import UnitLMConfig
    from models.unit_lm import HFUnitLM

    served = HFUnitLM(UnitLMConfig(kind="hf", path=str(out), n_units=tiny.K))
    assert torch.allclose(served.logits(probe), seen["logits"], atol=1e-5)
