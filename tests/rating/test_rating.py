"""The rating service on a real SQLite file: assignment, play gate, votes, QC, daily cap,
concurrency."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from backend import rating, users
from backend.config import Settings
from backend.runtime import Runtime
from db.schema import Judgment, RatingTask, Sample
from tests.rating.seed import SR, seed, tone
from tests.rating.seed import play_through as play


@pytest.fixture
def rt(tmp_path):
    r = Runtime(Settings(data_dir=tmp_path / "data",
                         database_url=f"sqlite:///{tmp_path / 'store.db'}"))
    r.settings.rating.gold_fraction = 0.0
    r.settings.rating.min_heard_fraction = 0.0  # the play gate's own tests set it: no waiting
    yield r
    r.close()


@pytest.fixture
def world(rt):
    return seed(rt, n_prompts=4, raters=("r1", "r2", "r3"))


def uid(rt, name: str) -> int:
    return users.find_user(rt, name).id




def n_judgments(rt, **where) -> int:
    with rt.store.session() as s:
        q = select(func.count()).select_from(Judgment)
        for k, v in where.items():
            q = q.where(getattr(Judgment, k) == v)
        return s.scalar(q)


def test_sync_tasks_is_idempotent(rt, world):
    assert world["tasks"]["ab"] == 8  # 4 prompts x 1 version pair x 2 indices
    assert rating.sync_tasks(rt)["ab"] == 0


def test_balanced_assignment_and_never_twice(rt, world):
    r1, r2 = uid(rt, "r1"), uid(rt, "r2")
    seen = []
    while (t := rating.next_task(rt, r1)) is not None:
        seen.append(t["task_id"])
        if len(seen) % 2:
            play(rt, r1, t)
            rating.vote(rt, r1, t["assignment_id"], "A")
        else:
            rating.skip(rt, r1, t["assignment_id"])  # skipped tasks are never shown again
    assert sorted(seen) == sorted(set(seen)) and len(seen) == 8
    # r2 gets a task with the fewest assignments first: r1 voted half, skipped half
    voted = {t for i, t in enumerate(seen) if i % 2 == 0}
    t = rating.next_task(rt, r2)
    assert t["task_id"] not in voted


def test_fewest_judgments_first(rt, world):
    ids = [uid(rt, n) for n in ("r1", "r2", "r3")]
    first = [rating.next_task(rt, u)["task_id"] for u in ids]
    assert len(set(first)) == 3  # three raters, three different tasks


def test_open_assignment_is_returned_again(rt, world):
    u = uid(rt, "r1")
    a, b = rating.next_task(rt, u), rating.next_task(rt, u)
    assert a["assignment_id"] == b["assignment_id"]


def test_play_gate_counts_what_was_heard(rt, world):
    """Issue 20, item 1: play, pause at once, seek to the end (what a player then reports) is
    not listening; the vote unlocks once the heard ranges cover 90 % of each clip and that much
    time has passed since it was served."""
    rt.settings.rating.min_heard_fraction = 0.9
    u = uid(rt, "r1")
    t = rating.next_task(rt, u)
    aid = t["assignment_id"]
    with pytest.raises(rating.PlayGateError):
        rating.vote(rt, u, aid, "A")
    for side in ("A", "B"):
        rating.record_served(rt, u, aid, side)
    time.sleep(0.7)  # longer than the 0.6 s clips
    st_ = rating.record_heard(rt, u, aid, "A", "[[0, 0.1], [0.55, 0.6]]")
    assert st_["A"] is False and st_["heard"]["A"] == pytest.approx(0.25, abs=0.01)
    st_ = rating.record_heard(rt, u, aid, "B", "[[0, 0.6]]")
    assert st_["B"] is True and st_["unlocked"] is False
    with pytest.raises(rating.PlayGateError):
        rating.vote(rt, u, aid, "A")
    st_ = rating.record_heard(rt, u, aid, "A", [[0.1, 0.5]])  # the rest, in a later report
    assert st_["heard"]["A"] == pytest.approx(0.917, abs=0.01) and st_["unlocked"]
    assert rating.vote(rt, u, aid, "A").replay is False


def test_play_gate_needs_the_time_since_the_clip_was_served(rt, world):
    """Ranges are the client's word: a script can claim a whole 4 s clip at once, but not
    make 3.6 s pass since the clip was sent; and a clip never served was not heard at all."""
    rt.settings.rating.min_heard_fraction = 0.9
    u = uid(rt, "r1")
    t = rating.next_task(rt, u)
    for side in ("A", "B"):
        sf.write(t["audio"][side], tone(300, 4.0), SR)
    rating.record_served(rt, u, t["assignment_id"], "A")
    for side in ("A", "B"):
        st_ = rating.record_heard(rt, u, t["assignment_id"], side, [[0, 4.0]])
    assert st_["heard"] == {"A": 1.0, "B": 1.0}
    assert (st_["A"], st_["B"], st_["unlocked"]) == (False, False, False)


def test_empty_or_bad_played_ranges(rt, world):
    """An end event without ranges counts nothing; ranges that are not of the clip are
    refused naming the problem and store nothing."""
    rt.settings.rating.min_heard_fraction = 0.9
    u = uid(rt, "r1")
    t = rating.next_task(rt, u)
    aid = t["assignment_id"]
    for side in ("A", "B"):
        rating.record_served(rt, u, aid, side)
        assert rating.record_heard(rt, u, aid, side, "")["heard"][side] == 0.0
    for bad, says in (("x", "list of"), ("[[0, 100]]", "outside the clip"),
                      ("[[-1, 0.2]]", "outside"), ("[[0.4, 0.1]]", "outside"),
                      ('[[0, NaN]]', "outside"), ("[0.1]", "list of"),
                      (json.dumps([[0, 0.01]] * 201), "at most 200")):
        with pytest.raises(rating.RatingError, match=says):
            rating.record_heard(rt, u, aid, "A", bad)
    with pytest.raises(rating.RatingError, match="no clip C"):
        rating.record_heard(rt, u, aid, "C", "[[0, 0.6]]")
    assert rating.play_status(rt, u, aid)["heard"] == {"A": 0.0, "B": 0.0}


def test_vote_is_idempotent_and_replays(rt, world):
    u = uid(rt, "r1")
    t = rating.next_task(rt, u)
    play(rt, u, t)
    first = rating.vote(rt, u, t["assignment_id"], "B", {"A.meaningfulness": 5})
    again = rating.vote(rt, u, t["assignment_id"], "A", {"A.meaningfulness": 1})
    assert again.replay and again.choice == "B" and again.mos == {"A.meaningfulness": 5}
    assert again.reveal == first.reveal and set(first.reveal) == {"A", "B"}
    assert n_judgments(rt, kind="ab", user_id=u) == 1
    assert n_judgments(rt, kind="mos", user_id=u) == 1


def test_concurrent_double_submit_stores_one_vote(rt, world):
    u = uid(rt, "r1")
    t = rating.next_task(rt, u)
    play(rt, u, t)
    results, errors = [], []

    def go():
        try:
            results.append(rating.vote(rt, u, t["assignment_id"], "tie"))
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=go) for _ in range(8)]
    [th.start() for th in threads]
    [th.join() for th in threads]
    assert not errors
    assert sum(not r.replay for r in results) == 1
    assert n_judgments(rt, kind="ab", user_id=u) == 1


def test_swapped_sides_are_stored_in_sample_terms(rt, world):
    u = uid(rt, "r1")
    for _ in range(8):
        t = rating.next_task(rt, u)
        play(rt, u, t)
        rating.vote(rt, u, t["assignment_id"], "A")
        with rt.store.session() as s:
            task = s.get(RatingTask, t["task_id"])
            j = s.scalar(select(Judgment).where(Judgment.task_id == task.id,
                                                Judgment.kind == "ab"))
            shown_a = s.scalar(select(Sample.audio_path).where(Sample.id == (
                task.sample_b_id if j.shown_swapped else task.sample_a_id)))
            assert shown_a == t["audio"]["A"]
            assert j.choice == ("B" if j.shown_swapped else "A")


@pytest.mark.parametrize("bad", [0, 6, 3.5, "x", -1, 100])
def test_out_of_range_mos_is_rejected(rt, world, bad):
    u = uid(rt, "r1")
    t = rating.next_task(rt, u)
    play(rt, u, t)
    with pytest.raises(rating.RatingError, match="1 to 5"):
        rating.vote(rt, u, t["assignment_id"], "A", {"A.meaningfulness": bad})
    assert n_judgments(rt, user_id=u) == 0


def test_bad_choice_and_unknown_keys_rejected(rt, world):
    u = uid(rt, "r1")
    t = rating.next_task(rt, u)
    play(rt, u, t)
    with pytest.raises(rating.RatingError):
        rating.vote(rt, u, t["assignment_id"], "C")
    with pytest.raises(rating.RatingError):
        rating.vote(rt, u, t["assignment_id"], "A", {"C.meaningfulness": 3})
    with pytest.raises(rating.RatingError):
        rating.vote(rt, u, t["assignment_id"], "A", {"A.loudness": 3})


def test_unknown_user_or_task_refused(rt, world):
    u1, u2 = uid(rt, "r1"), uid(rt, "r2")
    t = rating.next_task(rt, u1)
    play(rt, u1, t)
    with pytest.raises(rating.RatingError, match="unknown or inactive user"):
        rating.vote(rt, 9999, t["assignment_id"], "A")
    with pytest.raises(rating.RatingError, match="unknown task"):
        rating.vote(rt, u2, t["assignment_id"], "A")  # someone else's assignment
    with pytest.raises(rating.RatingError, match="unknown task"):
        rating.vote(rt, u1, 123456, "A")
    with pytest.raises(rating.RatingError, match="unknown task"):
        rating.record_heard(rt, u2, t["assignment_id"], "A", "[[0, 0.6]]")
    with pytest.raises(rating.RatingError):
        rating.next_task(rt, 9999)
    assert n_judgments(rt) == 0


def test_daily_cap(rt, world):
    rt.settings.rating.daily_cap = 2
    u = uid(rt, "r1")
    for _ in range(2):
        t = rating.next_task(rt, u)
        play(rt, u, t)
        rating.vote(rt, u, t["assignment_id"], "A")
    assert rating.next_task(rt, u) is None
    assert rating.progress(rt, u) == {"done_today": 2, "cap": 2}


def _gold(rt, world, answer="A", trap=False):
    with rt.store.session() as s:
        a, b = s.execute(select(Sample.id).order_by(Sample.id).limit(2)).scalars().all()
    return rating.add_qc_task(rt, a, b, answer, trap)


def _answer_all(rt, u, choice_for_gold):
    while (t := rating.next_task(rt, u)) is not None:
        play(rt, u, t)
        with rt.store.session() as s:
            task = s.get(RatingTask, t["task_id"])
            gold, swapped = task.gold_answer, task.sample_b_id and \
                t["audio"]["A"] != s.get(Sample, task.sample_a_id).audio_path
        if gold is None:
            rating.vote(rt, u, t["assignment_id"], "tie")
        else:
            want = choice_for_gold(gold)
            shown = {"A": "B", "B": "A"}.get(want, want) if swapped else want
            rating.vote(rt, u, t["assignment_id"], shown)


def test_qc_flags_failing_rater_and_keeps_votes(rt, world):
    for _ in range(3):
        _gold(rt, world, "A")
    u_bad, u_good = uid(rt, "r1"), uid(rt, "r2")
    _answer_all(rt, u_bad, lambda gold: "B")  # always wrong on gold
    _answer_all(rt, u_good, lambda gold: gold)
    bad = rating.votes_of(rt, u_bad)
    good = rating.votes_of(rt, u_good)
    assert len(bad) == 11 and all(v["flagged"] for v in bad)  # kept, flagged
    assert good and not any(v["flagged"] for v in good)
    report = {r["user"]: r for r in rating.rater_report(rt)}
    assert report["r1"]["status"] == "failed QC" and report["r1"]["gold"] == "0/3"
    assert report["r2"]["gold_accuracy"] == 1.0
    # statistics exclude flagged votes: each unflagged A/B vote counts once for each clip
    with rt.store.session() as s:
        ids = list(s.scalars(select(Sample.id)))
    summary = rating.sample_ratings(rt, ids)
    counted = sum(x["ab"]["win"] + x["ab"]["loss"] + x["ab"]["tie"] for x in summary.values())
    assert counted == 2 * sum(1 for v in good if v["kind"] == "ab")


def test_failed_trap_flags_at_once(rt, world):
    _gold(rt, world, "both_bad", trap=True)
    u = uid(rt, "r1")
    _answer_all(rt, u, lambda gold: "A")
    assert all(v["flagged"] for v in rating.votes_of(rt, u))


def test_qc_outage_is_not_a_failure(rt, world):
    for _ in range(3):
        _gold(rt, world, "A")
    with rt.store.session() as s:
        a = s.scalar(select(Sample).order_by(Sample.id).limit(1))
        path = Path(a.audio_path)
    u = uid(rt, "r1")
    while (t := rating.next_task(rt, u)) is not None:
        play(rt, u, t)
        if path.exists() and str(path) in t["audio"].values():
            path.unlink()  # the gold clip vanished: the check cannot run
        rating.vote(rt, u, t["assignment_id"], "B")
    report = {r["user"]: r for r in rating.rater_report(rt)}["r1"]
    assert report["qc_outages"] >= 1
    assert report["status"] != "failed QC"  # wrong answers on gold, but all checks were outages


def test_admin_flag_override(rt, world):
    u = uid(rt, "r1")
    t = rating.next_task(rt, u)
    play(rt, u, t)
    rating.vote(rt, u, t["assignment_id"], "A")
    assert rating.set_flagged(rt, "r1", True) == 1
    assert rating.votes_of(rt, u)[0]["flagged"]
    rating.set_flagged(rt, "r1", False)
    assert not rating.votes_of(rt, u)[0]["flagged"]


# --- property test ----------------------------------------------------------------------------
MOS_VALUES = st.one_of(st.none(), st.integers(-2, 8), st.floats(allow_nan=True),
                       st.sampled_from(["3", "x", ""]))


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(st.tuples(st.sampled_from(["A", "B", "tie", "both_bad", "C", None]),
                              MOS_VALUES, MOS_VALUES), min_size=1, max_size=6))
def test_vote_property(rt, world, ops):
    """Whatever is submitted, in whatever order: at most one A/B row and one row per MOS key
    per rater and task, every stored MOS in 1..5, replays return the first vote unchanged."""
    name = f"p{time.monotonic_ns()}"
    u = users.add_user(rt, name, "property-pass", "rater").id
    t = rating.next_task(rt, u)
    play(rt, u, t)
    first = None
    for choice, m1, m2 in ops:
        mos = {"A.meaningfulness": m1, "B.naturalness": m2}
        try:
            res = rating.vote(rt, u, t["assignment_id"], choice, mos)
        except rating.RatingError:
            assert first is None, "a vote after the first must be a replay"
            continue
        if first is None:
            first = res
            assert not res.replay and res.choice == choice
        else:
            assert res.replay and res.choice == first.choice and res.mos == first.mos
    with rt.store.session() as s:
        rows = s.scalars(select(Judgment).where(Judgment.user_id == u)).all()
    keys = [r.task_key for r in rows]
    assert len(keys) == len(set(keys))
    assert sum(r.kind == "ab" for r in rows) == (1 if first else 0)
    assert all(1 <= r.value <= 5 and r.value == int(r.value) for r in rows if r.kind == "mos")


# --- concurrent writers -----------------------------------------------------------------------
def test_concurrent_writers_lose_nothing(rt, world):
    """8 threads x 500 votes through the vote service on one SQLite file: every vote stored,
    none twice, no 'database is locked'. Assignments (played through) are prepared in bulk."""
    from db.schema import TaskAssignment, utcnow

    threads_n, per = 8, 500
    uids = [users.add_user(rt, f"w{i}", "writer-pass", "rater").id for i in range(threads_n)]
    now = utcnow().isoformat()
    played = [{"side": "A", "event": "end", "t": now}, {"side": "B", "event": "end", "t": now}]
    with rt.store.session() as s:
        a, b = s.scalars(select(Sample.id).order_by(Sample.id).limit(2)).all()
        tasks = [RatingTask(kind="ab", sample_a_id=a, sample_b_id=b) for _ in range(per)]
        s.add_all(tasks)
        s.flush()
        assigned = [TaskAssignment(task_id=t.id, user_id=u, swapped=bool(i % 2), played=played)
                    for i, t in enumerate(tasks) for u in uids]
        s.add_all(assigned)
        s.flush()
        todo = {u: [x.id for x in assigned if x.user_id == u] for u in uids}
    errors: list[BaseException] = []

    def work(u):
        try:
            for i, aid in enumerate(todo[u]):
                res = rating.vote(rt, u, aid, ("A", "B", "tie", "both_bad")[i % 4],
                                  {"A.meaningfulness": 1 + i % 5})
                assert not res.replay
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    ths = [threading.Thread(target=work, args=(u,)) for u in uids]
    [th.start() for th in ths]
    [th.join() for th in ths]
    assert not errors, errors[:3]
    assert n_judgments(rt, kind="ab") == threads_n * per
    assert n_judgments(rt, kind="mos") == threads_n * per
    with rt.store.session() as s:
        open_left = s.scalar(select(func.count()).select_from(TaskAssignment)
                             .where(TaskAssignment.status != "done"))
    assert open_left == 0


def test_vote_on_a_locked_database_says_retry_and_the_retry_counts_once(rt, world, monkeypatch):
    """Another writer holds SQLite past the busy timeout: the rater gets a clear message (not
    the driver's text), nothing half-stored, and pressing again stores exactly one vote."""
    import sqlite3

    from db import session as db_session

    u = uid(rt, "r1")
    t = rating.next_task(rt, u)
    play(rt, u, t)
    monkeypatch.setattr(db_session, "SQLITE_BUSY_TIMEOUT_MS", 200)
    rt.store.dispose()
    rt.store = db_session.Store(rt.settings.database_url)
    holder = sqlite3.connect(rt.settings.database_url.removeprefix("sqlite:///"))
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(rating.RatingError, match="press it again"):
            rating.vote(rt, u, t["assignment_id"], "A")
    finally:
        holder.rollback()
        holder.close()
    assert n_judgments(rt, kind="ab", user_id=u) == 0
    res = rating.vote(rt, u, t["assignment_id"], "A")
    assert not res.replay and n_judgments(rt, kind="ab", user_id=u) == 1
