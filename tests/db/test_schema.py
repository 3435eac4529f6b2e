"""The schema makes bad rows impossible: each case here must be refused by the database itself."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import IntegrityError

from db.schema import (
    EvalResult,
    Job,
    Judgment,
    ModelVersion,
    Prompt,
    RatingTask,
    Sample,
    User,
)
from db.session import Store


@pytest.fixture
def store(db_url):
    st = Store(db_url)
    st.upgrade()
    yield st
    st.dispose()


@pytest.fixture
def world(store):
    """A user, a baseline, a prompt and two samples to hang judgments on."""
    with store.session() as s:
        user = User(name="rita", password_hash="x", role="rater")
        base = ModelVersion(name="base", kind="baseline", base_ref="twist")
        s.add_all([user, base])
        s.flush()
        prompt = Prompt(audio_path="p.wav", audio_sha256="a" * 64, duration_s=3.0)
        s.add(prompt)
        s.flush()
        a = Sample(prompt_id=prompt.id, model_version_id=base.id, seed=0, index=0)
        b = Sample(prompt_id=prompt.id, model_version_id=base.id, seed=0, index=1)
        s.add_all([a, b])
        s.flush()
        return {"user": user.id, "base": base.id, "prompt": prompt.id, "a": a.id, "b": b.id}


def _insert(store, row) -> None:
    with store.session() as s:
        s.add(row)


def mos(w, value=4.0, rater=None, task="t1"):
    return Judgment(
        kind="mos", aspect="meaningfulness", rater=rater or f"user:{w['user']}", task_key=task,
        sample_id=w["a"], user_id=w["user"], value=value,
    )


BAD_ROWS = {
    "unknown role": lambda w: User(name="x", password_hash="h", role="superuser"),
    "aligned version without parent": lambda w: ModelVersion(
        name="v", kind="aligned", adapter_path="/a"
    ),
    "aligned version without adapter": lambda w: ModelVersion(
        name="v", kind="aligned", parent_id=w["base"]
    ),
    "unknown version kind": lambda w: ModelVersion(name="v", kind="weird"),
    "sample of a missing prompt": lambda w: Sample(
        prompt_id=999_999, model_version_id=w["base"], seed=0
    ),
    "prompt with zero duration": lambda w: Prompt(
        audio_path="q.wav", audio_sha256="b" * 64, duration_s=0.0
    ),
    "MOS above 5": lambda w: mos(w, value=6.0),
    "MOS below 1": lambda w: mos(w, value=0.0),
    "MOS without value": lambda w: mos(w, value=None),
    "A/B without second sample": lambda w: Judgment(
        kind="ab", rater="user:1", task_key="t", sample_id=w["a"], user_id=w["user"], choice="A"
    ),
    "A/B with unknown choice": lambda w: Judgment(
        kind="ab", rater="user:1", task_key="t", sample_id=w["a"], sample_b_id=w["b"],
        user_id=w["user"], choice="C",
    ),
    "human judgment without user": lambda w: Judgment(
        kind="mos", rater="user:?", task_key="t", sample_id=w["a"], value=3.0
    ),
    "AI judgment with neither score nor error": lambda w: Judgment(
        kind="ai", rater="ai:j@v1", task_key="sample:1", sample_id=w["a"]
    ),
    "unknown aspect": lambda w: Judgment(
        kind="ai", aspect="vibes", rater="ai:j@v1", task_key="s", sample_id=w["a"], value=3.0
    ),
    "job progress above 1": lambda w: Job(kind="generate", progress=1.5),
    "job with unknown status": lambda w: Job(kind="generate", status="limbo"),
    "A/B task comparing a sample with itself": lambda w: RatingTask(
        kind="ab", sample_a_id=w["a"], sample_b_id=w["a"]
    ),
    "eval result with inverted CI": lambda w: EvalResult(
        model_version_id=w["base"], benchmark="swuggy", metric="acc", value=0.5, n=10,
        ci_low=0.6, ci_high=0.4,
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_ROWS))
def test_bad_row_is_refused(store, world, case):
    with pytest.raises(IntegrityError):
        _insert(store, BAD_ROWS[case](world))


def test_good_rows_are_accepted(store, world):
    _insert(store, mos(world))
    _insert(store, Judgment(
        kind="ab", rater=f"user:{world['user']}", task_key="ab1", sample_id=world["a"],
        sample_b_id=world["b"], user_id=world["user"], choice="tie",
    ))
    _insert(store, Judgment(
        kind="ai", rater="ai:j@v1", task_key=f"sample:{world['a']}", sample_id=world["a"],
        error="timeout",
    ))
    with store.session() as s:
        assert s.query(Judgment).count() == 3


def test_one_vote_per_rater_and_task(store, world):
    _insert(store, mos(world, value=4.0))
    with pytest.raises(IntegrityError):
        _insert(store, mos(world, value=2.0))
    _insert(store, mos(world, value=2.0, task="t2"))  # another task is fine
    with store.session() as s:
        assert sorted(j.value for j in s.query(Judgment)) == [2.0, 4.0]


def test_duplicate_user_name_is_refused(store, world):
    with pytest.raises(IntegrityError):
        _insert(store, User(name="rita", password_hash="y", role="admin"))


def test_deleting_a_prompt_cascades_to_its_samples(store, world):
    with store.session() as s:
        s.delete(s.get(Prompt, world["prompt"]))
    with store.session() as s:
        assert s.query(Sample).count() == 0
