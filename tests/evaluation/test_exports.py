"""Exports: CSV/JSONL content, and the HF dataset round trip into one TRL DPO step."""

from __future__ import annotations

import csv
import json
import uuid

import pytest
import soundfile as sf
from sqlalchemy import select

from backend import exports, registry
from backend.config import Settings
from backend.runtime import Runtime
from db.schema import Judgment, PreferencePair, Prompt, Sample, TrainingRound, User

K = 12
OFFSET = 4


def _tiny_lm_dir(path):
    """A random 2-layer Llama (hidden 32) with a WordLevel unit tokenizer, in the HF unit-LM
    layout (`studio_unit_lm.json`)."""
    import torch
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    path.mkdir(parents=True)
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3}
    vocab.update({f"<u{k}>": OFFSET + k for k in range(K)})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex(r"<[^>]+>"), "isolated")])
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>",
                            eos_token="</s>", unk_token="<unk>").save_pretrained(path)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                      max_position_embeddings=128, pad_token_id=0, bos_token_id=1,
                      eos_token_id=2)
    LlamaForCausalLM(cfg).save_pretrained(path)
    (path / "studio_unit_lm.json").write_text(json.dumps(
        {"n_units": K, "unit_offset": OFFSET, "bos_token_id": 1, "eos_token_id": 2,
         "pad_token_id": 0}))
    return path


@pytest.fixture
def store(tmp_path):
    rt = Runtime(Settings(data_dir=tmp_path / "data"))
    base = registry.create_baseline(rt, "base", "ref")
    ids = {}
    with rt.store.session() as s:
        u = User(name="r", password_hash="x", role="rater")
        s.add(u)
        s.flush()
        ids["user"] = u.id
        rnd = TrainingRound(parent_version_id=base.id, round_index=1, judges=[
            {"name": "j", "judge": "j@1", "used": True, "weight": 1.0, "reason": "ok",
             "metric": "kappa", "on": "ab", "agreement": {"value": 0.61, "low": 0.4,
                                                          "high": 0.8, "n": 40},
             "n_items": 40}])
        s.add(rnd)
        s.flush()
        ids["round"] = rnd.id
        for k in range(6):
            key = uuid.uuid4().hex
            p = Prompt(audio_path=f"/{key}.wav", audio_sha256=key, duration_s=1.0,
                       units=[k % K, (k + 1) % K, (k + 2) % K])
            s.add(p)
            s.flush()
            a = Sample(prompt_id=p.id, model_version_id=base.id, seed=0, index=0,
                       units=[1, 2, 3, 4])
            b = Sample(prompt_id=p.id, model_version_id=base.id, seed=0, index=1,
                       units=[9, 9, 8])
            s.add_all([a, b])
            s.flush()
            # pairs 0-2 from the AI judge, 3-5 from people (pair 5 from both, merged)
            ai = {"strategy": "ai_score", "judges": ["j"]}
            human = {"strategy": "human_ab_majority", "raters": [f"user:{u.id}"]}
            prov = ai if k < 3 else human if k < 5 else {
                **ai, "sources": ["ai", "human"], "parts": [{"source": "ai", **ai},
                                                          {"source": "human", **human}]}
            s.add(PreferencePair(round_id=rnd.id, prompt_id=p.id, chosen_sample_id=a.id,
                                 rejected_sample_id=b.id, source="ai" if k < 3 else "human"
                                 if k < 5 else "both", margin=2.0, provenance=prov))
            s.add(Judgment(kind="ab", rater=f"user:{u.id}", task_key=f"t{k}", sample_id=a.id,
                           sample_b_id=b.id, choice="A", user_id=u.id, flagged=k == 0,
                           flag_reason="admin" if k == 0 else None))
            s.add(Judgment(kind="ai", rater="ai:j@1", task_key=f"s{a.id}", sample_id=a.id,
                           judge_name="j", value=4.0, rationale='says "good", really'))
    yield rt, ids
    rt.close()


def test_judgments_csv_and_jsonl(store):
    rt, _ = store
    p = exports.export_judgments(rt, "csv")
    assert p.parent == rt.settings.exports_dir and p.suffix == ".csv"
    rows = list(csv.DictReader(p.open()))
    assert len(rows) == 11  # 12 minus the flagged one
    assert {r["kind"] for r in rows} == {"ab", "ai"}
    assert rows[-1]["version_a"] == "base"
    assert any(r["rationale"] == 'says "good", really' for r in rows)
    p2 = exports.export_judgments(rt, "jsonl", include_flagged=True)
    assert len(p2.read_text().splitlines()) == 12
    assert not list(rt.settings.exports_dir.glob(".tmp-*"))


def test_pairs_hf_round_trip_trains_one_dpo_step(store, tmp_path):
    import torch
    from datasets import load_from_disk
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer

    from models.config import UnitLMConfig
    from models.unit_lm import HFUnitLM

    rt, ids = store
    lm_dir = _tiny_lm_dir(tmp_path / "lm")
    rt._components["unit_lm"] = HFUnitLM(UnitLMConfig(kind="hf", path=str(lm_dir),
                                                      n_units=K, device="cpu"))
    path = exports.export_pairs(rt, "hf", round_id=ids["round"])
    assert path.name.startswith(f"pairs-round{ids['round']}") and path.is_dir()
    ds = load_from_disk(str(path))
    assert len(ds) == 6
    row = ds[0]
    assert row["chosen"] == " <u1> <u2> <u3> <u4>" and row["rejected"] == " <u9> <u9> <u8>"
    assert row["prompt"].endswith("<u0> <u1> <u2>")
    assert row["chosen_units"] == [1, 2, 3, 4]
    # provenance: which humans, which judges and their agreement at the time
    uid = ids["user"]
    assert [(r["humans"], r["judges"], r["judge_agreement"]) for r in ds] == \
        [([], ["j@1"], [0.61])] * 3 + [([f"user:{uid}"], [], [])] * 2 + \
        [([f"user:{uid}"], ["j@1"], [0.61])]
    assert json.loads(ds[5]["provenance"])["sources"] == ["ai", "human"]
    assert len(ds.filter(lambda r: len(r["humans"]) > 0)) == 3  # a run can filter on it

    jsonl = exports.export_pairs(rt, "jsonl")
    assert json.loads(jsonl.read_text().splitlines()[0])["prompt"] == row["prompt"]
    with pytest.raises(exports.ExportError, match="no training round"):
        exports.export_pairs(rt, "csv", round_id=999)

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(str(lm_dir), dtype=torch.float32)
    cfg = DPOConfig(output_dir=str(tmp_path / "dpo"), per_device_train_batch_size=2,
                    max_steps=1, use_cpu=True, bf16=False, gradient_checkpointing=False,
                    learning_rate=1e-3, report_to=[], save_strategy="no", logging_steps=1,
                    max_length=64)
    trainer = DPOTrainer(
        model=model, args=cfg, train_dataset=ds, processing_class=rt.unit_lm.hf_tokenizer,
        peft_config=LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                               task_type="CAUSAL_LM"))
    out = trainer.train()
    assert out.global_step == 1
    assert torch.isfinite(torch.tensor(out.training_loss))


def test_cli_export(store, monkeypatch, capsys, tmp_path):
    from backend import cli
    from backend.cli import common

    rt, _ = store
    monkeypatch.setattr(common, "runtime_from", lambda args: rt)
    out = tmp_path / "j.jsonl"
    assert cli.main(["export", "judgments", "--format", "jsonl", "--out", str(out)]) == 0
    assert out.is_file() and "exported judgments" in capsys.readouterr().out
    assert cli.main(["export", "judgments", "--format", "jsonl", "--out", str(out)]) == 2
    assert cli.main(["export", "judgments", "--round", "1"]) == 2


def test_judgment_export_marks_answers_to_quality_control_tasks(store):
    """A rater's answer to a trap (a spoken instruction) or gold task is a check of the rater:
    the export says so, so nobody mistakes it for an opinion about the model."""
    from backend import rating
    from tests.rating.seed import SR, tone

    rt, _ = store
    with rt.store.session() as s:
        ids = s.scalars(select(Sample.id).order_by(Sample.id).limit(2)).all()
        user = s.scalar(select(User.id))
        for sid in ids:  # a QC task needs clips that play
            path = rt.settings.audio_dir / f"{sid}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, tone(300 + sid), SR)
            s.get(Sample, sid).audio_path = str(path)
    gold = rating.add_qc_task(rt, ids[0], ids[1], "A")
    trap = rating.add_qc_task(rt, ids[0], ids[1], "B", trap=True)
    with rt.store.session() as s:
        for key, task in (("gold", gold), ("trap", trap)):
            s.add(Judgment(kind="ab", rater=f"user:{user}", task_key=key, task_id=task,
                           sample_id=ids[0], sample_b_id=ids[1], choice="A", user_id=user))
    p = exports.export_judgments(rt, "jsonl")
    qc = {r["task_key"]: r["qc"] for r in map(json.loads, p.read_text().splitlines())}
    assert qc["gold"] == "gold" and qc["trap"] == "trap"
    assert qc["t1"] is None and qc[next(k for k in qc if k.startswith("s"))] is None


def test_pair_export_leaves_out_pairs_with_an_empty_continuation(store):
    """A pair stored before selection refused empty continuations (issue 20: 1 of 17 exported
    pairs had an empty rejected side) is not handed to a DPO trainer; the others all are."""
    rt, ids = store
    with rt.store.session() as s:
        p = s.scalar(select(Prompt).order_by(Prompt.id))
        chosen = s.scalar(select(Sample.id).where(Sample.prompt_id == p.id, Sample.index == 0))
        empty = Sample(prompt_id=p.id, model_version_id=s.get(Sample, chosen).model_version_id,
                       seed=0, index=2, units=[])
        s.add(empty)
        s.flush()
        s.add(PreferencePair(round_id=ids["round"], prompt_id=p.id, chosen_sample_id=chosen,
                             rejected_sample_id=empty.id, source="ai", margin=3.0))
        s.add(PreferencePair(round_id=ids["round"], prompt_id=p.id, chosen_sample_id=empty.id,
                             rejected_sample_id=chosen, source="human", margin=1.0))
    rows = [json.loads(x) for x in exports.export_pairs(rt, "jsonl").read_text().splitlines()]
    assert len(rows) == 6
    assert all(r["chosen_units"] and r["rejected_units"] for r in rows)
    assert all(r["chosen"].strip() and r["rejected"].strip() for r in rows)
