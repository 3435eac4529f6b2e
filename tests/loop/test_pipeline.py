"""Import, generate, transcribe, judge on a real SQLite file with the tiny stand-in world."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select

from backend import files, jobs, prompts, registry
from backend.loop import generate, judge, transcribe
from db.schema import Judgment, Prompt, Sample
from tests.loop import tiny
from tests.loop.conftest import make_tiny_runtime


def count(rt, model, *where):
    with rt.store.session() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


def test_import_is_idempotent_and_copies_audio(tiny_rt):
    rt = tiny_rt
    assert count(rt, Prompt) == 16
    again = prompts.import_bundle_prompts(rt)
    assert again == {"added": 0, "skipped": 16, "total": 16}
    with rt.store.session() as s:
        p = s.scalars(select(Prompt).order_by(Prompt.id)).first()
        assert Path(p.audio_path).parent == rt.settings.audio_dir / "prompts"
        assert p.units and p.reference_text == " ".join(f"w{u}" for u in p.units)
        assert p.split == "train"
    assert registry.ensure_baseline(rt).name == registry.ensure_baseline(rt).name


def test_generate_resumes_and_writes_wavs(tiny_rt):
    rt = tiny_rt
    base = registry.ensure_baseline(rt).name
    res = generate.generate(rt, base, split="dev", n=3)
    assert res["new_samples"] == 12 and res["skipped_prompts"] == 0
    with rt.store.session() as s:
        rows = s.scalars(select(Sample)).all()
        s0 = rows[0]
        assert s0.sampling_params["n"] == 3 and s0.sampling_params["top_k"] == 25
        assert Path(s0.audio_path).name == f"{s0.prompt_id}_0_{s0.index}.wav"
        assert Path(s0.audio_path).parent.name == base
        assert all(Path(r.audio_path).exists() for r in rows)
        # the wav holds exactly the continuation (vocoded alone)
        wave, _ = files.read_wav(s0.audio_path)
        assert tiny.wave_to_units(wave) == s0.units or not s0.units
        s.delete(rows[-1])
    again = generate.generate(rt, base, split="dev", n=3)
    assert again["new_samples"] == 1 and again["skipped_prompts"] == 3
    assert not list((rt.settings.audio_dir / "samples").rglob(".tmp-*"))


def test_transcribe_only_missing(tiny_rt):
    rt = tiny_rt
    generate.generate(rt, registry.ensure_baseline(rt).name, split="dev", n=2)
    first = transcribe.transcribe(rt)
    assert first["transcribed"] == 8 + 16
    assert transcribe.transcribe(rt)["transcribed"] == 0
    with rt.store.session() as s:
        p = s.scalars(select(Prompt)).first()
        assert p.transcript == p.reference_text


def test_judge_stores_failures_and_retries_them(tmp_path, tiny_lm_dir):
    flaky = tiny.FlakyJudge(fail_first=3)
    rt = make_tiny_runtime(tmp_path / "d", tiny_lm_dir, judges=[tiny.TinyJudge(), flaky])
    generate.generate(rt, registry.ensure_baseline(rt).name, split="dev", n=2)
    stats = judge.judge(rt)
    assert stats["failed"] >= 3 and stats["scored"] + stats["failed"] == 16
    with rt.store.session() as s:
        bad = s.scalars(select(Judgment).where(Judgment.value.is_(None))).all()
        assert len(bad) == stats["failed"]
        assert all(j.error and j.kind == "ai" for j in bad)
        assert {j.rater for j in bad} >= {"ai:flaky-judge@v1"}
        j = s.scalars(select(Judgment).where(Judgment.value.is_not(None))).first()
        assert j.task_key == f"sample:{j.sample_id}" and j.rationale and j.raw
        assert 1 <= j.value <= 5 and j.cost == {"calls": 1}
        failed_ids = {(j.rater, j.sample_id) for j in bad if j.rater.startswith("ai:flaky")}
    calls = flaky.calls
    again = judge.judge(rt)  # retries only the failed rows, updating them in place
    assert again["skipped"] == 16 - stats["failed"]
    assert flaky.calls - calls == len(failed_ids)
    with rt.store.session() as s:
        assert s.scalar(select(func.count()).select_from(Judgment)) == 16
        rows = s.scalars(select(Judgment).where(Judgment.rater == "ai:flaky-judge@v1")).all()
        assert all(r.error is None or r.value is None for r in rows)
    rt.close()


def test_generate_job_runs_through_worker(tiny_rt):
    rt = tiny_rt
    jid = jobs.submit(rt, "generate", {"split": "dev", "n": 2})
    assert jobs.Worker(rt).run_once()
    job = jobs.get(rt, jid)
    assert job.status == "done", job.error
    assert job.result["new_samples"] == 8 and job.progress == 1.0
    jid = jobs.submit(rt, "judge", {})
    jobs.Worker(rt).run_once()
    assert jobs.get(rt, jid).status == "done"
