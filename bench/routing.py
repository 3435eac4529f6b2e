"""Does `rating.routing = "active"` buy the same answer with fewer human votes than "balanced"?

A simulated panel votes through the real rating service (`backend.rating.next_task`,
`record_play`, `vote`) on a real SQLite store seeded through the services (tests/rating/seed.py:
a baseline and an aligned version, `--prompts` prompts with `--pairs` same-index A/B tasks each).
Every clip has a true quality (the aligned version 0.3 better on average, N(0, 1) around it).
Two AI judges score every clip (1-5): "sharp" sees the true quality with a little noise, "vague"
with much more, so they disagree on some tasks. `--raters` simulated raters of known accuracy
(evenly spread from 0.6 to 0.95) each pick the truly better clip with their accuracy.

The question the votes answer: which judge agrees more with people (what `backend.trust` gates
pairs on). Its figure: the difference between the two judges' agreement with people over all
tasks, a judge's agreement on a task being the share of people's decisive votes on it that side
with the judge (a tie from the judge: half). Δ = f · mean(d) over the tasks the judges disagree
on (f = their share of all tasks, known from the AI scores alone; d = sharp's agreement minus
vague's; where the judges agree d is 0 whatever people say), over the tasks with a decisive vote.
Its 95% interval: percentile bootstrap of d over tasks, times f. The same estimator for both
policies. (The vote share, not the majority, because a 1-1 draw would drop a task from a
majority-based figure as votes come in.)

Votes ratio: votes `active` needs until the interval is, and stays, as narrow as `balanced`'s
after `--votes` votes, divided by `--votes`; averaged over `--seeds` panels (the same clips,
scores and raters for both policies within a seed). The human Bradley-Terry interval of the
aligned version is reported beside it (routing cannot make that one much cheaper with two
versions: balanced allocation is already close to optimal for it).

    .venv/bin/python -m bench.routing [--prompts 30] [--pairs 4] [--raters 20] [--votes 240]
        [--seeds 2] [--out bench/results/routing.json]

Prints one line per seed and policy, then `votes ratio: 0.NN` as its last line.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("STUDIO_CONFIG", "/nonexistent/studio.toml")

ROOT = Path(__file__).resolve().parents[1]
CHECK_EVERY = 10


def _world(rt, args, seed: int):
    """Seed the store; return (true quality per sample id, sample id per clip path)."""
    from sqlalchemy import select

    from db.schema import Judgment, Sample
    from tests.rating.seed import seed as seed_world

    raters = [f"sim{k}" for k in range(args.raters)]
    w = seed_world(rt, n_prompts=args.prompts, raters=raters, samples_per_version=args.pairs,
                   per_prompt_pairs=args.pairs, split="bench", seconds=0.3)
    rng = np.random.default_rng(seed)
    with rt.store.session() as s:
        rows = s.execute(select(Sample.id, Sample.model_version_id, Sample.audio_path)
                         .order_by(Sample.id)).all()
        quality, by_path = {}, {}
        for sid, vid, path in rows:
            quality[sid] = (0.3 if vid == w["aligned"].id else 0.0) + rng.normal()
            by_path[path] = sid
            for judge, noise in (("sharp", 0.5), ("vague", 1.5)):
                value = float(np.clip(np.rint(3 + quality[sid] + rng.normal(0, noise)), 1, 5))
                s.add(Judgment(kind="ai", rater=f"ai:{judge}@sim", task_key=f"sample:{sid}",
                               sample_id=sid, judge_name=judge, prompt_version="sim",
                               value=value))
    return quality, by_path, raters


def _judge_sides(rt) -> tuple[dict[tuple[int, int], int], int]:
    """Per task (sample pair): which sample each judge prefers; the pairs they disagree on."""
    from sqlalchemy import select

    from backend import queries
    from db.schema import RatingTask

    with rt.store.read() as s:
        scores: dict[str, dict[int, float]] = {}
        for a in queries.ai_scores(s):
            scores.setdefault(a.judge, {})[a.sample_id] = a.value
        tasks = s.execute(select(RatingTask.sample_a_id, RatingTask.sample_b_id)).all()
    sides = {}
    for a, b in tasks:
        key = (min(a, b), max(a, b))
        sides[key] = tuple(int(np.sign(scores[j][key[0]] - scores[j][key[1]]))
                           for j in ("sharp@sim", "vague@sim"))
    return sides, len(tasks)


def _difference_width(rt, sides, n_tasks, rng) -> tuple[float, int]:
    """95% interval width of Δ (see the module docstring) and the tasks it rests on."""
    from backend import queries

    with rt.store.read() as s:
        votes = queries.ab_votes(s)
    for_lo: dict[tuple[int, int], list[int]] = {}
    for v in votes:
        if v.choice not in ("A", "B"):
            continue
        key = (min(v.sample_a, v.sample_b), max(v.sample_a, v.sample_b))
        winner = v.sample_a if v.choice == "A" else v.sample_b
        for_lo.setdefault(key, []).append(int(winner == key[0]))
    disagree = [k for k, (sharp, vague) in sides.items() if sharp != vague]
    f = len(disagree) / n_tasks

    def agreement(side: int, share_lo: float) -> float:
        return 0.5 if side == 0 else share_lo if side > 0 else 1 - share_lo

    d = [agreement(sides[k][0], float(np.mean(for_lo[k])))
         - agreement(sides[k][1], float(np.mean(for_lo[k]))) for k in disagree if k in for_lo]
    if len(d) < 5:
        return float("inf"), len(d)
    x = np.array(d, float)
    means = x[rng.integers(0, x.size, size=(2000, x.size))].mean(axis=1)
    lo, hi = np.quantile(means, [0.025, 0.975])
    return float(f * (hi - lo)), len(d)


def _bt_width(rt) -> float:
    from backend import leaderboard

    rows = leaderboard.leaderboard(rt, "human")["rows"]
    widths = [r["bt"]["high"] - r["bt"]["low"] for r in rows
              if r["kind"] == "aligned" and r["bt"] and r["bt"]["low"] is not None]
    return widths[0] if widths else float("inf")


def run(policy: str, args, seed: int) -> dict:
    from backend import rating, users
    from backend.config import RatingConfig, Settings
    from backend.runtime import Runtime

    # in memory where the machine has it: a vote is a few small transactions, and fsyncs on a
    # shared disk would make the bench measure the disk
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-routing-{policy}-", dir=shm))
    rt = Runtime(Settings(data_dir=tmp / "data", database_url=f"sqlite:///{tmp / 'store.db'}",
                          rating=RatingConfig(gold_fraction=0.0, daily_cap=10**6,
                                              routing=policy, bootstrap_resamples=300)))
    try:
        quality, by_path, raters = _world(rt, args, seed)
        sides, n_tasks = _judge_sides(rt)
        ids = {name: users.find_user(rt, name).id for name in raters}
        accuracy = dict(zip(raters, np.linspace(0.6, 0.95, len(raters)), strict=True))
        rng = random.Random(seed)
        boot = np.random.default_rng(seed)
        curve = []
        active = list(raters)
        votes = 0
        started = time.perf_counter()
        while votes < args.votes and active:
            name = rng.choice(active)
            t = rating.next_task(rt, ids[name], rng)
            if t is None:
                active.remove(name)
                continue
            for side in t["audio"]:
                rating.record_play(rt, ids[name], t["assignment_id"], side, "start")
                rating.record_play(rt, ids[name], t["assignment_id"], side, "end")
            left, right = by_path[t["audio"]["A"]], by_path[t["audio"]["B"]]
            better = "A" if quality[left] > quality[right] else "B"
            choice = better if rng.random() < accuracy[name] else ("B" if better == "A" else "A")
            rating.vote(rt, ids[name], t["assignment_id"], choice)
            votes += 1
            if votes % CHECK_EVERY == 0:
                width, n_items = _difference_width(rt, sides, n_tasks, boot)
                curve.append({"votes": votes, "difference_width": width,
                              "disagreement_items": n_items,
                              "bt_width": _bt_width(rt) if votes % (5 * CHECK_EVERY) == 0
                              else None})
        return {"policy": policy, "seed": seed, "votes": votes, "curve": curve,
                "tasks": n_tasks,
                "disagreement_share": sum(a != b for a, b in sides.values()) / n_tasks,
                "seconds": round(time.perf_counter() - started, 1)}
    finally:
        rt.close()
        shutil.rmtree(tmp, ignore_errors=True)


def votes_to_reach(curve: list[dict], key: str, target: float) -> int | None:
    """The first checkpoint from which `key` stays at or below `target`."""
    reached = None
    for point in curve:
        value = point[key]
        if value is None:
            continue
        if value <= target:
            reached = reached or point["votes"]
        else:
            reached = None
    return reached


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--prompts", type=int, default=30)
    p.add_argument("--pairs", type=int, default=4, help="A/B tasks per prompt")
    p.add_argument("--raters", type=int, default=20)
    p.add_argument("--votes", type=int, default=240)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "routing.json")
    args = p.parse_args(argv)
    runs, ratios, bt_ratios = [], [], []
    for seed in range(args.seeds):
        bal, act = run("balanced", args, seed), run("active", args, seed)
        runs += [bal, act]
        target = bal["curve"][-1]["difference_width"]
        need = votes_to_reach(act["curve"], "difference_width", target)
        ratio = (need or act["votes"]) / bal["votes"]
        ratios.append(ratio)
        bt_target = next((c["bt_width"] for c in reversed(bal["curve"]) if c["bt_width"]),
                         float("inf"))
        bt_need = votes_to_reach(act["curve"], "bt_width", bt_target)
        bt_ratios.append((bt_need or act["votes"]) / bal["votes"])
        for r in (bal, act):
            last = r["curve"][-1]
            print(f"seed {seed} {r['policy']:>8}: {r['votes']} votes on {r['tasks']} tasks "
                  f"({r['disagreement_share']:.0%} with judges disagreeing), "
                  f"{last['disagreement_items']} of them with a decisive vote, "
                  f"difference CI width {last['difference_width']:.3g}, {r['seconds']} s")
        print(f"seed {seed}: active reaches balanced's width {target:.3g} after "
              f"{need if need else 'more than ' + str(act['votes'])} votes (ratio {ratio:.2f}); "
              f"BT CI width {bt_target:.3g}: ratio {bt_ratios[-1]:.2f}")
    result = {
        "question": "votes until the 95% CI of the two judges' agreement difference is as "
                    "narrow as balanced routing's after --votes votes",
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "votes_ratio": float(np.mean(ratios)), "votes_ratio_per_seed": ratios,
        "bt_width_votes_ratio": float(np.mean(bt_ratios)),
        "runs": runs, "when": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=float))
    print(f"wrote {args.out}")
    print(f"votes ratio: {np.mean(ratios):.2f}")


if __name__ == "__main__":
    main()
