"""Human rating: tasks, balanced assignment, play tracking, votes and quality control.

A rating task (`rating_tasks`) is an A/B comparison of two samples of the same prompt (or one
MOS clip). A rater gets it as an assignment (`task_assignments`) with a randomized left/right
order; the vote unlocks only once both clips were heard: the played time ranges the rater's
player reports cover `rating.min_heard_fraction` of each clip, and at least that much wall
time has passed since the clip was served (`_play_status`). No task is
made on a degenerate item (`clip_problem`: a clip that does not play or an empty continuation;
for A/B also two identical unit sequences): a rater could only guess.

Judgment keys (unique per rater, so a replayed or double-clicked vote stores nothing twice):
- A/B vote:  kind "ab",  task_key "ab:<task_id>", choice in stored terms (A = sample_a_id)
- MOS:       kind "mos", task_key "mos:<task_id>:<sample_id>:<aspect>", value 1..5
  (ITU-T P.800 ACR: 5 Excellent, 4 Good, 3 Fair, 2 Poor, 1 Bad).

Quality control in the spirit of ITU-T P.808: gold tasks (known answer) and trap tasks (a clip
that tells the rater what to answer) are mixed in at `rating.gold_fraction`. Each answer to one
is checked; the outcome ("pass", "fail", or "outage" when the check itself could not run, e.g. a
gold clip's audio is missing) is recorded in the judgment's `raw` JSON. A rater who fails a trap,
or whose gold accuracy drops below `rating.min_gold_accuracy` after `rating.qc_min_gold` checks,
gets all their votes flagged (excluded from statistics, never deleted) with the reason
(`Judgment.flag_reason`), and so does each vote they give afterwards. An outage never counts
as a failure. `vote_accounting` tells, per day, how many votes count and why the others do not.

Which task comes next is `backend.routing`'s (`rating.routing`).
"""

from __future__ import annotations

import functools
import json
import math
import os
import random
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import and_, case, func, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from backend import queries, routing
from backend.runtime import Runtime
from db.schema import (
    AB_CHOICES,
    FLAG_REASONS,
    RATED_ASPECTS,
    Judgment,
    ModelVersion,
    Prompt,
    RatingTask,
    Sample,
    TaskAssignment,
    User,
    utcnow,
)

ACR_LABELS = {5: "Excellent", 4: "Good", 3: "Fair", 2: "Poor", 1: "Bad"}
MOS_ASPECTS = RATED_ASPECTS
SIDES = ("A", "B")


class RatingError(ValueError):
    """A refused rating request (unknown user or task, bad value...). Message is user-facing."""


BUSY = ("The server is busy and could not save your vote. Please press it again: a vote is "
        "never counted twice.")


class PlayGateError(RatingError):
    """The vote came before both clips were heard (`_play_status`)."""


@dataclass
class VoteResult:
    assignment_id: int
    task_id: int
    replay: bool
    choice: str | None
    """In the terms the rater saw (A = left clip)."""
    mos: dict[str, int] = field(default_factory=dict)
    reveal: dict[str, str] = field(default_factory=dict)
    """Side -> model version name, shown after the vote."""
    qc: str | None = None


# --- helpers ---------------------------------------------------------------------------------
def today_start() -> datetime:
    now = utcnow()
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def _active_user(s, user_id: int) -> User:
    user = s.get(User, int(user_id)) if user_id is not None else None
    if user is None or not user.active:
        raise RatingError("unknown or inactive user")
    return user


def _assignment(s, user_id: int, assignment_id: int) -> tuple[TaskAssignment, RatingTask]:
    try:
        aid = int(assignment_id)
    except (TypeError, ValueError):
        raise RatingError("unknown task") from None
    a = s.get(TaskAssignment, aid)
    if a is None or a.user_id != int(user_id):
        raise RatingError("unknown task")
    task = s.get(RatingTask, a.task_id)
    if task is None:
        raise RatingError("unknown task")
    return a, task


def _side_samples(task: RatingTask, swapped: bool) -> dict[str, int]:
    """Display side -> sample id."""
    if task.kind == "mos":
        return {"A": task.sample_a_id}
    if swapped:
        return {"A": task.sample_b_id, "B": task.sample_a_id}
    return {"A": task.sample_a_id, "B": task.sample_b_id}


def _to_stored(choice: str, swapped: bool) -> str:
    if swapped and choice in SIDES:
        return "B" if choice == "A" else "A"
    return choice


def _audio_duration(path: str | None) -> float:
    """Seconds of a clip (0 when unreadable); asked on every play event, so cached per file
    version (path, size, mtime)."""
    if not path:
        return 0.0
    try:
        st = os.stat(path)
    except OSError:
        return 0.0
    return _duration_of(path, st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=4096)
def _duration_of(path: str, _size: int, _mtime_ns: int) -> float:
    try:
        import soundfile as sf

        info = sf.info(path)
        return float(info.frames) / float(info.samplerate or 1)
    except Exception:  # noqa: BLE001 - an unreadable clip has no known duration
        return 0.0


# --- tasks -----------------------------------------------------------------------------------
def clip_problem(units, audio_path: str | None, trap: bool = False) -> str | None:
    """Why a sample cannot be rated (None when it can): a rater cannot judge a clip that does
    not play (missing, unreadable or 0 frames), nor an empty continuation (a trap clip is a
    spoken instruction, not a continuation: it has no units)."""
    if not trap and not units:
        return "empty continuation"
    if _audio_duration(audio_path) <= 0.0:
        return "no playable audio (missing, unreadable or 0 frames)"
    return None


def sync_tasks(rt: Runtime, per_prompt_pairs: int = 2, mos: bool = False) -> dict:
    """Create A/B tasks for every prompt with samples of two or more versions: for each pair of
    versions, up to `per_prompt_pairs` comparisons of same-index samples. With `mos`, one MOS
    task per sample too. Idempotent (existing tasks are kept). Degenerate items are refused
    (counted in "refused"): a clip that `clip_problem` rejects, or two clips with the same unit
    sequence (the same audio: a rater could only guess); the next same-index pair is taken."""
    created_ab = created_mos = refused = 0
    with rt.store.session() as s:
        rows = s.execute(
            select(Sample.id, Sample.prompt_id, Sample.model_version_id, Sample.index,
                   Sample.units, Sample.audio_path)
            .where(Sample.audio_path.is_not(None), Sample.is_trap.is_(False))
            .order_by(Sample.prompt_id, Sample.model_version_id, Sample.index, Sample.id)
        ).all()
        existing_ab = {
            frozenset((a, b))
            for a, b in s.execute(
                select(RatingTask.sample_a_id, RatingTask.sample_b_id).where(
                    RatingTask.kind == "ab"
                )
            )
        }
        existing_mos = set(
            s.scalars(select(RatingTask.sample_a_id).where(RatingTask.kind == "mos"))
        )
        clip = {sid: (list(units or []), path) for sid, _p, _v, _i, units, path in rows}
        problems: dict[int, str | None] = {}

        def problem(sid: int) -> str | None:
            if sid not in problems:
                problems[sid] = clip_problem(*clip[sid])
            return problems[sid]

        by_prompt: dict[int, dict[int, list[int]]] = {}
        for sid, pid, vid, *_ in rows:
            by_prompt.setdefault(pid, {}).setdefault(vid, []).append(sid)
        for versions in by_prompt.values():
            vids = sorted(versions)
            for i, va in enumerate(vids):
                for vb in vids[i + 1 :]:
                    taken = 0
                    for sa, sb in zip(versions[va], versions[vb], strict=False):
                        if taken >= per_prompt_pairs:
                            break
                        if frozenset((sa, sb)) in existing_ab:
                            taken += 1
                            continue
                        if problem(sa) or problem(sb) or clip[sa][0] == clip[sb][0]:
                            refused += 1
                            continue
                        s.add(RatingTask(kind="ab", sample_a_id=sa, sample_b_id=sb))
                        existing_ab.add(frozenset((sa, sb)))
                        created_ab += 1
                        taken += 1
            if mos:
                for sids in versions.values():
                    for sid in sids:
                        if sid in existing_mos:
                            continue
                        if problem(sid):
                            refused += 1
                            continue
                        s.add(RatingTask(kind="mos", sample_a_id=sid))
                        existing_mos.add(sid)
                        created_mos += 1
    return {"ab": created_ab, "mos": created_mos, "refused": refused}


def add_qc_task(
    rt: Runtime, sample_a_id: int, sample_b_id: int | None, answer: str, trap: bool = False
) -> int:
    """A gold (known answer) or trap task. For A/B the answer is A/B/tie/both_bad in terms of
    the stored samples; for MOS (no sample B) a range "lo-hi" of acceptable meaningfulness."""
    kind = "ab" if sample_b_id is not None else "mos"
    answer = (answer or "").strip()
    if kind == "ab" and answer not in AB_CHOICES:
        raise RatingError(f"A/B answer must be one of {', '.join(AB_CHOICES)}")
    if kind == "mos" and _mos_range(answer) is None:
        raise RatingError("MOS answer must be a range like 1-2 or 4-5")
    with rt.store.session() as s:
        smp = []
        for sid in (sample_a_id, sample_b_id):
            if sid is None:
                continue
            row = s.get(Sample, int(sid))
            if row is None:
                raise RatingError(f"unknown sample {sid}")
            if why := clip_problem(row.units, row.audio_path, trap=row.is_trap):
                raise RatingError(f"sample {sid} cannot be rated: {why}")
            smp.append(row)
        if sample_b_id is not None and int(sample_a_id) == int(sample_b_id):
            raise RatingError("the two samples must differ")
        if (kind == "ab" and answer in SIDES and smp[0].units
                and smp[0].units == smp[1].units):
            raise RatingError("the two samples are the same unit sequence: no rater can hear "
                              f"which is better, so the answer {answer} cannot be earned")
        t = RatingTask(
            kind=kind, sample_a_id=int(sample_a_id),
            sample_b_id=int(sample_b_id) if sample_b_id is not None else None,
            gold_answer=answer, is_trap=bool(trap),
        )
        s.add(t)
        s.flush()
        return t.id


def _mos_range(answer: str | None) -> tuple[int, int] | None:
    try:
        lo, _, hi = (answer or "").partition("-")
        lo_i, hi_i = int(lo), int(hi or lo)
    except ValueError:
        return None
    if not (1 <= lo_i <= hi_i <= 5):
        return None
    return lo_i, hi_i


def task_counts(rt: Runtime) -> dict:
    with rt.store.read() as s:
        total = s.scalar(select(func.count()).select_from(RatingTask).where(RatingTask.active))
        qc = s.scalar(
            select(func.count()).select_from(RatingTask).where(
                RatingTask.active, RatingTask.gold_answer.is_not(None)
            )
        )
        votes = s.scalar(select(func.count()).select_from(Judgment).where(Judgment.kind == "ab"))
    return {"tasks": total or 0, "qc_tasks": qc or 0, "ab_votes": votes or 0}


# --- assignment ------------------------------------------------------------------------------
def progress(rt: Runtime, user_id: int) -> dict:
    """Tasks done today (UTC) and the daily cap."""
    with rt.store.read() as s:
        done = s.scalar(
            select(func.count()).select_from(TaskAssignment).where(
                TaskAssignment.user_id == int(user_id),
                TaskAssignment.status == "done",
                TaskAssignment.done_at >= today_start(),
            )
        )
    return {"done_today": int(done or 0), "cap": rt.settings.rating.daily_cap}


def next_task(rt: Runtime, user_id: int, rng: random.Random | None = None) -> dict | None:
    """The rater's open assignment, or a new one: QC tasks at `gold_fraction`, else an active
    task in the order of `rating.routing` (default: the fewest assignments first), never one
    this rater had before. None when nothing is left or the daily cap is reached (see
    `progress`)."""
    rng = rng or random.Random()
    for _attempt in range(5):
        try:
            return _next_task(rt, int(user_id), rng)
        except IntegrityError:  # a concurrent request assigned the same task: pick again
            continue
    raise RatingError("could not assign a task, please retry")


def _next_task(rt: Runtime, user_id: int, rng: random.Random) -> dict | None:
    with rt.store.session() as s:
        _active_user(s, user_id)
        open_a = s.scalar(
            select(TaskAssignment)
            .where(TaskAssignment.user_id == user_id, TaskAssignment.status == "assigned")
            .order_by(TaskAssignment.id)
        )
        if open_a is not None:
            return _describe(s, open_a)
        if progress_count(s, user_id) >= rt.settings.rating.daily_cap:
            return None
        task = _pick(rt, s, user_id, rng)
        if task is None:
            return None
        a = TaskAssignment(
            task_id=task.id, user_id=user_id, swapped=rng.random() < 0.5 and task.kind == "ab",
            played=[],
        )
        s.add(a)
        s.flush()
        return _describe(s, a)


def _pick(rt: Runtime, s, user_id: int, rng: random.Random) -> RatingTask | None:
    """A new task for the rater: never one they had before; a QC (gold/trap) task at
    `rating.gold_fraction`, else a normal one (the other kind when none is left); among those,
    the first in the order of `rating.routing` (backend.routing)."""
    seen = select(TaskAssignment.task_id).where(TaskAssignment.user_id == user_id)
    load = (
        select(TaskAssignment.task_id, func.count().label("n"))
        .where(TaskAssignment.status != "skipped")
        .group_by(TaskAssignment.task_id)
        .subquery()
    )
    base = (
        select(RatingTask.id, func.coalesce(load.c.n, 0))
        .outerjoin(load, load.c.task_id == RatingTask.id)
        .where(RatingTask.active, RatingTask.id.not_in(seen))
    )
    is_qc = RatingTask.gold_answer.is_not(None)
    want_qc = rng.random() < rt.settings.rating.gold_fraction
    for q in (base.where(is_qc if want_qc else ~is_qc), base):
        rows = [(int(t), int(n)) for t, n in s.execute(q)]
        if rows:
            return s.get(RatingTask, routing.order(rt, s, rows, rng)[0])
    return None


def progress_count(s, user_id: int) -> int:
    return int(
        s.scalar(
            select(func.count()).select_from(TaskAssignment).where(
                TaskAssignment.user_id == user_id,
                TaskAssignment.status == "done",
                TaskAssignment.done_at >= today_start(),
            )
        )
        or 0
    )


def _describe(s, a: TaskAssignment) -> dict:
    """What the rater may see: clip paths per side, never the versions."""
    task = s.get(RatingTask, a.task_id)
    sides = _side_samples(task, a.swapped)
    clips = _clip_rows(s, sides.values())
    prompt_audio = s.scalar(select(Prompt.audio_path).where(
        Prompt.id == clips[sides["A"]].prompt_id))
    return {
        "assignment_id": a.id,
        "task_id": task.id,
        "kind": task.kind,
        "prompt_audio": prompt_audio,
        "audio": {k: clips[v].audio_path for k, v in sides.items()},
        "status": a.status,
    }


def _clip_rows(s, sample_ids) -> dict[int, Any]:
    """id -> (prompt_id, audio_path) of samples: only the columns the rating views need (a full
    Sample carries its unit sequence, parsed from JSON on every load)."""
    rows = s.execute(select(Sample.id, Sample.prompt_id, Sample.audio_path)
                     .where(Sample.id.in_(list(sample_ids)))).all()
    return {r.id: r for r in rows}


def skip(rt: Runtime, user_id: int, assignment_id: int) -> None:
    """Skip an open assignment; the task is never offered to this rater again."""
    with rt.store.session() as s:
        _active_user(s, user_id)
        a, _ = _assignment(s, user_id, assignment_id)
        if a.status == "assigned":
            a.status, a.done_at = "skipped", utcnow()


# --- play gate: what was heard ----------------------------------------------------------------
def record_served(rt: Runtime, user_id: int, assignment_id: int, side: str) -> None:
    """The clip of `side` was first sent to the rater's browser (the wall-time clock of the
    play gate starts here; later fetches of the same clip change nothing)."""
    with rt.store.session() as s:
        a, task = _open_side(s, user_id, assignment_id, side)
        if a.status == "assigned" and not any(
                e.get("side") == side and e.get("event") == "served" for e in a.played or []):
            a.played = [*(a.played or []), {"side": side, "event": "served",
                                            "t": utcnow().isoformat()}]


def record_heard(rt: Runtime, user_id: int, assignment_id: int, side: str, ranges) -> dict:
    """Add the time ranges of `side` the rater's player reports as played (the audio element's
    `played` ranges, seconds, as JSON text or a list of [start, end]); returns `play_status`.
    The assignment keeps their union per side."""
    with rt.store.session() as s:
        a, task = _open_side(s, user_id, assignment_id, side)
        clip = _clip_rows(s, [_side_samples(task, a.swapped)[side]])
        duration = _audio_duration(next(iter(clip.values())).audio_path if clip else None)
        heard = _parse_ranges(ranges, duration)
        if a.status == "assigned" and heard:
            played = [e for e in a.played or []
                      if not (e.get("side") == side and e.get("event") == "heard")]
            old = next((e["ranges"] for e in a.played or []
                        if e.get("side") == side and e.get("event") == "heard"), [])
            a.played = [*played, {"side": side, "event": "heard",
                                  "ranges": _union([*old, *heard])}]
        return _play_status(rt, s, a, task)


def _open_side(s, user_id: int, assignment_id: int, side: str):
    _active_user(s, user_id)
    a, task = _assignment(s, user_id, assignment_id)
    if side not in _side_samples(task, a.swapped):
        raise RatingError(f"no clip {side} in this task")
    return a, task


MAX_RANGES = 200


def _parse_ranges(ranges, duration: float) -> list[list[float]]:
    """[[start, end], ...] within the clip (a little past its end is cut off: players round);
    RatingError on anything else."""
    if ranges is None or ranges == "":
        return []
    try:
        items = json.loads(ranges) if isinstance(ranges, str) else ranges
        out = [[float(a), float(b)] for a, b in items]
    except (TypeError, ValueError):
        raise RatingError("played ranges must be a list of [start, end] in seconds") from None
    if len(out) > MAX_RANGES:
        raise RatingError(f"at most {MAX_RANGES} played ranges")
    limit = duration + 1.0
    for a, b in out:
        if not (math.isfinite(a) and math.isfinite(b) and 0.0 <= a <= b <= limit):
            raise RatingError("a played range lies outside the clip")
    return [[a, min(b, duration)] for a, b in out if min(b, duration) > a]


def _union(ranges: list[list[float]]) -> list[list[float]]:
    merged: list[list[float]] = []
    for a, b in sorted(ranges):
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return merged


def play_status(rt: Runtime, user_id: int, assignment_id: int) -> dict:
    with rt.store.read() as s:
        _active_user(s, user_id)
        a, task = _assignment(s, user_id, assignment_id)
        return _play_status(rt, s, a, task)


def _play_status(rt: Runtime, s, a: TaskAssignment, task: RatingTask) -> dict:
    """Per side: True when the rater heard it, i.e. the union of the played ranges covers
    `rating.min_heard_fraction` of the clip AND at least that much wall time has passed since
    the clip was served (a script can claim ranges, not make time pass); "heard" holds the
    covered fractions, "unlocked" whether every side was heard."""
    out: dict[str, Any] = {"heard": {}}
    share = rt.settings.rating.min_heard_fraction
    sides = _side_samples(task, a.swapped)
    clips = _clip_rows(s, sides.values())
    now = utcnow()
    for side, sid in sides.items():
        clip = clips.get(sid)
        duration = _audio_duration(clip.audio_path if clip else None)
        events = [e for e in (a.played or []) if e.get("side") == side]
        served = [datetime.fromisoformat(e["t"]) for e in events if e["event"] == "served"]
        covered = sum(b - a_ for e in events if e["event"] == "heard"
                      for a_, b in e["ranges"])
        fraction = min(1.0, covered / duration) if duration > 0 else 0.0
        waited = (now - min(served)).total_seconds() if served else 0.0
        out["heard"][side] = fraction
        out[side] = share <= 0 or (fraction >= share and waited >= share * duration)
    out["unlocked"] = all(out[k] for k in sides)
    return out


# --- votes -----------------------------------------------------------------------------------
def vote(
    rt: Runtime,
    user_id: int,
    assignment_id: int,
    choice: str | None = None,
    mos: Mapping[str, Any] | None = None,
) -> VoteResult:
    """Store a vote. `choice` is what the rater saw (A = left clip): A, B, tie or both_bad;
    required for A/B tasks. `mos` maps "A.meaningfulness" / "B.naturalness" (side.aspect) to
    1..5; for a MOS task, A.meaningfulness is required. Idempotent: a replay (same or different
    values) returns the stored vote unchanged with `replay=True`."""
    try:
        with rt.store.session() as s:
            return _vote_in(rt, s, int(user_id), assignment_id, choice, mos)
    except IntegrityError:  # a concurrent duplicate got in first: report the stored vote
        with rt.store.session() as s:
            a, task = _assignment(s, user_id, assignment_id)
            return _existing(s, a, task)
    except OperationalError as e:  # e.g. SQLite still locked after the busy timeout
        raise RatingError(BUSY) from e


def _vote_in(rt: Runtime, s, user_id: int, assignment_id, choice, mos) -> VoteResult:
    _active_user(s, user_id)
    a, task = _assignment(s, user_id, assignment_id)
    if a.status == "done":
        return _existing(s, a, task)
    mos_values = _check_mos(mos or {})
    if a.status != "assigned":
        raise RatingError("this task was skipped")
    sides = _side_samples(task, a.swapped)
    if task.kind == "ab":
        if choice not in AB_CHOICES:
            raise RatingError(f"choice must be one of {', '.join(AB_CHOICES)}")
    else:
        choice = None
        if "A.meaningfulness" not in mos_values:
            raise RatingError("give a meaningfulness score from 1 to 5")
    for key in mos_values:
        if key.split(".")[0] not in sides:
            raise RatingError(f"no clip {key.split('.')[0]} in this task")
    if not _play_status(rt, s, a, task)["unlocked"]:
        raise PlayGateError("listen to both clips to the end before voting")
    return _store_vote(rt, s, user_id, a, task, choice, mos_values)


def _check_mos(mos: Mapping[str, Any]) -> dict[str, int]:
    out = {}
    for key, value in mos.items():
        if value is None or value == "":
            continue
        side, _, aspect = str(key).partition(".")
        if side not in SIDES or aspect not in MOS_ASPECTS:
            raise RatingError(f"unknown rating {key!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise RatingError(f"{aspect} score must be a whole number from 1 to 5") from None
        if not math.isfinite(number) or number != int(number) or not 1 <= number <= 5:
            raise RatingError(f"{aspect} score must be a whole number from 1 to 5")
        out[f"{side}.{aspect}"] = int(number)
    return out


def _store_vote(
    rt: Runtime, s, user_id: int, a: TaskAssignment, task: RatingTask, choice: str | None,
    mos: dict[str, int],
) -> VoteResult:
    if True:  # one transaction with the caller's checks (BEGIN IMMEDIATE serializes writers)
        if a.status == "done":
            return _existing(s, a, task)
        sides = _side_samples(task, a.swapped)
        rater = f"user:{user_id}"
        qc, detail = _qc_check(s, task, a, choice, mos)
        raw = json.dumps({"qc": qc, "detail": detail}) if qc else None
        rows: list[Judgment] = []
        if task.kind == "ab":
            rows.append(Judgment(
                kind="ab", aspect="overall", rater=rater, task_key=f"ab:{task.id}",
                sample_id=task.sample_a_id, sample_b_id=task.sample_b_id, task_id=task.id,
                user_id=user_id, choice=_to_stored(choice, a.swapped),
                shown_swapped=bool(a.swapped), raw=raw,
            ))
        for key, value in sorted(mos.items()):
            side, aspect = key.split(".")
            sid = sides[side]
            rows.append(Judgment(
                kind="mos", aspect=aspect, rater=rater, task_key=f"mos:{task.id}:{sid}:{aspect}",
                sample_id=sid, task_id=task.id, user_id=user_id, value=float(value),
                shown_swapped=bool(a.swapped), raw=raw if task.kind == "mos" else None,
            ))
        _carry_flag(s, user_id, rows)
        s.add_all(rows)
        # the status flip is the idempotency guard: only one writer moves assigned -> done
        moved = s.execute(
            update(TaskAssignment)
            .where(TaskAssignment.id == a.id, TaskAssignment.status == "assigned")
            .values(status="done", done_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        if moved.rowcount != 1:
            raise IntegrityError("assignment already voted", None, Exception("replay"))
        s.flush()
        if qc in ("pass", "fail"):
            _apply_qc(rt, s, user_id)
        return VoteResult(
            a.id, task.id, False, choice, {k: v for k, v in mos.items()},
            _reveal(s, sides), qc,
        )


def _existing(s, a: TaskAssignment, task: RatingTask) -> VoteResult:
    sides = _side_samples(task, a.swapped)
    inv = {v: k for k, v in sides.items()}
    rows = s.scalars(
        select(Judgment).where(Judgment.user_id == a.user_id, Judgment.task_id == task.id)
    ).all()
    choice, mos, qc = None, {}, None
    for j in rows:
        if j.kind == "ab":
            choice = _to_stored(j.choice, a.swapped)  # stored -> shown is the same swap
        elif j.kind == "mos" and j.sample_id in inv:
            mos[f"{inv[j.sample_id]}.{j.aspect}"] = int(j.value)
        if j.raw:
            qc = json.loads(j.raw).get("qc", qc)
    return VoteResult(a.id, task.id, True, choice, mos, _reveal(s, sides), qc)


def _reveal(s, sides: dict[str, int]) -> dict[str, str]:
    out = {}
    for side, sid in sides.items():
        row = s.execute(
            select(ModelVersion.name, Sample.is_trap)
            .join(Sample, Sample.model_version_id == ModelVersion.id).where(Sample.id == sid)
        ).first()
        out[side] = ("an attention check" if row[1] else row[0]) if row else "?"
    return out


# --- quality control -------------------------------------------------------------------------
def _qc_check(
    s, task: RatingTask, a: TaskAssignment, choice: str | None, mos: dict[str, int]
) -> tuple[str | None, str]:
    """Outcome of a gold/trap check: pass, fail, or outage (the check could not run)."""
    if task.gold_answer is None:
        return None, ""
    try:
        for sid in (task.sample_a_id, task.sample_b_id):
            if sid is None:
                continue
            smp = s.get(Sample, sid)
            if smp is None or not smp.audio_path or not Path(smp.audio_path).is_file():
                return "outage", f"clip of sample {sid} unavailable"
        if task.kind == "ab":
            if task.gold_answer not in AB_CHOICES:
                return "outage", "gold answer malformed"
            stored = _to_stored(choice, a.swapped)
            ok = stored == task.gold_answer
            return ("pass" if ok else "fail"), f"answered {stored}, expected {task.gold_answer}"
        rng = _mos_range(task.gold_answer)
        if rng is None:
            return "outage", "gold answer malformed"
        value = mos.get("A.meaningfulness")
        ok = value is not None and rng[0] <= value <= rng[1]
        return ("pass" if ok else "fail"), f"answered {value}, expected {task.gold_answer}"
    except Exception as e:  # noqa: BLE001 - a broken check is an outage, never a failure
        return "outage", f"{type(e).__name__}: {e}"


def _qc_summary(s, user_id: int | None = None) -> dict[int, dict]:
    q = (
        select(Judgment.user_id, Judgment.task_id, Judgment.raw, RatingTask.is_trap)
        .join(RatingTask, Judgment.task_id == RatingTask.id)
        .where(Judgment.raw.is_not(None), RatingTask.gold_answer.is_not(None),
               Judgment.kind.in_(("ab", "mos")))
    )
    if user_id is not None:
        q = q.where(Judgment.user_id == user_id)
    out: dict[int, dict] = {}
    done: set[tuple[int, int]] = set()
    for uid, tid, raw, trap in s.execute(q):
        if (uid, tid) in done:  # one check per task (an A/B task may carry MOS rows too)
            continue
        done.add((uid, tid))
        outcome = json.loads(raw).get("qc")
        d = out.setdefault(uid, {"gold_n": 0, "gold_ok": 0, "trap_n": 0, "trap_failed": 0,
                                 "outages": 0})
        if outcome == "outage":
            d["outages"] += 1
        elif trap:
            d["trap_n"] += 1
            d["trap_failed"] += outcome == "fail"
        else:
            d["gold_n"] += 1
            d["gold_ok"] += outcome == "pass"
    return out


def _fail_reason(rt: Runtime, d: dict) -> str | None:
    """Why a rater's QC record fails them (a FLAG_REASONS value), None when it does not."""
    cfg = rt.settings.rating
    if d["trap_failed"]:
        return "trap_failed"
    if d["gold_n"] >= cfg.qc_min_gold and d["gold_ok"] / d["gold_n"] < cfg.min_gold_accuracy:
        return "gold_accuracy"
    return None


def _fails(rt: Runtime, d: dict) -> bool:
    return _fail_reason(rt, d) is not None


def _apply_qc(rt: Runtime, s, user_id: int) -> None:
    """After a QC answer: flag all of a failing rater's votes with the reason."""
    d = _qc_summary(s, user_id).get(user_id)
    if d and (reason := _fail_reason(rt, d)):
        _flag(s, user_id, reason)


def _carry_flag(s, user_id: int, rows: list[Judgment]) -> None:
    """A rater whose votes are flagged (QC failed, or an admin flagged them) has each new vote
    flagged at once with the same reason, not only at their next QC answer."""
    # a rater's votes are flagged and unflagged all together: their newest one tells
    reason = s.scalar(select(Judgment.flag_reason).where(
        Judgment.user_id == user_id, Judgment.kind.in_(("ab", "mos")))
        .order_by(Judgment.id.desc()).limit(1))
    for row in rows:
        row.flagged, row.flag_reason = reason is not None, reason


def _flag(s, user_id: int, reason: str | None) -> int:
    """Flag all of a rater's human votes with `reason` (None = unflag). Rows touched."""
    res = s.execute(
        update(Judgment)
        .where(Judgment.user_id == user_id, Judgment.kind.in_(("ab", "mos")))
        .values(flagged=reason is not None, flag_reason=reason)
        .execution_options(synchronize_session=False)
    )
    return res.rowcount


def set_flagged(rt: Runtime, user_name: str, flagged: bool) -> int:
    """Admin override: flag (reason "admin") or unflag all of a rater's votes. Returns rows
    touched."""
    with rt.store.session() as s:
        user = s.scalar(select(User).where(User.name == user_name))
        if user is None:
            raise RatingError(f"unknown user {user_name!r}")
        return _flag(s, user.id, "admin" if flagged else None)


def vote_accounting(rt: Runtime) -> list[dict]:
    """Per UTC day: human votes stored, how many count in statistics (clean), the clean rate,
    and the excluded ones by reason (each flag reason, and trap answers, which check the rater
    and are never a view of a model); QC outages (a check that could not run: the vote still
    counts) beside them. Nothing is ever dropped, so the columns add up to the votes."""
    with rt.store.read() as s:
        rows = queries.human_vote_status(s)
    days: dict[str, dict] = {}
    for r in rows:
        d = days.setdefault(r.day, {"day": r.day, "votes": 0, "clean": 0,
                                    **{k: 0 for k in EXCLUSION_REASONS}, "qc_outages": 0})
        d["votes"] += 1
        d["clean" if r.excluded is None else r.excluded] += 1
        d["qc_outages"] += r.qc == "outage"
    out = []
    for day in sorted(days, reverse=True):
        d = days[day]
        out.append({**d, "clean_rate": d["clean"] / d["votes"]})
    return out


EXCLUSION_REASONS = (*FLAG_REASONS, "trap_answer")


def rater_report(rt: Runtime) -> list[dict]:
    """Per rater: votes, gold/trap accuracy, outages, MOS variance, flagged votes, status."""
    with rt.store.read() as s:
        users = s.execute(select(User.id, User.name, User.role)).all()
        qc = _qc_summary(s)
        stats = {
            uid: (n, nflag)
            for uid, n, nflag in s.execute(
                select(Judgment.user_id, func.count(),
                       func.sum(case((Judgment.flagged, 1), else_=0)))
                .where(Judgment.kind.in_(("ab", "mos")))
                .group_by(Judgment.user_id)
            )
        }
        values: dict[int, list[float]] = {}
        for uid, v in s.execute(
            select(Judgment.user_id, Judgment.value).where(Judgment.kind == "mos")
        ):
            values.setdefault(uid, []).append(float(v))
    out = []
    for uid, name, role in users:
        n, nflag = stats.get(uid, (0, 0))
        d = qc.get(uid, {"gold_n": 0, "gold_ok": 0, "trap_n": 0, "trap_failed": 0,
                         "outages": 0})
        vals = values.get(uid, [])
        mean = sum(vals) / len(vals) if vals else None
        var = sum((x - mean) ** 2 for x in vals) / (len(vals) - 1) if len(vals) > 1 else None
        out.append({
            "user": name, "role": role, "votes": int(n or 0),
            "gold": f"{d['gold_ok']}/{d['gold_n']}",
            "gold_accuracy": round(d["gold_ok"] / d["gold_n"], 3) if d["gold_n"] else None,
            "traps_failed": f"{d['trap_failed']}/{d['trap_n']}", "qc_outages": d["outages"],
            "mos_variance": round(var, 3) if var is not None else None,
            "flagged_votes": int(nflag or 0),
            "status": "failed QC" if _fails(rt, d) else ("ok" if n else "no votes"),
        })
    return out


# --- summaries for Listen --------------------------------------------------------------------
def sample_ratings(rt: Runtime, sample_ids: list[int]) -> dict[int, dict]:
    """Per sample: mean AI score over every judge (n), human MOS per aspect (mean, n), A/B
    wins/losses/ties; counted judgments only (backend.queries)."""
    ids = [int(x) for x in sample_ids]
    out = {sid: {"ai": None, "ai_n": 0, "mos": {}, "ab": {"win": 0, "loss": 0, "tie": 0}}
           for sid in ids}
    if not ids:
        return out
    with rt.store.read() as s:
        ai, mos = defaultdict(list), defaultdict(list)
        for a in queries.ai_scores(s, sample_ids=ids):
            ai[a.sample_id].append(a.value)
        for m in queries.mos_ratings(s, sample_ids=ids):
            mos[(m.sample_id, m.aspect)].append(m.value)
        votes = queries.ab_votes(s, sample_ids=ids)
    for sid, values in ai.items():
        out[sid]["ai"], out[sid]["ai_n"] = sum(values) / len(values), len(values)
    for (sid, aspect), values in mos.items():
        out[sid]["mos"][aspect] = (sum(values) / len(values), len(values))
    for v in votes:
        for me, mine, theirs in ((v.sample_a, "A", "B"), (v.sample_b, "B", "A")):
            if me not in out:
                continue
            key = "win" if v.choice == mine else "loss" if v.choice == theirs else "tie"
            out[me]["ab"][key] += 1
    return out


def votes_of(rt: Runtime, user_id: int) -> list[dict]:
    """A rater's stored human judgments (for tests and exports)."""
    with rt.store.read() as s:
        rows = s.scalars(
            select(Judgment).where(and_(Judgment.user_id == int(user_id),
                                        Judgment.kind.in_(("ab", "mos"))))
            .order_by(Judgment.id)
        ).all()
        return [
            {"id": j.id, "kind": j.kind, "aspect": j.aspect, "task_id": j.task_id,
             "choice": j.choice, "value": j.value, "flagged": j.flagged,
             "shown_swapped": j.shown_swapped, "sample_id": j.sample_id,
             "sample_b_id": j.sample_b_id}
            for j in rows
        ]
