"""Flag, never drop: every human vote excluded from statistics stays in the store with its
reason, and the per-day accounting adds up (backend.rating.vote_accounting), through the rating
service on the real store (SQLite file; PostgreSQL too with TEST_DATABASE_URL)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from backend import leaderboard, rating, users
from backend.config import Settings
from backend.runtime import Runtime
from db.schema import Judgment, RatingTask, Sample
from tests.rating.seed import play_through, seed


@pytest.fixture
def rt(tmp_path, db_url):
    r = Runtime(Settings(data_dir=tmp_path / "data", database_url=db_url))
    r.settings.rating.gold_fraction = 0.0
    r.settings.rating.min_heard_fraction = 0.0  # the play gate has its own tests: no waiting
    yield r
    r.close()


def uid(rt, name):
    return users.find_user(rt, name).id


def answer(rt, u, t, choice_for_qc=None, other="tie"):
    """Play both clips and vote: `choice_for_qc(task)` on gold/trap tasks (stored terms)."""
    play_through(rt, u, t)
    with rt.store.session() as s:
        task = s.get(RatingTask, t["task_id"])
        gold = task.gold_answer
        swapped = t["audio"]["A"] != s.get(Sample, task.sample_a_id).audio_path
    choice = other if gold is None else choice_for_qc(gold)
    if swapped and choice in ("A", "B"):
        choice = "B" if choice == "A" else "A"
    return rating.vote(rt, u, t["assignment_id"], choice)


def qc_task(rt, answer_, trap=False):
    with rt.store.session() as s:
        a, b = s.scalars(select(Sample.id).order_by(Sample.id).limit(2)).all()
    return rating.add_qc_task(rt, a, b, answer_, trap)


def test_excluded_votes_stay_stored_with_their_reason_and_add_up(rt):
    seed(rt, n_prompts=3, raters=("honest", "careless", "outage"))
    trap = qc_task(rt, "both_bad", trap=True)
    golds = [qc_task(rt, "A") for _ in range(3)]
    honest, careless, out = uid(rt, "honest"), uid(rt, "careless"), uid(rt, "outage")

    # honest answers every check right; careless fails the trap
    while (t := rating.next_task(rt, honest)) is not None:
        answer(rt, honest, t, lambda gold: gold)
    while (t := rating.next_task(rt, careless)) is not None:
        answer(rt, careless, t, lambda gold: "A")
    # "outage" answers every check wrong while its clips are missing: the checks cannot run
    with rt.store.session() as s:
        qc_clips = {s.get(Sample, s.get(RatingTask, tid).sample_a_id).audio_path
                    for tid in [trap, *golds]}
    saved = {p: Path(p).read_bytes() for p in qc_clips}
    for p in qc_clips:
        Path(p).unlink()
    while (t := rating.next_task(rt, out)) is not None:
        if t["task_id"] in (trap, *golds):
            for p, data in saved.items():  # playable for the rater, gone for the check
                Path(p).write_bytes(data)
            play_through(rt, out, t)
            for p in qc_clips:
                Path(p).unlink()
            rating.vote(rt, out, t["assignment_id"], "tie")
        else:
            answer(rt, out, t)

    with rt.store.session() as s:
        stored = s.scalar(select(func.count()).select_from(Judgment)
                          .where(Judgment.kind == "ab"))
        reasons = dict(s.execute(select(Judgment.user_id, Judgment.flag_reason)
                                 .where(Judgment.kind == "ab").distinct()).all())
    n_tasks = 6 + 4  # 3 prompts x 2 same-index pairs, 1 trap, 3 gold
    assert stored == 3 * n_tasks  # every vote kept
    assert reasons[careless] == "trap_failed" and reasons[honest] is None
    assert reasons[out] is None  # outages are never failures

    (day,) = rating.vote_accounting(rt)
    assert day["votes"] == stored
    assert day["trap_failed"] == n_tasks  # all of careless's votes, kept, flagged
    assert day["trap_answer"] == 2  # honest's and outage's trap answers: QC, never counted
    assert day["qc_outages"] == 4
    assert day["clean"] == stored - n_tasks - 2
    assert day["clean"] + sum(day[k] for k in rating.EXCLUSION_REASONS) == day["votes"]
    assert day["clean_rate"] == pytest.approx(day["clean"] / day["votes"])
    # the statistics count exactly the clean votes
    assert leaderboard.leaderboard(rt, "human")["n_ab_votes"] == day["clean"]


def test_a_failed_raters_later_votes_are_flagged_too(rt):
    seed(rt, n_prompts=3, raters=("careless",))
    trap = qc_task(rt, "both_bad", trap=True)
    rt.settings.rating.gold_fraction = 1.0  # the trap first
    u = uid(rt, "careless")
    order = []
    while (t := rating.next_task(rt, u)) is not None:
        order.append(t["task_id"])
        answer(rt, u, t, lambda gold: "A")
    assert order[0] == trap and len(order) == 7  # six votes after the failed trap
    votes = rating.votes_of(rt, u)
    assert votes and all(v["flagged"] for v in votes)
    with rt.store.session() as s:
        assert set(s.scalars(select(Judgment.flag_reason).where(Judgment.user_id == u))) == \
            {"trap_failed"}


def test_admin_flag_has_its_own_reason_and_unflag_clears_it(rt):
    seed(rt, n_prompts=2, raters=("r1",))
    u = uid(rt, "r1")
    answer(rt, u, rating.next_task(rt, u))
    assert rating.set_flagged(rt, "r1", True) == 1
    assert rating.vote_accounting(rt)[0]["admin"] == 1
    rating.set_flagged(rt, "r1", False)
    day = rating.vote_accounting(rt)[0]
    assert day["admin"] == 0 and day["clean"] == 1
