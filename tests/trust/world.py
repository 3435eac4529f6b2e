"""A judged store for the trust, routing and export tests, filled through the SQLAlchemy
models: versions, prompts, samples, human A/B votes and MOS ratings, AI scores; and fake AI
judges the Runtime hands out (no model files)."""

from __future__ import annotations

import uuid

from backend import registry
from db.schema import Judgment, Prompt, Sample, User
from models.interfaces import Score, Verdict

PV = "v1"


class FakeJudge:
    """A judge the test controls: `scores` maps continuation text -> score; `compare` answers
    a fixed preference for the text it likes, or (with `first_bias`) always the first shown."""

    prompt_version = PV

    def __init__(self, name: str, scores: dict[str, float] | None = None,
                 likes: set[str] | None = None, first_bias: bool = False):
        self.name = name
        self.scores = scores or {}
        self.likes = likes or set()
        self.first_bias = first_bias

    def score(self, prompt_text: str, continuation_text: str) -> Score:
        return Score(self.scores.get(continuation_text, 3.0), judge=self.name,
                     prompt_version=PV)

    def compare(self, prompt_text: str, first: str, second: str) -> Verdict:
        if self.first_bias:
            return Verdict("A")
        if first in self.likes and second not in self.likes:
            return Verdict("A")
        if second in self.likes and first not in self.likes:
            return Verdict("B")
        return Verdict("tie")


def use_judges(rt, *judges: FakeJudge) -> None:
    for j in judges:
        rt._components[f"judge:{j.name}"] = j


class World:
    def __init__(self, rt, tmp_path, raters: int = 3):
        self.rt = rt
        self.base = registry.create_baseline(rt, "base", "ref")
        src = tmp_path / "ad"
        src.mkdir(exist_ok=True)
        (src / "adapter_config.json").write_text("{}")
        self.a1 = registry.derive_aligned(rt, "base", src, 1, name="a1")
        self.users = []
        with rt.store.session() as s:
            for k in range(raters):
                u = User(name=f"r{k}", password_hash="x", role="rater")
                s.add(u)
                s.flush()
                self.users.append(u.id)
        self._k = 0

    def prompt(self, split: str = "train") -> int:
        key = uuid.uuid4().hex
        with self.rt.store.session() as s:
            p = Prompt(audio_path=f"/{key}.wav", audio_sha256=key, duration_s=1.0, split=split,
                       transcript="a prompt")
            s.add(p)
            s.flush()
            return p.id

    def sample(self, version, prompt: int, transcript: str | None = None) -> int:
        self._k += 1
        with self.rt.store.session() as s:
            smp = Sample(prompt_id=prompt, model_version_id=version.id, seed=0, index=self._k,
                         units=[1, 2, self._k], transcript=transcript or f"text {self._k}")
            s.add(smp)
            s.flush()
            return smp.id

    def ab(self, sa: int, sb: int, choice: str, user: int = 0, flagged: bool = False) -> None:
        self._k += 1
        with self.rt.store.session() as s:
            s.add(Judgment(kind="ab", rater=f"user:{self.users[user]}", task_key=f"t{self._k}",
                           sample_id=sa, sample_b_id=sb, choice=choice,
                           user_id=self.users[user], flagged=flagged,
                           flag_reason="admin" if flagged else None))

    def mos(self, sid: int, value: float, user: int = 0) -> None:
        self._k += 1
        with self.rt.store.session() as s:
            s.add(Judgment(kind="mos", aspect="meaningfulness", rater=f"user:{self.users[user]}",
                           task_key=f"m{self._k}", sample_id=sid, value=value,
                           user_id=self.users[user]))

    def ai(self, sid: int, value: float, judge: str) -> None:
        with self.rt.store.session() as s:
            s.add(Judgment(kind="ai", rater=f"ai:{judge}@{PV}", task_key=f"sample:{sid}",
                           sample_id=sid, judge_name=judge, prompt_version=PV, value=value))
