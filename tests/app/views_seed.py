"""A store with a known vote set for the view tests (tests/app/test_views.py): three versions,
human A/B votes with chosen outcomes, MOS ratings near the top of the scale, AI scores with the
training judge's evidence. Seeded through the services and the schema, no ML."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from backend import registry, users
from db.schema import EvalResult, Judgment, Sample
from tests.rating.seed import seed

VOTES = {("test-aligned", "test-base"): (18, 2), ("test-aligned-2", "test-base"): (11, 9),
         ("test-aligned-2", "test-aligned"): (3, 17)}
"""(winner-side version, other) -> (wins, losses) of the first against the second."""
MOS = {"test-aligned": [5, 5, 4], "test-base": [3, 2, 3, 4]}
"""Meaningfulness MOS ratings per version: test-aligned's t interval would pass 5."""
EVAL = {"test-base": (2.5, 2.4, 0.6), "test-aligned": (3.1, 2.6, 0.62),
        "test-aligned-2": (3.3, 2.7, 0.61)}
"""Held-out results per version: training judge, evaluation judge, sBLIMP accuracy."""
EVIDENCE_OK = {"n_words": 6, "n_known": 6, "on_topic": 3, "off_topic": 0, "wrong_pronouns": 0,
               "other_names": [], "fluency": 0.9, "broken_cause": False}
EVIDENCE_BAD = {**EVIDENCE_OK, "on_topic": 1, "off_topic": 3, "wrong_pronouns": 1}


def seed_known_votes(rt, raters=("rater1", "rater2"), password="rater-pass-1") -> dict:
    info = seed(rt, n_prompts=4, raters=raters, password=password, tasks=False, split="dev")
    adapter = Path(rt.settings.data_dir) / "tmp-adapter"
    v2 = registry.derive_aligned(rt, info["aligned"].id, adapter, 2, name="test-aligned-2")
    versions = {v.name: v for v in registry.list_versions(rt)}
    uid = users.find_user(rt, raters[0]).id
    pid = info["prompts"][0]
    with rt.store.session() as s:
        for k in range(2):
            s.add(Sample(prompt_id=pid, model_version_id=v2.id, seed=0, index=k,
                         audio_path=s.query(Sample).filter_by(prompt_id=pid).first().audio_path,
                         transcript=f"test-aligned-2 continuation {k}", units=[7, 8, v2.id, k]))
    with rt.store.session() as s:
        first = {v.id: s.query(Sample).filter_by(model_version_id=v.id).order_by(Sample.id)
                 .first().id for v in versions.values()}
        for (a, b), (wins, losses) in VOTES.items():
            sa, sb = first[versions[a].id], first[versions[b].id]
            for k in range(wins + losses):
                s.add(Judgment(kind="ab", rater=f"user:{uid}", task_key=uuid.uuid4().hex,
                               sample_id=sa, sample_b_id=sb, choice="A" if k < wins else "B",
                               user_id=uid))
        for name, values in MOS.items():
            for v in values:
                s.add(Judgment(kind="mos", aspect="meaningfulness", rater=f"user:{uid}",
                               task_key=uuid.uuid4().hex, sample_id=first[versions[name].id],
                               value=float(v), user_id=uid))
        for name, bad in (("test-base", 2), ("test-aligned", 0)):
            sid = first[versions[name].id]
            for k in range(4):
                s.add(Judgment(kind="ai", rater="ai:mini-judge@mini-v1",
                               task_key=uuid.uuid4().hex, sample_id=sid,
                               judge_name="mini-judge", prompt_version="mini-v1",
                               value=2.0 if k < bad else 4.0,
                               raw=json.dumps(EVIDENCE_BAD if k < bad else EVIDENCE_OK)))
        for name, (train_j, eval_j, acc) in EVAL.items():
            vid = versions[name].id
            for bench, metric, value, half in (
                    ("judge:mini-judge@mini-v1", "mean_score", train_j, 0.2),
                    ("judge:mini-lm-judge@lm-v1", "mean_score", eval_j, 0.3),
                    ("sblimp", "accuracy", acc, 0.05)):
                s.add(EvalResult(model_version_id=vid, benchmark=bench, metric=metric,
                                 value=value, n=40, ci_low=value - half, ci_high=value + half,
                                 details={"split": "dev"}))
    return {**info, "aligned2": v2}
