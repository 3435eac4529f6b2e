"""The judge path in memory, for online training: continuation units -> vocoder -> ASR ->
AI judge score, with nothing stored. Offline rounds score stored samples step by step
(generate, transcribe, judge); an online method needs the same verdict on samples its trainer
has just drawn, many times a minute."""

from __future__ import annotations

from collections.abc import Sequence

from backend.loop.generate import vocode
from backend.loop.judge import safe_score
from backend.loop.transcribe import transcribe_waves
from backend.runtime import Runtime


def continuation_texts(rt: Runtime, conts: Sequence[Sequence[int]]) -> list[str]:
    """ASR transcripts of continuations vocoded alone (as `generate` vocodes them)."""
    voc = rt.vocoder
    waves = vocode(voc, conts)
    return [t.strip() for t in transcribe_waves(rt, [(w, voc.sample_rate) for w in waves])]


def judge_continuations(rt: Runtime, prompt_texts: Sequence[str],
                        conts: Sequence[Sequence[int]]) -> list[float | None]:
    """Each continuation's score given its prompt's transcript: the mean over the judges that
    train (as pair selection averages them), None where every one failed (a trainer treats it
    as missing, never as a score)."""
    judges = [rt.judge(j.name) for j in rt.settings.models.judges if j.trains]
    texts = continuation_texts(rt, conts)
    out: list[float | None] = []
    for p, t in zip(prompt_texts, texts, strict=True):
        vals = [v for jd in judges if (v := safe_score(jd, p, t).value) is not None]
        out.append(sum(vals) / len(vals) if vals else None)
    return out
