"""Mini versions of the four benchmarks, built from held-out (dev/test) material only.

Each item is a pair of spoken texts (a list of sentences, spoken one after the other in one
voice): `good` (correct=1) and `bad` (correct=0). The accuracy metric is the TWIST/ZeroSpeech
one: the LM must give the good item the higher summed log-likelihood.

- swuggy: a word of the world vs a pronounceable non-word of the same length (lexical).
- sblimp: a held-out story sentence vs a minimal-pair violation (word swap, "was" -> "were",
  a doubled determiner) (syntactic).
- ssc: story beginning + its true cause-effect sentence vs the same cause with the effect of the
  *other* event of the same topic ("the sun was hot, so she fetched a watering can") (coherence).
- tsc: story beginning + its true cause-effect sentence vs one from another topic, at that
  topic's place (topic).
Context = intro + "saw" sentence, ending = the event: the position events have in training.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from models.mini import world


@dataclass
class Pair:
    id: str
    good: list[str]
    bad: list[str]
    kind: str
    voice: str
    word: str = ""


def swuggy(split: str, n: int, voices: list[str], seed: int) -> list[Pair]:
    rng = random.Random(f"swuggy-{split}-{seed}")
    content = sorted(w for w in world.lexicon() if len(w) >= 4 and w not in world.FUNCTION_WORDS)
    # dev and test use disjoint words (every other word), as ZeroSpeech's splits do.
    pool = content[0::2] if split == "dev" else content[1::2]
    out = []
    for i in range(n):
        w = pool[i % len(pool)]
        out.append(Pair(f"{i:05d}", [w], [world.nonword(w, rng)], "word",
                        voices[(i // len(pool)) % len(voices)], w))
    return out


def sblimp(stories: list[world.Story], n: int, voices: list[str], seed: int) -> list[Pair]:
    rng = random.Random(f"sblimp-{seed}")
    sents = sorted({s for st in stories for s in st.sentences[1:]})
    rng.shuffle(sents)
    out = []
    for i in range(n):
        s = sents[i % len(sents)]
        bad = world.ungrammatical(s, rng)
        if bad == s:
            continue
        out.append(Pair(f"{i:05d}", [s], [bad], "syntax", rng.choice(voices)))
    return out


def cloze(stories: list[world.Story], n: int, voices: list[str], seed: int, kind: str
          ) -> list[Pair]:
    """ssc (kind='ssc') or tsc (kind='tsc') pairs from coherent held-out stories."""
    rng = random.Random(f"{kind}-{seed}")
    out = []
    for i in range(n):
        st = stories[i % len(stories)]
        t = world.TOPICS[st.topic]
        pron = world.PRON[world.NAMES[st.name]][0]
        ctx = world.make_story(rng, "x", "x", st.name, st.topic, st.activity, 2).sentences
        j = rng.randrange(len(t["events"]))
        cause, effect = t["events"][j]
        good = world.event_sentence(st.topic, cause, effect, pron)
        if kind == "ssc":
            bad = world.event_sentence(st.topic, cause, t["events"][1 - j][1], pron)
        else:
            other = rng.choice([x for x in world.TOPICS if x != st.topic])
            bad = world.event_sentence(other, *rng.choice(world.TOPICS[other]["events"]), pron)
        out.append(Pair(f"{i:05d}", [*ctx, good], [*ctx, bad], kind, rng.choice(voices)))
    return out
