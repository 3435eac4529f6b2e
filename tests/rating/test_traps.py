"""Trap clips (ITU-T P.808 style): spoken instructions made with espeak-ng, trap tasks with their
expected answer, a wrong answer flags the rater, and trap clips stay out of everything else."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from backend import leaderboard, media, prompts, rating, traps, users
from backend.config import Settings
from backend.loop import pairs
from backend.runtime import Runtime
from db.schema import RatingTask, Sample
from tests.rating.seed import seed

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def rt(tmp_path):
    r = Runtime(Settings(data_dir=tmp_path / "data",
                         database_url=f"sqlite:///{tmp_path / 'store.db'}"))
    r.settings.rating.gold_fraction = 1.0  # QC tasks first, so the trap comes up at once
    r.settings.rating.min_heard_fraction = 0.0  # the play gate has its own tests: no waiting
    seed(r, n_prompts=4, raters=("r1", "r2"))
    yield r
    r.close()


def _task(rt, task_id: int) -> tuple[RatingTask, Sample, Sample | None]:
    with rt.store.session() as s:
        t = s.get(RatingTask, task_id)
        a = s.get(Sample, t.sample_a_id)
        b = s.get(Sample, t.sample_b_id) if t.sample_b_id else None
        s.expunge_all()
    return t, a, b


def test_add_traps_makes_playable_spoken_clips_with_answers(rt):
    made = traps.add_traps(rt, 4, ["this", "tie", "both_bad", "mos_bad"])
    assert [(m["trap"], m["answer"]) for m in made] == [
        ("this", "A"), ("tie", "tie"), ("both_bad", "both_bad"), ("mos_bad", "1-1")]
    assert len({m["prompt_id"] for m in made}) == 4  # spread over prompts
    for m in made:
        task, clip, other = _task(rt, m["task_id"])
        assert task.is_trap and task.gold_answer == m["answer"]
        assert clip.is_trap and not clip.units and clip.transcript == traps.TRAPS[m["trap"]].text
        assert (other is None) == (m["trap"] == "mos_bad")
        assert other is None or (not other.is_trap and other.prompt_id == clip.prompt_id)
        path = media.resolve_audio(rt, clip.audio_path)  # servable: inside the data dir
        wave, sr = sf.read(path)
        assert 2.0 < len(wave) / sr < 10.0  # a spoken sentence
        assert float(np.sqrt(np.mean(wave ** 2))) > 0.02  # not silence
    # the same instruction is synthesized once and shared
    again = traps.add_traps(rt, 2, ["both_bad"])
    assert {m["audio"] for m in again} == {made[2]["audio"]}


def _shown_side(t: dict, clip_path: str) -> str:
    return next(side for side, p in t["audio"].items() if p == clip_path)


def _answer_trap(rt, name: str, right: bool) -> rating.VoteResult:
    """The rater gets the trap task first (gold_fraction 1), plays it and answers."""
    u = users.find_user(rt, name).id
    t = rating.next_task(rt, u)
    task, clip, _ = _task(rt, t["task_id"])
    assert task.is_trap
    for side in t["audio"]:
        rating.record_served(rt, u, t["assignment_id"], side)
        rating.record_heard(rt, u, t["assignment_id"], side, [[0.0, 1.0]])
    trap_side = _shown_side(t, clip.audio_path)
    choice = trap_side if right else {"A": "B", "B": "A"}[trap_side]
    return rating.vote(rt, u, t["assignment_id"], choice)


def test_wrong_answer_on_a_trap_fails_the_rater(rt):
    traps.add_traps(rt, 1, ["this"])
    bad = _answer_trap(rt, "r1", right=False)
    good = _answer_trap(rt, "r2", right=True)
    assert (bad.qc, good.qc) == ("fail", "pass")
    assert set(bad.reveal.values()) >= {"an attention check"}
    report = {r["user"]: r for r in rating.rater_report(rt)}
    assert report["r1"]["traps_failed"] == "1/1" and report["r1"]["status"] == "failed QC"
    assert report["r2"]["traps_failed"] == "0/1" and report["r2"]["status"] == "ok"
    assert all(v["flagged"] for v in rating.votes_of(rt, users.find_user(rt, "r1").id))
    assert not any(v["flagged"] for v in rating.votes_of(rt, users.find_user(rt, "r2").id))


def test_trap_clips_stay_out_of_tasks_listen_and_statistics(rt):
    (made,) = traps.add_traps(rt, 1, ["this"])
    _answer_trap(rt, "r2", right=True)  # a passed trap: unflagged, still no statistic
    task, clip, real = _task(rt, made["task_id"])
    rating.sync_tasks(rt, per_prompt_pairs=5, mos=True)
    with rt.store.session() as s:
        paired = s.query(RatingTask).filter(
            (RatingTask.sample_a_id == clip.id) | (RatingTask.sample_b_id == clip.id)).count()
    assert paired == 1  # only its trap task, never an ordinary A/B or MOS task
    view = prompts.prompt_view(rt, clip.prompt_id, per_version=10)
    assert clip.id not in [x["id"] for v in view["versions"] for x in v["samples"]]
    assert leaderboard.leaderboard(rt)["n_ab_votes"] == 0
    assert rating.sample_ratings(rt, [real.id])[real.id]["ab"] == {"win": 0, "loss": 0, "tie": 0}
    votes, _mos = pairs.human_feedback(rt, "train")
    assert votes == []


def test_add_traps_refuses_without_samples_or_bad_kind(tmp_path):
    r = Runtime(Settings(data_dir=tmp_path / "d", database_url=f"sqlite:///{tmp_path / 's.db'}"))
    with pytest.raises(rating.RatingError, match="generate samples first"):
        traps.add_traps(r, 2)
    with pytest.raises(rating.RatingError, match="trap kinds"):
        traps.add_traps(r, 2, ["left"])
    r.close()


def test_cli_add_traps(rt):
    env = {**os.environ, "STUDIO_DATA_DIR": str(rt.settings.data_dir),
           "STUDIO_DATABASE_URL": rt.settings.database_url, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "backend", "rating", "add-traps", "--n", "2",
                           "--kind", "both_bad"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("(expects both_bad)") == 2
    assert rating.task_counts(rt)["qc_tasks"] == 2


def test_missing_espeak_is_a_clear_error_and_stores_nothing(rt, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no espeak-ng on PATH
    with pytest.raises(rating.RatingError, match="espeak-ng is not installed"):
        traps.add_traps(rt, 2, ["tie"])
    assert rating.task_counts(rt)["qc_tasks"] == 0
    assert not (rt.settings.audio_dir / "traps").exists()
