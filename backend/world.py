"""The embedded mini world's build (`python -m backend bootstrap`) into `<data_dir>/bundle/`.

Offline, on CPU, from nothing but espeak-ng and the pinned Python packages:

    corpus   short stories with known structure, 30% of training stories incoherent (noise)
    tts      espeak-ng, several voices and speeds, 16 kHz; each distinct (sentence, voice) once
    units    50 Hz log-mel + k-means (faiss, single-threaded: a seed gives the same units)
    vocoder  cluster-centre mel x mean unit duration -> Griffin-Lim
    asr      CTC BiGRU trained on vocoded (and some natural) corpus speech
    unit_lm  small Llama pre-trained on de-duplicated story unit sequences, each sentence
             tokenized at several sub-frame phases (as it would fall in continuous speech)
    judge    the generator's knowledge: topic words, characters, cause-effect, fluent word pairs
    prompts  first sentences of stories (~2.5 s), per split, + prompts.jsonl
    bench    swuggy / sblimp / ssc / tsc item files + wavs (held-out material only)
    measure  ASR WER, judge ranking, benchmark accuracies, judged quality of sampled continuations

Why sentence-level synthesis: stories are sequences of a few thousand distinct sentences, so each
(sentence, voice) is spoken once (and tokenized at a few frame phases) and a story's units are
its sentences' units joined. That makes tens of thousands of training stories nearly free;
the LM, not TTS, gets the time budget.

The bundle is built in a temporary directory next to the target and renamed into place, so a
crash never leaves a half bundle; a complete bundle whose manifest has the same preset and seed
is reused (`--force` rebuilds).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from backend import stats
from backend.files import write_wav
from backend.jobs import JobContext, handler
from backend.progress import Progress

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Preset:
    n_train: int
    n_dev: int
    n_test: int
    voices: tuple[str, ...]
    k: int
    noise: float
    asr_utts: int
    asr_steps: int
    asr_eval: int
    asr_size: tuple[int, int]
    """(conv channels, GRU hidden)."""
    lm_hidden: int
    lm_layers: int
    lm_steps: int
    lm_batch: int
    lm_phases: int
    """Frame phases each training sentence is tokenized at (see the unit_lm stage)."""
    prompts: tuple[int, int, int]
    """Prompt wavs for the loop per split (train, dev, test)."""
    bench_dev: int
    bench_test: int
    cloze_dev: int
    cloze_test: int
    judge_pairs: int
    sample_prompts: int


PRESETS: dict[str, Preset] = {
    "full": Preset(
        n_train=16000, n_dev=600, n_test=300, voices=("en-us", "en-us+f3", "en-gb"), k=128,
        noise=0.3, asr_utts=1600, asr_steps=1200, asr_eval=200, asr_size=(192, 160),
        lm_hidden=224, lm_layers=4, lm_steps=720, lm_batch=16, lm_phases=4,
        prompts=(300, 240, 100),
        bench_dev=200, bench_test=200, cloze_dev=100, cloze_test=50, judge_pairs=150,
        sample_prompts=48,
    ),
    "tiny": Preset(
        n_train=600, n_dev=40, n_test=40, voices=("en-us",), k=64, noise=0.3, asr_utts=400,
        asr_steps=400, asr_eval=40, asr_size=(128, 96), lm_hidden=96, lm_layers=2,
        lm_steps=120, lm_batch=16, lm_phases=4,
        prompts=(24, 16, 8), bench_dev=24, bench_test=16, cloze_dev=16, cloze_test=8,
        judge_pairs=40, sample_prompts=8,
    ),
}

# Rough share of build time per stage, for one overall progress fraction.
STAGES = {"corpus": 1, "tts": 8, "tokenizer": 6, "vocoder": 1, "asr": 22, "unit_lm": 45,
          "judge": 1, "files": 4, "measure": 12}


NOT_BUILT_BY = {"__init__.py", "lm_judge.py"}
"""models/mini files the bundle does not depend on: the loaders, and the evaluation judge
(it learns from generated text when it loads, nothing of it is in the bundle)."""


def code_hash() -> str:
    """Hash of the code that defines the bundle and its measured figures (models/mini, this
    file, and the evaluation code and wav reader the benchmark figures are scored with)."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    here = Path(__file__).resolve()
    mini = [p for p in (root / "models" / "mini").glob("*.py") if p.name not in NOT_BUILT_BY]
    for p in sorted([*mini, here, here.parent / "loop" / "evaluate.py",
                     here.parent / "files.py"]):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:12]


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for pkg in ("torch", "transformers", "tokenizers", "numpy", "scipy", "librosa", "soundfile",
                "faiss-cpu", "scikit-learn"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    try:
        out["espeak-ng"] = subprocess.run(["espeak-ng", "--version"], capture_output=True,
                                          text=True).stdout.split("\n")[0].strip()
    except OSError:
        out["espeak-ng"] = None
    return out


def read_manifest(bundle: Path) -> dict | None:
    try:
        return json.loads((Path(bundle) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def is_complete(bundle: Path, preset: str, seed: int) -> bool:
    m = read_manifest(bundle)
    return bool(m and m.get("complete") and m.get("preset") == preset and m.get("seed") == seed
                and m.get("format") == FORMAT_VERSION)


def build_at(target: Path, preset: str = "full", seed: int = 0, progress: Progress | None = None,
             force: bool = False) -> Path:
    """Build a bundle at `target` (reused when complete for preset+seed, unless `force`)."""
    target = Path(target)
    if not force and is_complete(target, preset, seed):
        return target
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}-tmp-{uuid.uuid4().hex[:8]}"
    try:
        _build(tmp, preset, seed, progress or (lambda f, m: None))
        old = None
        if target.exists() or target.is_symlink():
            old = target.parent / f".{target.name}-old-{uuid.uuid4().hex[:8]}"
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            if old.is_symlink() or old.is_file():
                old.unlink()
            else:
                shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def build_bundle(settings, preset: str | None = None, seed: int | None = None,
                 progress: Progress | None = None, force: bool = False) -> Path:
    """Build (or reuse) `settings.bundle_dir` for the preset and seed (defaults from settings)."""
    preset = preset or settings.bootstrap.preset
    seed = settings.bootstrap.seed if seed is None else seed
    return build_at(settings.bundle_dir, preset, seed, progress, force)


def bundle_info(settings) -> dict:
    """The bundle's manifest (or why there is none)."""
    m = read_manifest(settings.bundle_dir)
    if m is None:
        return {"bundle_dir": str(settings.bundle_dir), "complete": False,
                "error": "no bundle: run `python -m backend bootstrap`"}
    return {"bundle_dir": str(settings.bundle_dir), **m}


# --- the build ---------------------------------------------------------------------------------
class _Stages:
    """Times each stage and turns stage-local fractions into one overall progress fraction."""

    def __init__(self, progress: Progress):
        self.progress = progress
        self.times: dict[str, float] = {}
        self.total = sum(STAGES.values())
        self.done = 0.0
        self.name = ""
        self.t0 = 0.0

    def start(self, name: str) -> None:
        self.name, self.t0 = name, time.monotonic()
        self.progress(self.done / self.total, f"{name}...")

    def update(self, frac: float, msg: str = "") -> None:
        f = (self.done + STAGES[self.name] * min(1.0, frac)) / self.total
        self.progress(f, f"{self.name}: {msg}" if msg else self.name)

    def end(self) -> None:
        self.times[self.name] = round(time.monotonic() - self.t0, 1)
        self.done += STAGES[self.name]
        self.progress(self.done / self.total, f"{self.name} done in {self.times[self.name]} s")


def _seed_all(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    torch.use_deterministic_algorithms(True, warn_only=True)


def _dir_bytes(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def _build(out: Path, preset_name: str, seed: int, progress: Progress) -> dict:
    import torch

    from backend.loop import evaluate
    from models.interfaces import dedup
    from models.mini import asr as asr_mod
    from models.mini import audio, benchmarks, world
    from models.mini import judge as judge_mod
    from models.mini import tokenizer as tok_mod
    from models.mini import unit_lm as lm_mod
    from models.mini import vocoder as voc_mod

    P = PRESETS[preset_name]
    _seed_all(seed)
    st = _Stages(progress)
    t_start = time.monotonic()
    out.mkdir(parents=True)
    voices = list(P.voices)

    # corpus ------------------------------------------------------------------------------------
    st.start("corpus")
    stories = world.generate(P.n_train, P.n_dev, P.n_test, seed, P.noise)
    rng = random.Random(f"voices-{seed}")
    story_voice = {s.id: rng.choice(voices) for sp in stories.values() for s in sp}
    keys: dict[tuple[str, str], int] = {}

    def need(text: str, voice: str) -> int:
        return keys.setdefault((text, voice), len(keys))

    for sp in stories.values():
        for s in sp:
            for sent in s.sentences:
                need(sent, story_voice[s.id])
    bench_pairs: dict[str, dict[str, list]] = {}
    for split in ("dev", "test"):
        held = [s for s in stories[split] if s.coherent]
        n_b = P.bench_dev if split == "dev" else P.bench_test
        n_c = P.cloze_dev if split == "dev" else P.cloze_test
        bench_pairs.setdefault("swuggy", {})[split] = benchmarks.swuggy(split, n_b, voices, seed)
        bench_pairs.setdefault("sblimp", {})[split] = benchmarks.sblimp(held, n_b, voices, seed)
        for kind in ("ssc", "tsc"):
            bench_pairs.setdefault(kind, {})[split] = benchmarks.cloze(held, n_c, voices,
                                                                       seed, kind)
    for splits in bench_pairs.values():
        for pairs in splits.values():
            for p in pairs:
                for sent in (*p.good, *p.bad):
                    need(sent, p.voice)
    st.end()

    # tts ---------------------------------------------------------------------------------------
    st.start("tts")
    items = sorted(keys, key=keys.get)
    waves: list[np.ndarray | None] = [None] * len(items)

    def speak(i: int) -> None:
        text, voice = items[i]
        waves[i] = audio.synthesize(text, voice, audio.speed_for(text, voice, seed))

    with ThreadPoolExecutor(max_workers=2) as ex:
        for j, _ in enumerate(ex.map(speak, range(len(items)))):
            if j % 200 == 0:
                st.update(j / len(items), f"{j}/{len(items)} utterances")
    audio_seconds = sum(len(w) for w in waves) / audio.SR
    st.end()

    # tokenizer ---------------------------------------------------------------------------------
    st.start("tokenizer")
    feats = [audio.log_mel(w) for w in waves]
    train_keys = {keys[(sent, story_voice[s.id])] for s in stories["train"] for sent in s.sentences}
    train_idx = sorted(train_keys)
    tok = tok_mod.train(np.concatenate([feats[i] for i in train_idx]), P.k, seed,
                        out / "tokenizer")
    frame_units = [tok_mod.assign((f - tok.mean) / tok.std, tok.centroids) for f in feats]
    units = [dedup(u.tolist()) for u in frame_units]
    st.end()

    # vocoder -----------------------------------------------------------------------------------
    st.start("vocoder")
    voc = voc_mod.train([frame_units[i] for i in train_idx], [feats[i] for i in train_idx], P.k,
                        out / "vocoder")
    st.end()

    # asr ---------------------------------------------------------------------------------------
    st.start("asr")
    rng = random.Random(f"asr-{seed}")
    asr_train = sorted(rng.sample(train_idx, min(P.asr_utts, len(train_idx))))
    heldout = sorted({keys[(sent, story_voice[s.id])] for sp in ("dev", "test")
                      for s in stories[sp] for sent in s.sentences} - set(train_idx))
    asr_eval = sorted(rng.sample(heldout, min(P.asr_eval, len(heldout))))

    def vocoded_feats(idx: list[int]) -> list[np.ndarray]:
        outf = []
        for s in range(0, len(idx), 32):
            for w in voc.decode_batch([units[i] for i in idx[s: s + 32]]):
                outf.append(audio.log_mel(w))
            st.update(0.3 * s / max(1, len(idx)), f"vocoding {s}/{len(idx)}")
        return outf

    # Mostly vocoded speech (what continuations sound like), a quarter natural espeak (prompts).
    natural = set(rng.sample(asr_train, len(asr_train) // 4))
    voc_idx = [i for i in asr_train if i not in natural]
    tr_feats = vocoded_feats(voc_idx) + [feats[i] for i in sorted(natural)]
    tr_texts = [items[i][0] for i in voc_idx] + [items[i][0] for i in sorted(natural)]
    asr = asr_mod.train(tr_feats, tr_texts, out / "asr", world.lexicon(), P.asr_steps, seed,
                        conv=P.asr_size[0], hidden=P.asr_size[1],
                        progress=lambda f: st.update(0.3 + 0.65 * f, "training"))
    ev_feats = [(f - asr.mean) / asr.std for f in vocoded_feats(asr_eval)]
    refs = [items[i][0] for i in asr_eval]
    hyps = asr.transcribe_features([f.astype(np.float32) for f in ev_feats])
    nat_hyps = asr.transcribe([waves[i] for i in asr_eval], audio.SR)
    asr_metrics = {
        "wer_vocoded_heldout": round(asr_mod.wer(refs, hyps), 4),
        "wer_natural_heldout": round(asr_mod.wer(refs, nat_hyps), 4),
        "n_eval": len(asr_eval), "n_train": len(asr_train), "steps": P.asr_steps,
        "examples": [{"ref": r, "hyp": h} for r, h in list(zip(refs, hyps, strict=True))[:3]],
    }
    st.end()

    # unit LM -----------------------------------------------------------------------------------
    st.start("unit_lm")

    # In continuous speech a sentence starts at any offset within a 20 ms frame, and the
    # frame phase changes many unit assignments: an LM that only saw each sentence at phase 0
    # memorised those exact strings (0.32 nats/unit) and met the same story spoken as one
    # recording (benchmarks, sentence 2 on) at 1.18 nats/unit, near chance on sSC/tSC. So each
    # training sentence is tokenized at `lm_phases` sub-frame offsets and a story takes one per
    # sentence at random (measured on the full preset: sSC dev 45 -> 71 %, sWUGGY 69 -> 75 %).
    variants = {i: tok.encode_phases(waves[i], P.lm_phases) for i in train_idx}
    phase_rng = random.Random(f"lm-phase-{seed}")

    def story_units(s) -> list[int]:
        seq: list[int] = []
        for sent in s.sentences:
            seq.extend(phase_rng.choice(variants[keys[(sent, story_voice[s.id])]]))
        return dedup(seq)

    seqs = sorted({tuple(story_units(s)) for s in stories["train"]})  # deduplicated
    seqs_l = [list(s) for s in seqs]
    lm_info = lm_mod.train(
        seqs_l, P.k, out / "unit_lm", P.lm_steps, seed, hidden=P.lm_hidden, layers=P.lm_layers,
        heads=4, batch_size=P.lm_batch,
        progress=lambda f, loss: st.update(f, f"loss {loss:.3f}"),
    )
    lm_info["units_per_second"] = round(
        sum(len(s) for s in seqs_l) / sum(len(waves[keys[(x, story_voice[s.id])]]) / audio.SR
                                           for s in stories["train"] for x in s.sentences), 2)
    st.end()

    # judge -------------------------------------------------------------------------------------
    st.start("judge")
    knowledge = world.generate(3000, 0, 0, seed + 1000, noise_frac=0.0)["train"]
    judge = judge_mod.build(out / "judge", [s.text for s in knowledge])
    st.end()

    # files: prompts and benchmarks -------------------------------------------------------------
    st.start("files")
    prompt_rows = []
    for split, n in zip(("train", "dev", "test"), P.prompts, strict=True):
        seen: set[tuple[str, str]] = set()
        for s in stories[split]:
            key = (s.sentences[0], story_voice[s.id])
            if key in seen or not s.coherent:
                continue
            seen.add(key)
            fname = f"{split}/{s.id}.wav"
            write_wav(out / "prompts" / fname, waves[keys[key]], 16000, "PCM_16")
            prompt_rows.append({
                "file": fname, "split": split, "reference_text": s.sentences[0],
                "story_id": s.id, "topic": s.topic, "character": s.name, "activity": s.activity,
                "voice": key[1], "story_text": s.text, "id": s.id,
                "duration_s": round(len(waves[keys[key]]) / audio.SR, 3),
            })
            if len(seen) >= n:
                break
    (out / "prompts" / "prompts.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in prompt_rows))
    gap = np.zeros(int(0.05 * audio.SR), np.float32)
    bench_units: dict[str, dict[str, list[tuple[list[int], list[int]]]]] = {}
    for name, splits in bench_pairs.items():
        for split, pairs in splits.items():
            d = out / "benchmarks" / name
            lines = ["filename voice frequency word phones id correct" if name == "swuggy"
                     else "filename voice type id correct"]
            meta = []
            pu = []
            for p in pairs:
                pair_units = []
                for correct, sents in ((1, p.good), (0, p.bad)):
                    wav = np.concatenate(
                        [x for s in sents for x in (waves[keys[(s, p.voice)]], gap)][:-1])
                    fname = f"{split}_{p.id}_{correct}"
                    write_wav(d / split / f"{fname}.wav", wav, 16000, "PCM_16")
                    # Scored as written (16-bit PCM), as `evaluation` and every user reads it:
                    # the float wave's units differ enough to move sWUGGY by a point.
                    pair_units.append(tok.encode(*evaluate.read_wave(d / split / f"{fname}.wav")))
                    if name == "swuggy":
                        word = p.word if correct else sents[0]
                        lines.append(f"{fname} {p.voice} {int(correct)} {word} - {p.id} {correct}")
                    else:
                        lines.append(f"{fname} {p.voice} {p.kind} {p.id} {correct}")
                    meta.append({"filename": fname, "id": p.id, "correct": correct,
                                 "text": " ".join(sents), "voice": p.voice})
                pu.append((pair_units[0], pair_units[1]))
            (d / f"{split}.item").write_text("\n".join(lines) + "\n")
            (d / f"{split}.jsonl").write_text("".join(json.dumps(m) + "\n" for m in meta))
            bench_units.setdefault(name, {})[split] = pu
    st.end()

    # measure -----------------------------------------------------------------------------------
    st.start("measure")
    lm = lm_mod.load(out / "unit_lm")
    bench_acc: dict[str, dict] = {}
    for name, splits in bench_units.items():
        for split, pu in splits.items():
            lps = lm_mod.logprobs(lm, [u for pair in pu for u in pair])
            wins = evaluate.pair_outcomes(lps[0::2], lps[1::2])  # ties count half
            bench_acc.setdefault(name, {})[split] = {
                "accuracy": round(float(np.mean(wins)), 4), "n": len(wins),
                "ci95": _bootstrap_ci(np.array(wins, float), seed)}
    st.update(0.3, "judge ranking")
    judge_metrics = _judge_ranking(stories["dev"] + stories["test"], judge, asr, voc, units, keys,
                                   story_voice, P.judge_pairs, seed)
    st.update(0.6, "sampling continuations")
    dev_prompts = [r for r in prompt_rows if r["split"] == "dev"][: P.sample_prompts]
    samples = _sampled_quality(lm, dev_prompts, out, tok, voc, asr, judge, P.k, seed)
    digest = hashlib.sha256()
    digest.update(tok.centroids.tobytes())
    for u in units[:200]:
        digest.update(np.asarray(u, np.int32).tobytes())
    st.end()

    manifest = {
        "format": FORMAT_VERSION, "complete": True, "preset": preset_name, "seed": seed,
        "code_hash": code_hash(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "preset_config": asdict(P), "versions": _versions(),
        "build_seconds": {**st.times, "total": round(time.monotonic() - t_start, 1)},
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "cpu_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "sizes": {
            "stories": {k: len(v) for k, v in stories.items()},
            "noisy_train_stories": Counter(s.noise or "coherent" for s in stories["train"]),
            "utterances": len(items), "audio_hours": round(audio_seconds / 3600, 3),
            "lm_train_sequences": len(seqs_l), "lm_train_units": sum(len(s) for s in seqs_l),
            "prompts": Counter(r["split"] for r in prompt_rows),
        },
        "components": {
            "tokenizer": {"k": P.k, "frame_rate": 50, "units_digest": digest.hexdigest()[:16]},
            "unit_lm": lm_info, "asr": asr_metrics, "judge": judge_metrics,
        },
        "benchmarks": bench_acc,
        "sampled_continuations": samples,
    }
    manifest["bars"] = _bars(manifest)
    manifest["sizes"]["bundle_mib"] = round(_dir_bytes(out) / 2**20, 1)
    manifest["sizes"]["per_dir_mib"] = {p.name: round(_dir_bytes(p) / 2**20, 2)
                                        for p in sorted(out.iterdir()) if p.is_dir()}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, default=_json_default))
    return manifest


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(type(o))


def _bootstrap_ci(x: np.ndarray, seed: int) -> list[float]:
    """The manifest's 95% interval of a mean (1000 resamples, rounded)."""
    if len(x) == 0:
        return [float("nan"), float("nan")]
    est = stats.mean_bootstrap(x, resamples=1000, seed=seed)
    return [round(est.low, 4), round(est.high, 4)]


def _judge_ranking(held, judge, asr, voc, units, keys, story_voice, n, seed) -> dict:
    """Does the judge rank a story's true continuation above another-topic story's one?
    On reference text, and through the audio path (true units -> vocoder -> ASR)."""
    rng = random.Random(f"judge-{seed}")
    held = [s for s in held if s.coherent and len(s.sentences) >= 3]
    pairs = []
    for i in range(min(n, len(held))):
        s = held[i]
        o = rng.choice([x for x in held if x.topic != s.topic])
        pairs.append((s, o))

    def cont_units(s) -> list[int]:
        seq: list[int] = []
        for sent in s.sentences[1:]:
            seq.extend(units[keys[(sent, story_voice[s.id])]])
        return seq

    waves = []
    for b in range(0, len(pairs), 8):  # 16 long waves per Griffin-Lim batch bounds memory
        chunk = pairs[b: b + 8]
        waves += voc.decode_batch([cont_units(x) for pair in chunk for x in pair])
    texts = asr.transcribe(waves, voc.sample_rate)
    res = {"text": [], "asr": []}
    true_scores = []
    for i, (s, o) in enumerate(pairs):
        p = s.sentences[0]
        t_true = judge.score(p, " ".join(s.sentences[1:])).value
        t_bad = judge.score(p, " ".join(o.sentences[1:])).value
        a_true = judge.score(p, texts[2 * i]).value
        a_bad = judge.score(p, texts[2 * i + 1]).value
        res["text"].append(t_true > t_bad)
        res["asr"].append(a_true > a_bad)
        true_scores.append(a_true)
    return {
        "n_pairs": len(pairs),
        "rank_true_over_shuffled_text": round(float(np.mean(res["text"])), 4),
        "rank_true_over_shuffled_asr": round(float(np.mean(res["asr"])), 4),
        "ci95_asr": _bootstrap_ci(np.array(res["asr"], float), seed),
        "mean_true_score_asr": round(float(np.mean(true_scores)), 3),
    }


def _sampled_quality(lm, prompts, out, tok, voc, asr, judge, k, seed) -> dict:
    """Judge scores of continuations sampled as the loop does (T=0.8, top-k 25, 150 units)."""
    import soundfile as sf

    from models.interfaces import SamplingParams
    from models.mini.asr import wer as asr_wer

    sp = SamplingParams()
    prompt_units = []
    prompt_waves = []
    for r in prompts:
        w, sr = sf.read(out / "prompts" / r["file"], dtype="float32")
        prompt_waves.append(w)
        prompt_units.append(tok.encode(w, sr))
    prompt_texts = asr.transcribe(prompt_waves, 16000)
    conts = []
    for b in range(0, len(prompt_units), 8):
        conts += lm_mod_sample(lm, prompt_units[b: b + 8], sp, seed + b, k)
    flat = [c for cs in conts for c in cs]
    waves = []
    for b in range(0, len(flat), 16):
        waves += voc.decode_batch(flat[b: b + 16])
    texts = asr.transcribe(waves, voc.sample_rate)
    scores = []
    for i, t in enumerate(texts):
        scores.append(judge.score(prompt_texts[i // sp.n], t).value)
    vals = np.array(scores, float)
    hist = {str(v): int((vals == v).sum()) for v in (1.0, 2.0, 3.0, 4.0, 5.0)}
    per_prompt = vals.reshape(len(prompts), sp.n) if len(prompts) else vals.reshape(0, 1)
    return {
        "n_prompts": len(prompts), "n_per_prompt": sp.n, "temperature": sp.temperature,
        "top_k": sp.top_k, "max_new_units": sp.max_new_units,
        "mean_score": round(float(vals.mean()), 3) if len(vals) else None,
        "histogram": hist,
        "prompts_with_pair_3_vs_1": int(((per_prompt >= 3).any(1) & (per_prompt <= 1).any(1))
                                        .sum()),
        "prompts_with_score_spread": int((per_prompt.max(1) > per_prompt.min(1)).sum()),
        "prompt_asr_wer": round(asr_wer([r["reference_text"] for r in prompts], prompt_texts), 4),
        "examples": [{"prompt": prompt_texts[i // sp.n], "continuation": texts[i],
                      "score": scores[i]} for i in range(0, min(len(texts), 15), 3)],
    }


def lm_mod_sample(lm, prompts, sp, seed, k):
    from models.mini import unit_lm as lm_mod

    return lm_mod.sample(lm, prompts, sp.n, sp.max_new_units, sp.temperature, sp.top_k, seed, k)


def _bars(m: dict) -> dict:
    """The issue's acceptance bars (full preset), as measured."""
    b = m["benchmarks"]
    c = m["components"]
    hist = m["sampled_continuations"]["histogram"]
    return {
        "build_minutes_le_15": m["build_seconds"]["total"] / 60 <= 15,
        "peak_rss_le_4gib": m["peak_rss_mib"] <= 4096,
        "asr_wer_le_20pct": c["asr"]["wer_vocoded_heldout"] <= 0.20,
        "judge_rank_ge_90pct": c["judge"]["rank_true_over_shuffled_asr"] >= 0.90,
        "swuggy_ge_75pct": b["swuggy"]["dev"]["accuracy"] >= 0.75,
        "all_benchmarks_above_chance": all(v["dev"]["accuracy"] > 0.5 for v in b.values()),
        "judge_scores_spread": sum(1 for v in hist.values() if v > 0) >= 3,
    }


# --- job + CLI ---------------------------------------------------------------------------------
@handler("bootstrap", resumable=True, exclusive=True)
def _bootstrap_job(ctx: JobContext) -> dict:
    """Build the bundle as a job (params: preset, seed, force); reloads models afterwards."""
    s = ctx.runtime.settings
    path = build_bundle(s, ctx.params.get("preset"), ctx.params.get("seed"),
                        progress=ctx.progress, force=bool(ctx.params.get("force")))
    ctx.runtime.forget_components()
    m = read_manifest(path) or {}
    return {"bundle": str(path), "preset": m.get("preset"), "bars": m.get("bars")}
