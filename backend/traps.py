"""Trap clips for rater quality control, in the spirit of ITU-T P.808: a clip whose speech tells
the rater which answer to give ("This is an attention check. Please answer: both bad."). A rater
who answers otherwise was not listening, and `backend.rating` flags all their votes.

Why spoken instructions: a trap must look like any other task until it is heard, so it is a clip
in the Rate tab, not a text question. The speech is synthesized offline with espeak-ng (an apt
package, no network, deterministic), once per instruction, under `<audio_dir>/traps/`.

Each trap clip is stored as a `Sample` with `is_trap` set, under the prompt and version of the
real continuation it is paired with, so the task looks like the others (same prompt before it).
`is_trap` keeps it out of AI judging, preference pairs, Listen and statistics.

Why "choose this clip" rather than "choose the left clip": left/right is randomized per rater,
and a rater who always picks the left clip would pass a left-clip trap every time. The answer
kinds below hold whatever the order: the side of the instruction clip, tie, or both bad.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import func, select

from backend import rating
from backend.files import write_wav
from backend.runtime import Runtime
from db.schema import RatingTask, Sample
from models.mini import audio

TRAP_SEED = -808
"""Sample.seed of trap clips: never a sampling seed, so `generate.generate` never counts them."""
VOICE, SPEED = "en-us", 150


@dataclass(frozen=True)
class Trap:
    text: str
    answer: str
    """In stored terms: the trap clip is always sample A (A/B) or the only sample (MOS)."""
    kind: str = "ab"


TRAPS: dict[str, Trap] = {
    "this": Trap("This is an attention check. Please choose this clip as the better one.", "A"),
    "tie": Trap("This is an attention check. Please answer: tie.", "tie"),
    "both_bad": Trap("This is an attention check. Please answer: both bad.", "both_bad"),
    "mos_bad": Trap("This is an attention check. Please rate the meaningfulness of this clip "
                    "as one, bad.", "1-1", kind="mos"),
}
AB_TRAPS = tuple(k for k, t in TRAPS.items() if t.kind == "ab")


def synthesize(text: str, voice: str = VOICE, speed: int = SPEED) -> tuple[np.ndarray, int]:
    """espeak-ng speech of `text` at espeak's own rate; a missing espeak is a RatingError."""
    try:
        return audio.espeak(text, voice, speed)
    except audio.SpeechError as e:
        raise rating.RatingError(str(e)) from None


def trap_audio(rt: Runtime, kind: str) -> Path:
    """The WAV of one trap instruction, made once (named by a hash of text and voice, so a
    changed wording gives a new file and old tasks keep theirs) and written atomically."""
    trap = TRAPS[kind]
    key = hashlib.sha256(f"{trap.text}|{VOICE}|{SPEED}".encode()).hexdigest()[:12]
    path = rt.settings.audio_dir / "traps" / f"{kind}-{key}.wav"
    if not path.is_file():
        write_wav(path, *synthesize(trap.text))
    return path


def _trap_sample(s, rt: Runtime, kind: str, real: Sample) -> int:
    """The trap clip of `kind` under the real sample's prompt and version (one per kind)."""
    index = list(TRAPS).index(kind)
    sid = s.scalar(select(Sample.id).where(
        Sample.prompt_id == real.prompt_id, Sample.model_version_id == real.model_version_id,
        Sample.seed == TRAP_SEED, Sample.index == index))
    if sid is not None:
        return sid
    smp = Sample(prompt_id=real.prompt_id, model_version_id=real.model_version_id,
                 seed=TRAP_SEED, index=index, units=[], is_trap=True,
                 sampling_params={"trap": kind}, audio_path=str(trap_audio(rt, kind)),
                 transcript=TRAPS[kind].text)
    s.add(smp)
    s.flush()
    return smp.id


def add_traps(rt: Runtime, n: int = 4, kinds: tuple[str, ...] | list[str] = AB_TRAPS) -> list[dict]:
    """Create up to `n` trap tasks, cycling through `kinds`, each paired with a real
    continuation (A/B) of a different prompt where possible, prompts with the fewest traps
    first. Returns the tasks made: id, kind, expected answer, clip path."""
    kinds = list(kinds)
    bad = [k for k in kinds if k not in TRAPS]
    if bad or not kinds:
        raise rating.RatingError(f"trap kinds must be among {', '.join(TRAPS)}")
    if not 1 <= int(n) <= 500:
        raise rating.RatingError("make between 1 and 500 traps at a time")
    paths = {k: trap_audio(rt, k) for k in kinds}  # synthesize before touching the store
    made: list[dict] = []
    with rt.store.session() as s:
        trapped = (select(RatingTask.sample_b_id).where(RatingTask.is_trap,
                                                        RatingTask.sample_b_id.is_not(None)))
        traps_per_prompt = dict(s.execute(
            select(Sample.prompt_id, func.count()).where(Sample.is_trap)
            .group_by(Sample.prompt_id)).all())
        reals = s.scalars(
            select(Sample).where(Sample.is_trap.is_(False), Sample.audio_path.is_not(None),
                                 Sample.id.not_in(trapped))
            .order_by(Sample.id)).all()
        # a clip that does not play, or an empty continuation, makes no task (not even a trap)
        reals = [r for r in reals if rating.clip_problem(r.units, r.audio_path) is None]
        reals.sort(key=lambda r: (traps_per_prompt.get(r.prompt_id, 0), r.id))
        first, rest, seen = [], [], set()
        for r in reals:  # one per prompt before any prompt gets a second
            (rest if r.prompt_id in seen else first).append(r)
            seen.add(r.prompt_id)
        queue = first + rest
        for i, real in enumerate(queue[: int(n)]):
            kind = kinds[i % len(kinds)]
            trap = TRAPS[kind]
            tid = _trap_sample(s, rt, kind, real)
            task = RatingTask(kind=trap.kind, sample_a_id=tid,
                              sample_b_id=real.id if trap.kind == "ab" else None,
                              gold_answer=trap.answer, is_trap=True)
            s.add(task)
            s.flush()
            made.append({"task_id": task.id, "trap": kind, "answer": trap.answer,
                         "prompt_id": real.prompt_id, "audio": str(paths[kind])})
    if not made:
        raise rating.RatingError("no continuations to pair trap clips with: generate samples "
                                 "first")
    return made
