"""Mini judge: rates how coherent a continuation transcript is with its prompt, 1-5.

It knows what the story generator knows (models/mini/world.py): which topic each content word
belongs to, each name's pronoun, which effect follows which cause, and the word pairs that fluent
stories use. Scoring, on the LLM judges' scale (1 = unrelated or unintelligible ... 5 = a likely,
relevant continuation):

    1  fewer than 3 words, or mostly not words of the world
    +2 on topic (>= 80% of its content words belong to the prompt's topic; +1 if >= 50%;
       +1 if it has no content words at all, e.g. "she smiled and went home")
    +1 the character stays the same (no pronoun of the other gender, no other name)
    +1 fluent (>= 70% of its word pairs occur in the world's coherent stories)
    -1 a cause followed by the effect of another cause ("the sun was hot, so she lit a torch")
    an off-topic continuation (< 50% on topic) is capped at 2.

Robust to ASR errors: words are snapped to the world's lexicon (difflib, cutoff 0.75) first, and
every criterion is a share, not an exact match. The rationale lists the evidence.
Bundle dir: `bigrams.txt` (one "w1 w2" per line) and `config.json`.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path

from models.interfaces import Score
from models.mini import world

PROMPT_VERSION = "mini-v1"


class MiniJudge:
    def __init__(self, path: str | Path, name: str = "mini-judge"):
        self.path = Path(path)
        self.name = name
        self.prompt_version = PROMPT_VERSION
        self.config = json.loads((self.path / "config.json").read_text())
        self.bigrams = {tuple(x.split()) for x in (self.path / "bigrams.txt").read_text()
                        .splitlines() if x.strip()}
        self.lexicon = world.lexicon()
        self._lex = set(self.lexicon)
        self._cache: dict[str, str | None] = {}

    def _snap(self, w: str) -> str | None:
        if w in self._lex:
            return w
        if w not in self._cache:
            m = difflib.get_close_matches(w, self.lexicon, n=1, cutoff=0.75)
            self._cache[w] = m[0] if m else None
        return self._cache[w]

    def _context(self, prompt_text: str) -> tuple[str | None, str | None, str | None]:
        """(the prompt's character name, its gender, the prompt's topic)."""
        pw = [s for s in (self._snap(w) for w in world.words(prompt_text)) if s]
        name = next((w for w in pw if w in world.NAMES), None)
        ptopics = [world.WORD_TOPIC[w] for w in pw if w in world.WORD_TOPIC]
        topic = max(sorted(set(ptopics)), key=ptopics.count) if ptopics else None
        return name, world.NAMES.get(name or "", None), topic

    def _fault(self, w: str | None, name: str | None, gender: str | None,
               topic: str | None) -> str | None:
        """What this judge holds against one (snapped) continuation word, if anything."""
        if w is None:
            return None
        if gender and (w in world.PRON["m" if gender == "f" else "f"]
                       or (w == "him" and gender == "f")):
            return "wrong_pronoun"
        if w in world.NAMES and w != name:
            return "other_name"
        if w in world.WORD_TOPIC and world.WORD_TOPIC[w] != topic:
            return "off_topic"
        return None

    def faults(self, prompt_text: str, continuation_text: str) -> list[tuple[str, str | None]]:
        """Each word of the continuation (as transcribed) with the fault it counts as for this
        judge ("off_topic", "wrong_pronoun", "other_name") or None: what Listen marks."""
        name, gender, topic = self._context(prompt_text)
        return [(w, self._fault(self._snap(w), name, gender, topic))
                for w in world.words(continuation_text)]

    def analyse(self, prompt_text: str, continuation_text: str) -> dict:
        raw_c = world.words(continuation_text)
        cw = [self._snap(w) for w in raw_c]
        known = [w for w in cw if w]
        name, gender, topic = self._context(prompt_text)
        marks = [self._fault(w, name, gender, topic) for w in known]
        off = marks.count("off_topic")
        on = sum(w in world.WORD_TOPIC for w in known) - off
        wrong_pron = marks.count("wrong_pronoun")
        other_names = sorted({w for w in known if w in world.NAMES and w != name})
        causes = {world.CAUSE_WORDS[w] for w in known if w in world.CAUSE_WORDS}
        effects = {world.EFFECT_WORDS[w] for w in known if w in world.EFFECT_WORDS}
        broken = bool(causes and effects and not (causes & effects))
        pairs = list(zip(known, known[1:], strict=False))
        fluency = sum(p in self.bigrams for p in pairs) / len(pairs) if pairs else 0.0
        return {
            "name": name, "topic": topic, "n_words": len(raw_c), "n_known": len(known),
            "on_topic": on, "off_topic": off, "wrong_pronouns": wrong_pron,
            "other_names": other_names, "broken_cause": broken, "fluency": round(fluency, 3),
        }

    def score(self, prompt_text: str, continuation_text: str) -> Score:
        a = self.analyse(prompt_text, continuation_text)
        why: list[str] = []
        if a["n_words"] < 3 or a["n_known"] < max(3, 0.5 * a["n_words"]):
            value = 1
            why.append(f"only {a['n_known']} of {a['n_words']} words are intelligible")
        else:
            content = a["on_topic"] + a["off_topic"]
            share = a["on_topic"] / content if content else None
            if share is None:
                pts = 1
                why.append("no topic words (neutral)")
            else:
                pts = 2 if share >= 0.8 else 1 if share >= 0.5 else 0
                why.append(f"{a['on_topic']} of {content} topic words fit the prompt's "
                           f"topic ({a['topic'] or 'unknown'})")
            char_ok = a["wrong_pronouns"] == 0 and not a["other_names"]
            why.append("same character" if char_ok else
                       f"character changes ({a['wrong_pronouns']} wrong pronouns, "
                       f"other names: {', '.join(a['other_names']) or 'none'})")
            fluent = a["fluency"] >= 0.7
            why.append(f"{a['fluency']:.0%} of word pairs are fluent")
            value = 1 + pts + int(char_ok) + int(fluent)
            if a["broken_cause"]:
                value -= 1
                why.append("an effect does not follow its cause")
            if share is not None and share < 0.5:
                value = min(value, 2)
                why.append("off topic: at most 2")
            value = max(1, min(5, value))
        rationale = "; ".join(why) + f". Score: {value}"
        return Score(value=float(value), rationale=rationale, raw=json.dumps(a),
                     judge=self.name, prompt_version=self.prompt_version)


def build(out_dir: Path, coherent_texts: list[str]) -> MiniJudge:
    """Save the world's fluent word pairs (from coherent stories) and the judge config."""
    out_dir.mkdir(parents=True, exist_ok=True)
    pairs: set[tuple[str, str]] = set()
    for t in coherent_texts:
        ws = world.words(t)
        pairs.update(zip(ws, ws[1:], strict=False))
    (out_dir / "bigrams.txt").write_text("\n".join(f"{a} {b}" for a, b in sorted(pairs)) + "\n")
    (out_dir / "config.json").write_text(json.dumps(
        {"kind": "mini", "name": "mini-judge", "prompt_version": PROMPT_VERSION,
         "scale": [1, 5], "n_bigrams": len(pairs)}, indent=2))
    return MiniJudge(out_dir)
