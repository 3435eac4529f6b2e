"""The mini world's knowledge: a generator of short English stories with known structure.

A story is 3-5 sentences about one character at one place (its *topic*):

    1 intro   "Anna went to the garden to plant some seeds."   (the loop's ~3 s prompt)
    2 see     "She saw a small rose in the garden."            (an object of the topic)
    3 event   "At the garden, the sun was hot, so she sipped some lemonade."  (cause -> effect)
    4 act     "She picked the rose near the fence."            (what one does with that object)
    5 end     "She was happy and went home."

Sentences 2 and 3 repeat the place: the topic is carried lexically as well as by association, so
a small unit LM trained for minutes can learn to stay on topic (copying is what small
transformers learn first), and the topic StoryCloze is learnable.

Why this shape: a continuation's coherence with its prompt is *defined* here, so the judge
(models/mini/judge.py) checks it with the same tables the generator used: topic words, the
character's name and pronoun, which effect belongs to which cause. Every content word belongs to
exactly one topic (asserted below), so on-topic vs off-topic is well defined even in a noisy ASR
transcript.

Why noise: web data is noisy, and an LM pre-trained only on perfect stories would leave nothing
for preference optimisation to fix. A fraction of the pre-training stories is incoherent in the
ways the judge penalises (topic switch after the intro, character switch, broken cause-effect),
so the pre-trained LM's sampled continuations vary in judged quality and DPO on judge-selected
pairs has a signal to learn.

Held-out: stories are split by (name, activity) combination, so dev/test prompts pair a
character with an activity never seen together in training; benchmarks use dev/test stories only.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

NAMES = {
    "anna": "f", "lucy": "f", "emma": "f", "mia": "f", "sara": "f",
    "lily": "f", "zoe": "f", "kate": "f", "ruby": "f", "nora": "f",
    "tom": "m", "ben": "m", "max": "m", "leo": "m", "jack": "m",
    "sam": "m", "owen": "m", "luke": "m", "adam": "m", "ryan": "m",
}
PRON = {"f": ("she", "her"), "m": ("he", "his")}

# topic -> place, activities, objects (object -> verb phrase used on it), adjectives, events
# Events are (cause clause, effect clause); "{p}" is the subject pronoun.
TOPICS: dict[str, dict] = {
    "garden": {
        "place": "garden",
        "activities": ["plant some seeds", "water the roses", "pick tulips"],
        "objects": {"rose": "picked", "worm": "moved", "spade": "held", "bee": "watched"},
        "where": "near the fence",
        "events": [("the sun was hot", "{p} sipped some lemonade"),
                   ("the soil was dry", "{p} fetched a watering can")],
    },
    "kitchen": {
        "place": "kitchen",
        "activities": ["bake a cake", "cook some soup", "make breakfast"],
        "objects": {"egg": "cracked", "pan": "washed", "spoon": "dropped", "onion": "chopped"},
        "where": "on the table",
        "events": [("the oven was warm", "{p} baked fresh bread"),
                   ("the cream was sour", "{p} poured it away")],
    },
    "beach": {
        "place": "beach",
        "activities": ["build a sandcastle", "swim in the sea", "look for shells"],
        "objects": {"shell": "collected", "crab": "followed", "towel": "shook", "bucket": "filled"},
        "where": "by the waves",
        "events": [("the wind was strong", "{p} flew a kite"),
                   ("the tide came in", "{p} ran up the dunes")],
    },
    "school": {
        "place": "school",
        "activities": ["read a book", "learn some maths", "paint a picture"],
        "objects": {"pencil": "sharpened", "chalk": "broke", "ruler": "measured", "globe": "spun"},
        "where": "in the classroom",
        "events": [("the bell rang loudly", "{p} hurried to lessons"),
                   ("the teacher was kind", "{p} answered questions")],
    },
    "forest": {
        "place": "forest",
        "activities": ["walk with a dog", "find mushrooms", "climb a tree"],
        "objects": {"acorn": "kicked", "squirrel": "chased", "branch": "snapped", "owl": "heard"},
        "where": "under the pines",
        "events": [("the path was muddy", "{p} wore rubber boots"),
                   ("the night got dark", "{p} lit a torch")],
    },
    "market": {
        "place": "market",
        "activities": ["buy some apples", "sell old toys", "meet a friend"],
        "objects": {"basket": "carried", "coin": "counted", "melon": "weighed", "cheese": "tasted"},
        "where": "at a stall",
        "events": [("the prices were low", "{p} bought extra bananas"),
                   ("the crowd was noisy", "{p} covered both ears")],
    },
    "farm": {
        "place": "farm",
        "activities": ["feed the hens", "milk a cow", "ride a pony"],
        "objects": {"lamb": "hugged", "tractor": "cleaned", "goat": "brushed", "piglet": "lifted"},
        "where": "in the barn",
        "events": [("the rooster crowed early", "{p} woke before sunrise"),
                   ("the hay was wet", "{p} dried it outside")],
    },
    "snow": {
        "place": "mountain",
        "activities": ["ski down a slope", "throw snowballs", "go sledging"],
        "objects": {"scarf": "tied", "glove": "lost", "sledge": "pulled", "icicle": "touched"},
        "where": "beside the cabin",
        "events": [("the snow was deep", "{p} skied very slowly"),
                   ("the air was freezing", "{p} made cocoa")],
    },
}
ADJECTIVES = ["small", "big", "red", "tiny"]
ENDINGS = ["{P} was happy and went home.", "{P} smiled and went home."]

FUNCTION_WORDS = set(
    "a an the to and so some with in on at by near under beside before up it very both "
    "went saw was were smiled happy home he she his her him lost".split()
)


def topic_words(topic: str) -> set[str]:
    """The content words that only this topic uses (place, activities, objects, events)."""
    t = TOPICS[topic]
    text = " ".join([t["place"], *t["activities"], *t["objects"], *t["objects"].values(),
                     t["where"], *(c + " " + e for c, e in t["events"])])
    return {w for w in words(text.replace("{p}", "")) if w not in FUNCTION_WORDS}


def words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


WORD_TOPIC: dict[str, str] = {}
for _topic in TOPICS:
    for _w in topic_words(_topic):
        assert _w not in WORD_TOPIC, f"word {_w!r} in {WORD_TOPIC.get(_w)} and {_topic}"
        WORD_TOPIC[_w] = _topic
# Words that identify one event's cause or effect (for the broken cause-effect check).
CAUSE_WORDS: dict[str, tuple[str, int]] = {}
EFFECT_WORDS: dict[str, tuple[str, int]] = {}
for _topic, _t in TOPICS.items():
    for _i, (_c, _e) in enumerate(_t["events"]):
        for _w in set(words(_c)) - FUNCTION_WORDS:
            CAUSE_WORDS[_w] = (_topic, _i)
        for _w in set(words(_e.replace("{p}", ""))) - FUNCTION_WORDS:
            EFFECT_WORDS[_w] = (_topic, _i)


def lexicon() -> list[str]:
    """Every word the world can say (the ASR snaps near-misses to these)."""
    out = set(FUNCTION_WORDS) | set(NAMES) | set(WORD_TOPIC) | set(ADJECTIVES)
    out |= set(words(" ".join(ENDINGS + ["then"])))
    return sorted(out)


@dataclass
class Story:
    id: str
    split: str
    name: str
    topic: str
    activity: str
    sentences: list[str]
    coherent: bool = True
    noise: str = ""
    """"" for a coherent story, else topic_switch | character_switch | broken_cause."""
    meta: dict = field(default_factory=dict)

    @property
    def text(self) -> str:
        return " ".join(self.sentences)


def _cap(s: str) -> str:
    return s[0].upper() + s[1:]


def intro(name: str, topic: str, activity: str) -> str:
    return f"{_cap(name)} went to the {TOPICS[topic]['place']} to {activity}."


def body(rng: random.Random, topic: str, gender: str, n: int, name: str) -> list[str]:
    """Sentences 2.. of a coherent story about `topic` (n = 2..4 sentences)."""
    t = TOPICS[topic]
    p, _ = PRON[gender]
    obj = rng.choice(sorted(t["objects"]))
    subj = _cap(p) if rng.random() < 0.7 else _cap(name)
    cause, effect = rng.choice(t["events"])
    out = [f"{subj} saw a {rng.choice(ADJECTIVES)} {obj} in the {t['place']}.",
           event_sentence(topic, cause, effect, p),
           f"{_cap(p)} {t['objects'][obj]} the {obj} {t['where']}.",
           rng.choice(ENDINGS).format(P=_cap(p))]
    return out[:n]


def event_sentence(topic: str, cause: str, effect: str, pron: str) -> str:
    return f"At the {TOPICS[topic]['place']}, {cause}, so {effect.format(p=pron)}."


def make_story(rng: random.Random, sid: str, split: str, name: str, topic: str, activity: str,
               n_sent: int, noise: str = "") -> Story:
    gender = NAMES[name]
    sents = [intro(name, topic, activity)]
    n_body = n_sent - 1
    if noise == "topic_switch":
        other = rng.choice([x for x in TOPICS if x != topic])
        sents += body(rng, other, gender, n_body, name)
    elif noise == "character_switch":
        other_g = "m" if gender == "f" else "f"
        other_name = rng.choice([x for x in NAMES if NAMES[x] == other_g])
        sents += body(rng, topic, other_g, n_body, other_name)
    elif noise == "broken_cause":
        sents += body(rng, topic, gender, n_body, name)
        other = rng.choice([x for x in TOPICS if x != topic])
        cause, _ = rng.choice(TOPICS[topic]["events"])
        _, effect = rng.choice(TOPICS[other]["events"])
        bad = event_sentence(topic, cause, effect, PRON[gender][0])
        if len(sents) >= 3:
            sents[2] = bad
        else:
            sents.append(bad)
    else:
        sents += body(rng, topic, gender, n_body, name)
    return Story(sid, split, name, topic, activity, sents, coherent=not noise, noise=noise)


def heldout_combos(seed: int) -> dict[str, set[tuple[str, str]]]:
    """(name, activity) combinations reserved for dev (1/6: 80 of 480, times the voices enough
    distinct held-out prompts for a well-powered comparison, >= 200) and test (1/8)."""
    combos = [(n, a) for n in sorted(NAMES) for t in TOPICS for a in TOPICS[t]["activities"]]
    rng = random.Random(f"heldout-{seed}")
    rng.shuffle(combos)
    k_dev, k_test = len(combos) // 6, len(combos) // 8
    return {"dev": set(combos[:k_dev]), "test": set(combos[k_dev:k_dev + k_test])}


def activity_topic(activity: str) -> str:
    return next(t for t in TOPICS if activity in TOPICS[t]["activities"])


def generate(n_train: int, n_dev: int, n_test: int, seed: int, noise_frac: float = 0.3,
             ) -> dict[str, list[Story]]:
    """Stories by split. Train stories are noisy (`noise_frac` incoherent), dev/test coherent."""
    rng = random.Random(f"stories-{seed}")
    held = heldout_combos(seed)
    combos = [(n, a) for n in sorted(NAMES) for t in TOPICS for a in TOPICS[t]["activities"]]
    pools = {
        "train": [c for c in combos if c not in held["dev"] and c not in held["test"]],
        "dev": sorted(held["dev"]), "test": sorted(held["test"]),
    }
    kinds = ["topic_switch", "character_switch", "broken_cause"]
    out: dict[str, list[Story]] = {}
    for split, n in (("train", n_train), ("dev", n_dev), ("test", n_test)):
        stories = []
        for i in range(n):
            name, act = pools[split][i % len(pools[split])] if split != "train" else rng.choice(
                pools[split])
            noise = ""
            if split == "train" and rng.random() < noise_frac:
                noise = rng.choice(kinds)
            stories.append(make_story(rng, f"{split}-{i:05d}", split, name, activity_topic(act),
                                      act, rng.choice([3, 3, 4, 5]), noise))
        out[split] = stories
    return out


# --- benchmark item generators (held-out material only) ---------------------------------------
def nonword(word: str, rng: random.Random) -> str:
    """A pronounceable non-word of the same length: swap vowels and one consonant."""
    vowels = "aeiou"
    cons = "bdfgklmnprstv"
    chars = list(word)
    idx = [i for i, c in enumerate(chars) if c in vowels]
    for i in idx:
        chars[i] = rng.choice([v for v in vowels if v != chars[i]])
    cidx = [i for i, c in enumerate(chars) if c not in vowels]
    if cidx:
        j = rng.choice(cidx)
        chars[j] = rng.choice([c for c in cons if c != chars[j]])
    out = "".join(chars)
    return out if out not in lexicon() else out + "o"


def ungrammatical(sentence: str, rng: random.Random) -> str:
    """A minimal-pair violation: swap two adjacent words, or break agreement/determiners."""
    ws = sentence.rstrip(".").split()
    kind = rng.choice(["swap", "was", "det"])
    if kind == "was" and " was " in f" {sentence} ":
        return sentence.replace(" was ", " were ", 1)
    if kind == "det" and " the " in sentence:
        return sentence.replace(" the ", " a the ", 1)
    i = rng.randrange(1, max(2, len(ws) - 1))
    ws[i - 1], ws[i] = ws[i], ws[i - 1]
    return " ".join(ws) + "."
