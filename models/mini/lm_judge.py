"""Mini LM judge: a second, held-out judge for the mini world, learned from text, not from tables.

MiniJudge (models/mini/judge.py) scores with the story generator's own tables, and training
(DPO, GRPO) optimises its score, so its score on held-out samples can be gamed: a content-free
"she was happy and went home" earns 4 of 5 from it. This judge gets to its verdict by another
route: a small statistical word model learned from generated text. Training never sees it.

Knowledge. At load time it generates its own corpus with the world's story generator
(`world.generate`, seed CORPUS_SEED, N_CORPUS coherent stories covering every (name, activity)
combination) and counts, on `world.words` tokens only:

    unigram  P_uni(w), add-one smoothed over the corpus vocabulary: the floor
    bigram   P_bg(w | v) on a story's word stream (sentence boundaries are not visible in ASR
             transcripts), Witten-Bell smoothed towards P_uni. An extra context "<b>", the first
             word of a continuation without a prompt, is the mean of the bigram rows of the words
             that end a sentence (weighted by how often they do): after the end of *some*
             sentence. (Counting "<b> -> first word" directly gave a context with so many
             observations that its smoothing mass was ~100x smaller than a real word's, and any
             odd first word got a large spurious PMI.)
    cache    PMI(u, w) = log P_co(w | u) - log P_uni(w), P_co(w | u) = how often w is one of the
             *other* tokens of a story that contains u (same-story co-occurrence), Dirichlet
             smoothed towards P_uni (CO_MU tokens). "the" predicts nothing (PMI ~ 0 for every w),
             "garden" predicts "spade", "anna" predicts "she" and vetoes "he"

It reads none of the world's tables (topic words, names, pronouns, cause/effect): that "anna" goes
with "she" and "spade" with "garden" is only what the counts say. World code used: the generator,
`world.words` (tokenisation) and `world.lexicon()` (snapping ASR near-misses, difflib cutoff 0.75,
as the ASR and MiniJudge do).

The model. A word w after the previous word v, with history H (the distinct known words of the
prompt and of the continuation so far), has

    log P(w | v, H) = lb log P_bg(w | v) + lc log P_cache(w | H) + lu log P_uni(w) - log Z(v, H)
    log P_cache(w | H) = sum_{u in H} PMI(u, w) / sqrt(|H|)        (+ log P_uni(w), folded in lu)

a log-linear (geometric) interpolation of the three, normalised over the vocabulary; the cache
is a naive-Bayes product of the history words' co-occurrence distributions. Why not a linear
mixture (the first version): the bigram's gender- and topic-blind mass (P_bg(he | seeds) ~ 0.35)
swamps the cache, and "He saw a small rose in the garden." after Anna's opening scored 5 like the
"She" sentence; in the product the cache can veto. Why sqrt(|H|): a plain sum overcounts
correlated evidence (garden, plant, seeds all say "garden") and a mean dilutes the one decisive
word (the name) in a long history; sqrt fits held-out text almost as well as the sum (-0.720
vs -0.713 nats/word at 3000 stories, the mean -0.743) and separates the items below better.
(lb, lc, lu) maximise the log-likelihood of FIT_SEED stories (Newton's method; the
log-likelihood of a log-linear interpolation is concave): ~(0.94, 0.96, 0.19). A word that is
not in the vocabulary after snapping gets UNK_LOGP (e^-11.5, below any known word's probability),
with and without the prompt alike, so unintelligible ASR output has a very low fluency.

The score. For a continuation c of n words given the prompt p:

    F   = mean_i log P(c_i | c_<i, p)                      fluency, nats per word
    PMI = sum_i log P(c_i | c_<i, p) - log P(c_i | c_<i)   = log P(c | p) - log P(c | no prompt):
                                                           what the prompt tells about c (no
                                                           prompt: "<b>" context, empty history)
    R   = PMI / sqrt(n)                                    relevance
    z   = F + g * R

A generic ending is fluent but fits every prompt (PMI ~ +1 nat, its pronoun); a true next
sentence is fluent and predicted by the prompt (PMI ~ +3..5 nats); another story's sentence
contradicts it (PMI -5..-30); word salad and unintelligible transcripts have a very low F. PMI
is a total: it saturates at what the prompt says (its character, place, activity), so a true
continuation keeps it as it goes on, and repeating content adds little (the no-prompt run has
read it too by then); the mean per word fell with length (a 4-sentence true continuation looked
generic), sqrt(n) is between the two (R is the t-like statistic of n per-word log-ratios).
Fewer than 3 words is 1.

Calibration (at load time, on N_CALIB stories of CALIB_SEED, never counted). Items:
    true       a story's next 1-4 sentences (not only endings) given its first 1-2 sentences
    other      the same continuation given the opening of a random story of another topic
    scrambled  the true continuation's words in random order, given its prompt
    generic    one or two generic sentences given an opening of the character they followed
               in the corpus; generic = follows >= GENERIC_SHARE of the corpus's distinct
               openings (found from the counts: it is the world's endings). Two, because a
               policy rewarded for ending repeats endings; calibrated on one only, "he was
               happy and went home he smiled and went home" got 4 in 10% of openings
g is the value in GAMMAS that best separates them (largest smallest AUC of true > generic,
generic > other, generic > scrambled), then with low = other + scrambled:

    5 | 4  at the 25th percentile of true                   (3/4 of true continuations get 5)
    4 | 3  at the 99th percentile of generic                (99% of generic endings get <= 3:
                                                             this judge is there to catch them)
    3 | 2  midway between the 90th pct of low and the 10th pct of generic
    2 | 1  at the median of low                             (unrelated: half 1, half 2)

At the default seeds (`self.calibration`; 20 names, N_CORPUS 12 000, N_CALIB 600): g = 0.75,
thresholds -6.69 / -2.81 / -0.44 / -0.11; AUC true > generic 0.999, generic > low 1.0, true >
other 1.0; levels of the 600 items each: true {3: 10, 4: 140, 5: 450}, generic {3: 594, 4: 6},
other {1: 152, 2: 448}, scrambled {1: 448, 2: 149, 3: 3}. (With 20 names, 6000 corpus stories
left the co-occurrence counts too thin: held out, 4.8% of content-free endings got 4.)
Held-out figures (other seeds) are in tests/mini/test_lm_judge.py. Learning + calibration take
~3 s of CPU. `build(out_dir)` (or `judge.save(out_dir)`) saves the learned model and its
calibration (`model.npz`, `config.json`) so that a bundle can load it without regenerating.

Known limits (left as they are, see the tests for rates):
  * The cache is a bag of words, so it also shifts function words: "in" is rarer in forest
    stories ("under the pines"), and "He saw a big acorn in the forest." pays ~1.4 nats for it;
    ~3% of true second sentences land at 3, ~0.3% of content-free endings at 4.
  * Sentence order is learned: "At the garden, the sun was hot, so she sipped some lemonade."
    straight after the opening is 3 (in the data the "saw" sentence always comes first), where
    MiniJudge gives 5.
  * A wrong pronoun costs 1-1.5 nats wherever it is; late in a long on-topic continuation that
    may not be enough to leave 5 (z always drops).
  * Copying the prompt back scores 3 (its words recur, but "plant", "seeds" never recur in a
    story and pay for it).
"""

from __future__ import annotations

import difflib
import json
import math
import random
from collections import Counter
from pathlib import Path

import numpy as np

from models.interfaces import Score
from models.mini import world

PROMPT_VERSION = "mini-lm-v1"
NAME = "mini-lm-judge"
CORPUS_SEED = 4242
FIT_SEED = 7373
CALIB_SEED = 9191
N_CORPUS = 12000
N_FIT = 150
N_CALIB = 600
UNK_LOGP = -11.5
CO_MU = 50.0
GAMMAS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0)
GENERIC_SHARE = 0.2
GENERIC_Q = 0.99  # the 4 | 3 level at this quantile of the generic items


def corpus(seed: int, n: int) -> list[world.Story]:
    """About n coherent stories of the world's generator, all (name, activity) combinations
    (the dev/test splits hold the combinations the train split leaves out)."""
    k = n // 8
    parts = world.generate(n - 2 * k, k, k, seed, noise_frac=0.0)
    return [s for split in ("train", "dev", "test") for s in parts[split] if s.coherent]


def generic_sentences(stories: list[world.Story]) -> list[str]:
    """Sentences that follow >= GENERIC_SHARE of the distinct story openings."""
    follows: dict[str, set[str]] = {}
    for s in stories:
        for x in s.sentences[1:]:
            follows.setdefault(x, set()).add(s.sentences[0])
    n_open = len({s.sentences[0] for s in stories})
    return sorted(x for x, o in follows.items() if len(o) >= GENERIC_SHARE * n_open)


class WordLM:
    """The counted word model (see the module docstring); words are vocabulary indices, an index
    >= len(vocab) is an unknown word."""

    def __init__(self, vocab: list[str], uni: np.ndarray, bigram: np.ndarray, pmi: np.ndarray,
                 lambdas: np.ndarray):
        self.vocab = list(vocab)
        self.index = {w: i for i, w in enumerate(self.vocab)}
        self.uni = uni            # (V,) log P_uni
        self.bigram = bigram      # (V + 2, V) log P_bg(w | v); row V = "<b>", row V + 1 = unknown
        self.pmi = pmi            # (V, V) PMI(u, w), row u
        self.lambdas = np.asarray(lambdas, dtype=float)  # lb, lc, lu
        self.boundary = len(self.vocab)
        self.unknown = len(self.vocab) + 1

    @classmethod
    def train(cls, stories: list[list[list[str]]]) -> WordLM:
        """`stories`: each a list of sentences, each a list of words."""
        vocab = sorted({w for s in stories for sent in s for w in sent})
        idx = {w: i for i, w in enumerate(vocab)}
        v = len(vocab)
        big_c = np.zeros((v + 2, v))
        counts = np.zeros((len(stories), v))
        ends = np.zeros(v)  # last words of sentences that another sentence follows
        for d, s in enumerate(stories):
            flat = [idx[w] for sent in s for w in sent]
            np.add.at(counts[d], flat, 1)
            np.add.at(big_c, (flat[:-1], flat[1:]), 1)
            for sent in s[:-1]:
                ends[idx[sent[-1]]] += 1
        uni_c = counts.sum(0)
        uni = np.log((uni_c + 1) / (uni_c.sum() + v))
        p_uni = np.exp(uni)
        # Witten-Bell: (n(c, w) + T(c) P_uni(w)) / (n(c) + T(c)); a context never followed by
        # anything ("home", the unknown word) gets P_uni
        n_c = big_c.sum(1, keepdims=True)
        t_c = (big_c > 0).sum(1, keepdims=True)
        p_bg = (big_c + (t_c + (n_c == 0)) * p_uni) / np.maximum(n_c + t_c, 1)
        p_bg[v] = ends @ p_bg[:v] / ends.sum()  # "<b>": after the end of some sentence
        bigram = np.log(p_bg)
        # co-occurrence of distinct positions of a story: C[u, w] = sum_{d has u} n_d(w) - [u = w]
        present = (counts > 0).astype(float)
        co_c = present.T @ counts - np.diag(present.sum(0))
        co_p = (co_c + CO_MU * p_uni) / (co_c.sum(1, keepdims=True) + CO_MU)
        pmi = np.log(co_p) - uni[None, :]
        return cls(vocab, uni, bigram, pmi, np.array([1.0, 0.5, 0.0]))

    def components(self, context: list[int], words: list[int], prompt: bool = True,
                   ) -> tuple[np.ndarray, np.ndarray]:
        """For each position of `words`: the bigram and the cache log-prob vectors, (n, V) each,
        given `context` (the prompt's word ids; ignored unless `prompt`) and the words before."""
        v = len(self.vocab)
        hist: set[int] = set()
        base = np.zeros(v)
        prev = self.boundary
        if prompt:
            for u in context:
                if u < v and u not in hist:
                    hist.add(u)
                    base += self.pmi[u]
            if context:
                prev = context[-1] if context[-1] < v else self.unknown
        prevs, sizes, new = [], [], []
        for w in words:
            prevs.append(prev)
            sizes.append(len(hist))
            fresh = w < v and w not in hist
            new.append(w if fresh else -1)
            if fresh:
                hist.add(w)
            prev = w if w < v else self.unknown
        new_a = np.array(new)
        adds = np.where(new_a[:, None] >= 0, self.pmi[np.maximum(new_a, 0)], 0.0)
        before = base + np.cumsum(adds, 0) - adds  # PMI sums over each position's history
        cache = before / np.sqrt(np.maximum(sizes, 1))[:, None]
        return self.bigram[prevs], cache

    def logprobs(self, context: list[int], words: list[int], prompt: bool = True) -> np.ndarray:
        """log P of each of `words` given `context` (the prompt) and the words before it;
        `prompt=False` scores them as if nothing came before."""
        if not words:
            return np.zeros(0)
        bg, cache = self.components(context, words, prompt)
        lb, lc, lu = self.lambdas
        logits = lb * bg + lc * cache + lu * self.uni
        m = logits.max(1)
        lse = m + np.log(np.exp(logits - m[:, None]).sum(1))
        w = np.asarray(words)
        known = w < len(self.vocab)
        got = logits[np.arange(len(w)), np.where(known, w, 0)] - lse
        return np.where(known, got, UNK_LOGP)

    def fit_lambdas(self, stories: list[list[list[int]]], iters: int = 20) -> dict:
        """Maximum-likelihood (lb, lc, lu) on held-out stories' words after their first
        sentence, by Newton's method."""
        fs, obs = [], []
        for s in stories:
            rest = [w for sent in s[1:] for w in sent]
            bg, cache = self.components(s[0], rest, True)
            fs.append(np.stack([bg, cache, np.broadcast_to(self.uni, bg.shape)], 1))
            obs += rest
        f = np.concatenate(fs)                   # (P, 3, V)
        fo = f[np.arange(len(obs)), :, obs]      # (P, 3): the observed words' features
        lam = self.lambdas.copy()
        ll = -math.inf
        for _ in range(iters):
            logits = np.einsum("k,pkv->pv", lam, f)
            m = logits.max(1, keepdims=True)
            p = np.exp(logits - m)
            z = p.sum(1, keepdims=True)
            p /= z
            ll = float((fo @ lam - (m + np.log(z))[:, 0]).mean())
            ef = np.einsum("pv,pkv->pk", p, f)
            grad = (fo - ef).mean(0)
            hess = ef.T @ ef / len(obs) - np.einsum("pkv,plv->kl", f * p[:, None, :], f) / len(obs)
            step = np.linalg.solve(hess - 1e-6 * np.eye(3), grad)
            lam = lam - step
            if float(np.abs(step).max()) < 1e-5:
                break
        self.lambdas = lam
        return {"lambdas": [round(float(x), 4) for x in lam],
                "heldout_logp_per_word": round(ll, 4), "n_positions": len(obs)}


def _auc(hi, lo) -> float:
    """P(a draw from `hi` > a draw from `lo`), ties count half."""
    a, b = np.asarray(hi)[:, None], np.asarray(lo)[None, :]
    return float((a > b).mean() + 0.5 * (a == b).mean())


class MiniLMJudge:
    """The Judge protocol (models.interfaces.Judge). `path`: a directory saved by `build`; None
    or "" = learn and calibrate now, from the world's generator (deterministic, ~3 s)."""

    def __init__(self, path: str | Path | None = None, name: str = NAME):
        self.name = name
        self.prompt_version = PROMPT_VERSION
        self.path = Path(path) if path else None
        self.lexicon = world.lexicon()
        self._lex = set(self.lexicon)
        self._snapped: dict[str, str | None] = {}
        if self.path is not None:
            self._load(self.path)
        else:
            stories = corpus(CORPUS_SEED, N_CORPUS)
            self.lm = WordLM.train([[world.words(x) for x in s.sentences] for s in stories])
            self.fit = self.lm.fit_lambdas([[self._ids(x)[0] for x in s.sentences]
                                            for s in corpus(FIT_SEED, N_FIT)])
            self.fit["n_corpus"] = len(stories)
            self.calibration = self._calibrate(generic_sentences(stories))

    def _load(self, path: Path) -> None:
        from models.device import ModelLoadError

        cfg_file, npz = path / "config.json", path / "model.npz"
        if not cfg_file.is_file() or not npz.is_file():
            raise ModelLoadError(f"mini LM judge directory {path} has no config.json and "
                                 "model.npz (save one with models.mini.lm_judge.build, or leave "
                                 "the judge's path empty to learn it at load time)")
        cfg = json.loads(cfg_file.read_text())
        with np.load(npz) as z:
            self.lm = WordLM(cfg["vocab"], z["uni"], z["bigram"], z["pmi"], z["lambdas"])
        self.fit, self.calibration = cfg["fit"], cfg["calibration"]

    def save(self, out_dir: str | Path) -> MiniLMJudge:
        """Write the learned model and its calibration to `out_dir`; the judge loaded from it."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        lm = self.lm
        np.savez(out_dir / "model.npz", uni=lm.uni, bigram=lm.bigram, pmi=lm.pmi,
                 lambdas=lm.lambdas)
        (out_dir / "config.json").write_text(json.dumps(
            {"kind": "mini-lm", "name": NAME, "prompt_version": PROMPT_VERSION, "scale": [1, 5],
             "corpus_seed": CORPUS_SEED, "fit_seed": FIT_SEED, "calib_seed": CALIB_SEED,
             "vocab": lm.vocab, "fit": self.fit, "calibration": self.calibration}, indent=2))
        return MiniLMJudge(out_dir, name=self.name)

    # --- calibration ---------------------------------------------------------------------------
    def _calibrate(self, generic: list[str]) -> dict:
        stories = corpus(CALIB_SEED, N_CALIB)
        rng = random.Random(f"mini-lm-judge-calibration-{CALIB_SEED}")
        by_name: dict[str, list[str]] = {}  # generic sentences seen after a character's opening
        for s in stories:
            first = world.words(s.sentences[0])[0]
            by_name[first] = sorted(set(by_name.get(first, [])) |
                                    {x for x in s.sentences[1:] if x in generic})
        by_topic: dict[str, list[world.Story]] = {}
        for s in stories:
            by_topic.setdefault(s.topic, []).append(s)
        items: dict[str, list[dict]] = {"true": [], "other": [], "scrambled": [], "generic": []}
        for s in stories:
            k = rng.choice([1, 1, 2]) if len(s.sentences) > 3 else 1
            cont = s.sentences[k:k + rng.choice([1, 1, 2, 3, 4])]
            if all(x in generic for x in cont):
                continue
            prompt, text = " ".join(s.sentences[:k]), " ".join(cont)
            o = rng.choice([x for t in sorted(by_topic) if t != s.topic for x in by_topic[t]])
            salad = world.words(text)
            rng.shuffle(salad)
            items["true"].append(self.analyse(prompt, text))
            items["other"].append(self.analyse(o.sentences[0], text))
            items["scrambled"].append(self.analyse(prompt, " ".join(salad)))
            if gen := by_name.get(world.words(s.sentences[0])[0]):  # one or two endings:
                # a policy that learned to end repeats them ("he smiled and went home he ...")
                ending = " ".join(rng.choice(gen) for _ in range(rng.choice([1, 2])))
                items["generic"].append(self.analyse(s.sentences[0], ending))

        def zs(g: float, key: str) -> np.ndarray:
            return np.array([a["fluency"] + g * a["relevance"] for a in items[key]])

        def worst_auc(g: float) -> float:
            zg = zs(g, "generic")
            return min(_auc(zs(g, "true"), zg), _auc(zg, zs(g, "other")),
                       _auc(zg, zs(g, "scrambled")))

        g = max(GAMMAS, key=lambda x: (worst_auc(x), -x))
        zt, zg = zs(g, "true"), zs(g, "generic")
        low = np.concatenate([zs(g, "other"), zs(g, "scrambled")])
        t = [float(np.median(low)),
             0.5 * (float(np.quantile(low, 0.9)) + float(np.quantile(zg, 0.1))),
             float(np.quantile(zg, GENERIC_Q)),
             float(np.quantile(zt, 0.25))]
        for i in range(1, 4):  # increasing, even on a degenerate calibration
            t[i] = max(t[i], t[i - 1] + 0.05)
        self.calibration = {"gamma": g, "thresholds": [round(x, 4) for x in t]}
        self.calibration.update({
            "generic": generic, "n": {k: len(v) for k, v in items.items()},
            "auc": {"true>generic": round(_auc(zt, zg), 4), "generic>low": round(_auc(zg, low), 4),
                    "true>other": round(_auc(zt, zs(g, "other")), 4)},
            "median_z": {k: round(float(np.median(zs(g, k))), 3) for k in items},
            "hist": {k: {str(lv): c for lv, c in sorted(Counter(self._level(z)
                                                                for z in zs(g, k)).items())}
                     for k in items},
        })
        return self.calibration

    def _level(self, z: float) -> int:
        return 1 + sum(bool(z >= t) for t in self.calibration["thresholds"])

    # --- judging -------------------------------------------------------------------------------
    def _snap(self, w: str) -> str | None:
        if w in self._lex:
            return w
        if w not in self._snapped:
            m = difflib.get_close_matches(w, self.lexicon, n=1, cutoff=0.75)
            self._snapped[w] = m[0] if m else None
        return self._snapped[w]

    def _ids(self, text: str) -> tuple[list[int], list[str]]:
        """Word ids (unknown: lm.unknown) and the words as read (unknown ones as "?word")."""
        ids, shown = [], []
        for w in world.words(text):
            s = self._snap(w)
            i = self.lm.index.get(s, self.lm.unknown) if s else self.lm.unknown
            ids.append(i)
            shown.append(s if i != self.lm.unknown else f"?{w}")
        return ids, shown

    def analyse(self, prompt_text: str, continuation_text: str) -> dict:
        """The evidence: each word's log-prob given the prompt and its PMI with the prompt
        (`words`: [word, logp, pmi]), and their means (`fluency`, `pmi`)."""
        ctx, _ = self._ids(prompt_text)
        ids, shown = self._ids(continuation_text)
        cond = self.lm.logprobs(ctx, ids, prompt=True)
        prior = self.lm.logprobs(ctx, ids, prompt=False)
        n = len(ids)
        return {
            "n_words": n, "n_known": sum(i != self.lm.unknown for i in ids),
            "fluency": round(float(cond.mean()), 4) if n else UNK_LOGP,
            "pmi": round(float((cond - prior).sum()), 4),
            "relevance": round(float((cond - prior).sum()) / math.sqrt(max(n, 1)), 4),
            "words": [[w, round(float(c), 3), round(float(c - p), 3)]
                      for w, c, p in zip(shown, cond, prior, strict=True)],
        }

    def score(self, prompt_text: str, continuation_text: str) -> Score:
        a = self.analyse(prompt_text, continuation_text)
        cal = self.calibration
        z = a["fluency"] + cal["gamma"] * a["relevance"]
        a.update(z=round(z, 4), gamma=cal["gamma"], thresholds=cal["thresholds"])
        why: list[str] = []
        if a["n_words"] < 3:
            value = 1
            why.append(f"only {a['n_words']} words")
        else:
            value = self._level(z)
            if unk := a["n_words"] - a["n_known"]:
                why.append(f"{unk} of {a['n_words']} words unknown")
            why.append(f"fluency {a['fluency']:+.2f} nats/word")
            why.append(f"PMI with the prompt {a['pmi']:+.2f} nats (the prompt makes it "
                       f"{math.exp(a['pmi']):.3g}x as likely)")
            known = sorted((x for x in a["words"] if not x[0].startswith("?")),
                           key=lambda x: -x[2])
            if up := [f"{w} ({d:+.1f})" for w, _, d in known[:3] if d > 0.5]:
                why.append("predicted by the prompt: " + ", ".join(up))
            if down := [f"{w} ({d:+.1f})" for w, _, d in known[::-1][:3] if d < -0.5]:
                why.append("at odds with the prompt: " + ", ".join(down))
            why.append(f"z = F + {cal['gamma']:g} PMI/sqrt(n) = {z:.2f} (levels at "
                       + " / ".join(f"{t:.2f}" for t in cal["thresholds"]) + ")")
        rationale = "; ".join(why) + f". Score: {value}"
        return Score(value=float(value), rationale=rationale, raw=json.dumps(a),
                     judge=self.name, prompt_version=self.prompt_version)


def build(out_dir: str | Path) -> MiniLMJudge:
    """Learn and calibrate (as a path-less judge does), save both to `out_dir` and load them."""
    return MiniLMJudge().save(out_dir)
