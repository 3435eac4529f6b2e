"""Degenerate items never reach raters or training, on a real SQLite store: no A/B task between
identical unit sequences, no task on a clip that cannot play or an empty continuation, no
preference pair with an empty side (issue 20, item 6)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
from sqlalchemy import select

from backend import rating, traps
from backend.config import Settings
from backend.loop import pairs
from backend.queries import ai_rater
from backend.runtime import Runtime
from db.schema import Judgment, RatingTask, Sample
from tests.rating.seed import SR, seed


@pytest.fixture
def rt(tmp_path):
    r = Runtime(Settings(data_dir=tmp_path / "data",
                         database_url=f"sqlite:///{tmp_path / 'store.db'}"))
    yield r
    r.close()


@pytest.fixture
def world(rt):
    """2 prompts x 2 versions x 3 samples, each with its own units and a 0.6 s clip; no tasks."""
    return seed(rt, n_prompts=2, raters=("r1",), samples_per_version=3, tasks=False)


def sample(rt, prompt_id: int, version_id: int, index: int) -> Sample:
    with rt.store.session() as s:
        smp = s.scalar(select(Sample).where(Sample.prompt_id == prompt_id, Sample.index == index,
                                            Sample.model_version_id == version_id))
        s.expunge(smp)
        return smp


def set_sample(rt, sid: int, **values) -> None:
    with rt.store.session() as s:
        smp = s.get(Sample, sid)
        for k, v in values.items():
            setattr(smp, k, v)


def tasks(rt) -> list[tuple[str, Sample, Sample | None]]:
    with rt.store.session() as s:
        out = []
        for t in s.scalars(select(RatingTask).order_by(RatingTask.id)):
            a = s.get(Sample, t.sample_a_id)
            b = s.get(Sample, t.sample_b_id) if t.sample_b_id else None
            out.append((t.kind, a, b))
        s.expunge_all()
        return out


def test_ab_tasks_never_compare_identical_unit_sequences(rt, world):
    """Two versions often sample the very same continuation (same seed, little training): a
    rater can only guess between identical clips, so that comparison is refused and the next
    same-index pair is taken instead."""
    p0, p1 = world["prompts"]
    base, aligned = world["base"].id, world["aligned"].id
    same = sample(rt, p0, base, 0).units
    set_sample(rt, sample(rt, p0, aligned, 0).id, units=list(same))
    made = rating.sync_tasks(rt, per_prompt_pairs=2)
    ab = [(a, b) for kind, a, b in tasks(rt) if kind == "ab"]
    assert all(a.units != b.units for a, b in ab)
    assert made == {"ab": 4, "mos": 0, "refused": 1}
    assert sorted(a.index for a, _ in ab if a.prompt_id == p0) == [1, 2]  # filled from index 2
    assert sorted(a.index for a, _ in ab if a.prompt_id == p1) == [0, 1]
    assert rating.sync_tasks(rt, per_prompt_pairs=2)["ab"] == 0  # still idempotent


def _zero_frames(path: str) -> None:
    sf.write(path, np.zeros(0, dtype=np.float32), SR)


def _not_audio(path: str) -> None:
    with open(path, "w") as f:
        f.write("not audio")


def _missing(path: str) -> None:
    import os

    os.unlink(path)


@pytest.mark.parametrize("spoil", [
    pytest.param(lambda rt, smp: _zero_frames(smp.audio_path), id="0-frame wav"),
    pytest.param(lambda rt, smp: _not_audio(smp.audio_path), id="unreadable file"),
    pytest.param(lambda rt, smp: _missing(smp.audio_path), id="missing file"),
    pytest.param(lambda rt, smp: (set_sample(rt, smp.id, units=[]), _zero_frames(smp.audio_path)),
                 id="empty continuation"),
])
def test_no_task_on_a_clip_that_cannot_be_rated(rt, world, spoil):
    """A clip that does not play (the player shows duration NaN and never ends) or an empty
    continuation gets neither an A/B nor a MOS task; every other clip still does."""
    p0, _ = world["prompts"]
    bad = sample(rt, p0, world["aligned"].id, 0)
    spoil(rt, bad)
    made = rating.sync_tasks(rt, per_prompt_pairs=3, mos=True)
    made_tasks = tasks(rt)
    rated = {smp.id for _, a, b in made_tasks for smp in (a, b) if smp is not None}
    assert bad.id not in rated
    assert made == {"ab": 5, "mos": 11, "refused": 2}  # its A/B and its MOS task
    for _, a, b in made_tasks:
        for smp in (a, b):
            if smp is not None:
                assert sf.info(smp.audio_path).frames > 0 and smp.units


def test_gold_tasks_refuse_silent_clips_and_answers_no_one_can_hear(rt, world):
    """A gold check on a clip that cannot play, or "A is better" between identical clips,
    would fail honest raters; "tie" between identical clips is a fair consistency check."""
    p0, _ = world["prompts"]
    a = sample(rt, p0, world["base"].id, 0)
    b = sample(rt, p0, world["aligned"].id, 0)
    _zero_frames(b.audio_path)
    with pytest.raises(rating.RatingError, match="no playable audio"):
        rating.add_qc_task(rt, a.id, b.id, "A")
    with pytest.raises(rating.RatingError, match="no playable audio"):
        rating.add_qc_task(rt, b.id, None, "4-5")
    c = sample(rt, p0, world["aligned"].id, 1)
    set_sample(rt, c.id, units=list(a.units))
    with pytest.raises(rating.RatingError, match="same unit sequence"):
        rating.add_qc_task(rt, a.id, c.id, "B")
    assert rating.add_qc_task(rt, a.id, c.id, "tie") > 0
    assert [kind for kind, _, _ in tasks(rt)] == ["ab"]


def test_trap_tasks_pair_only_with_clips_that_play(rt, world, monkeypatch):
    """A trap is paired with a real continuation the rater must play to the end: never one
    with 0 frames."""
    monkeypatch.setattr(traps, "trap_audio", lambda rt, kind: _trap_wav(rt, kind))
    silent = set()
    with rt.store.session() as s:
        for smp in s.scalars(select(Sample).where(Sample.model_version_id == world["base"].id)):
            silent.add(smp.id)
            _zero_frames(smp.audio_path)
    made = traps.add_traps(rt, 6, ["this"])
    paired = {b.id for kind, _, b in tasks(rt) if b is not None}
    assert len(made) == 6 and not paired & silent


def _trap_wav(rt, kind: str):
    path = rt.settings.audio_dir / "traps" / f"{kind}.wav"
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.full(SR, 0.1, dtype=np.float32), SR)
    return path


def test_ai_pairs_never_take_an_empty_continuation(rt, world):
    """A judge scores an empty continuation lowest, which made it the prompt's "rejected": DPO
    then learns only "say something". Selection leaves empty continuations out; the prompt is
    paired on its real continuations."""
    base = world["base"].id
    judges = [j.name for j in rt.settings.models.judges if j.trains]
    for name in judges:
        rt._components[f"judge:{name}"] = SimpleNamespace(name=name, prompt_version="v1")
    empty = set()
    with rt.store.session() as s:
        for smp in s.scalars(select(Sample).where(Sample.model_version_id == base)):
            if smp.index == 2:  # what generation stores for a model that stops at once
                smp.units, smp.transcript = [], ""
                _zero_frames(smp.audio_path)
                empty.add(smp.id)
            score = {0: 4.5, 1: 2.0, 2: 1.0}[smp.index]
            for name in judges:
                s.add(Judgment(kind="ai", rater=ai_rater(name, "v1"), task_key=f"sample:{smp.id}",
                               sample_id=smp.id, judge_name=name, prompt_version="v1",
                               value=score))
    sel = rt.settings.selection.model_copy(update={"strategy": "ai"})
    found = pairs.select_pairs(rt, "ai", base, sel, pairs.Thresholds(3.0, 2.0, 1.0), 1, "train")
    assert len(found) == 2  # one per prompt
    assert not {p.rejected_id for p in found} & empty
    assert not {p.chosen_id for p in found} & empty
    with rt.store.session() as s:
        assert all(s.get(Sample, p.rejected_id).index == 1 for p in found)
