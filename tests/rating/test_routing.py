"""Task routing (`rating.routing`, backend.routing) through the rating service on the real store:
under `active` the tasks where a human vote buys the most come first, and today's guarantees
hold (never the same task twice to a rater, the gold/trap share, every task covered)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from backend import rating, users
from backend.config import Settings
from backend.runtime import Runtime
from db.schema import Judgment, RatingTask
from tests.rating.seed import play_through, seed


@pytest.fixture
def rt(tmp_path, db_url):
    r = Runtime(Settings(data_dir=tmp_path / "data", database_url=db_url))
    r.settings.rating.gold_fraction = 0.0
    r.settings.rating.min_heard_fraction = 0.0  # the play gate has its own tests: no waiting
    r.settings.rating.active_coverage = 0.0
    yield r
    r.close()


def uid(rt, name):
    return users.find_user(rt, name).id


def vote(rt, u, t, choice="A"):
    play_through(rt, u, t)
    rating.vote(rt, u, t["assignment_id"], choice)


def judge_tasks(rt, disagree_on: set[int]) -> None:
    """Two AI judges score every A/B task's clips 4 (sample A) and 2 (sample B); on the tasks
    in `disagree_on` the second judge has it the other way round. 2 and 4 are a whole point
    from the thresholds (3 and 1), so no clip is near one."""
    with rt.store.session() as s:
        for t in s.scalars(select(RatingTask).where(RatingTask.kind == "ab")):
            for judge in ("j1", "j2"):
                flip = judge == "j2" and t.id in disagree_on
                for sid, value in ((t.sample_a_id, 2.0 if flip else 4.0),
                                   (t.sample_b_id, 4.0 if flip else 2.0)):
                    s.add(Judgment(kind="ai", rater=f"ai:{judge}@v1",
                                   task_key=f"sample:{sid}:{t.id}", sample_id=sid,
                                   judge_name=judge, prompt_version="v1", value=value))


def tasks_of(rt, u) -> list[int]:
    out = []
    while (t := rating.next_task(rt, u)) is not None:
        out.append(t["task_id"])
        vote(rt, u, t)
    return out


def test_active_serves_the_tasks_judges_disagree_on_first(rt):
    seed(rt, n_prompts=4, raters=("r1", "r2"))
    with rt.store.session() as s:
        ids = sorted(s.scalars(select(RatingTask.id)))
    # judges disagree on the last two tasks (with samples scored per task, each clip is in
    # one task only here: 4 prompts x 2 same-index pairs)
    hard = set(ids[-2:])
    judge_tasks(rt, hard)
    rt.settings.rating.routing = "active"
    first = tasks_of(rt, uid(rt, "r1"))
    assert set(first[:2]) == hard and sorted(first) == ids  # then all the others, once each
    second = tasks_of(rt, uid(rt, "r2"))
    assert set(second[:2]) == hard  # a second opinion where it matters, before the rest


def test_balanced_ignores_disagreement_and_spreads_votes(rt):
    seed(rt, n_prompts=4, raters=("r1", "r2"))
    with rt.store.session() as s:
        ids = sorted(s.scalars(select(RatingTask.id)))
    judge_tasks(rt, set(ids[-2:]))
    rt.settings.rating.routing = "balanced"
    u1, u2 = uid(rt, "r1"), uid(rt, "r2")
    t1 = rating.next_task(rt, u1)
    vote(rt, u1, t1)
    assert rating.next_task(rt, u2)["task_id"] != t1["task_id"]  # fewest assignments first


def test_active_keeps_the_gold_share_and_never_repeats_a_task(rt):
    seed(rt, n_prompts=4, raters=("r1",))
    with rt.store.session() as s:
        ids = sorted(s.scalars(select(RatingTask.id)))
        a, b = s.execute(select(RatingTask.sample_a_id, RatingTask.sample_b_id)
                         .where(RatingTask.id == ids[0])).one()
    judge_tasks(rt, set(ids[-2:]))
    gold = rating.add_qc_task(rt, a, b, "A")
    rt.settings.rating.routing = "active"
    rt.settings.rating.gold_fraction = 1.0  # a QC task whenever one is left
    got = tasks_of(rt, uid(rt, "r1"))
    assert got[0] == gold and sorted(got) == sorted([*ids, gold])


def test_random_policy_serves_every_task_once(rt):
    seed(rt, n_prompts=3, raters=("r1",))
    rt.settings.rating.routing = "random"
    with rt.store.session() as s:
        ids = sorted(s.scalars(select(RatingTask.id)))
    assert sorted(tasks_of(rt, uid(rt, "r1"))) == ids


def test_a_settled_task_loses_its_priority(rt):
    seed(rt, n_prompts=4, raters=("r1", "r2"))
    with rt.store.session() as s:
        ids = sorted(s.scalars(select(RatingTask.id)))
    hard = set(ids[-2:])
    judge_tasks(rt, hard)
    rt.settings.rating.routing = "active"
    rt.settings.rating.active_max_votes = 1  # one vote settles it here
    r1 = uid(rt, "r1")
    for _ in range(2):  # r1 votes on the two hard tasks only
        t = rating.next_task(rt, r1)
        assert t["task_id"] in hard
        vote(rt, r1, t)
    second = tasks_of(rt, uid(rt, "r2"))
    assert not set(second[:6]) & hard and set(second[-2:]) == hard


def test_a_clip_near_a_selection_threshold_comes_first(rt):
    seed(rt, n_prompts=4, raters=("r1",))
    with rt.store.session() as s:
        tasks = s.scalars(select(RatingTask).order_by(RatingTask.id)).all()
        near, sibling = tasks[3], tasks[2]  # the two tasks of one prompt
        for t in tasks:  # one judge: base clips 4.5, aligned clips 2 (1 from each threshold)
            for sid, value in ((t.sample_a_id, 4.5), (t.sample_b_id, 2.0)):
                if sid == near.sample_a_id:
                    value = 3.2  # its prompt's best base clip, 0.2 from chosen_min 3
                elif sid == sibling.sample_a_id:
                    value = 2.5
                s.add(Judgment(kind="ai", rater="ai:j1@v1", task_key=f"sample:{sid}",
                               sample_id=sid, judge_name="j1", prompt_version="v1",
                               value=value))
    rt.settings.rating.routing = "active"
    assert tasks_of(rt, uid(rt, "r1"))[0] == near.id
