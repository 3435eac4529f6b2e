"""The embedded mini world's build (`python -m backend bootstrap`) into `<data_dir>/bundle/`.

Offline, on CPU, from nothing but espeak-ng and the pinned Python packages:

    corpus   short stories with known structure, 30% of training stories incoherent (noise)
    tts      espeak-ng, several voices and speeds, 16 kHz; each distinct (sentence, voice) once
    units    50 Hz log-mel + k-means, both in float64: a seed gives the same units on any CPU
    vocoder  cluster-centre mel x mean unit duration -> Griffin-Lim
    asr      CTC BiGRU trained on vocoded (and some natural) corpus speech
    unit_lm  small Llama pre-trained on de-duplicated story unit sequences, each sentence
             tokenized at several sub-frame phases (as it would fall in continuous speech),
             and on every word of the world spoken alone (never a benchmark recording)
    judge    the generator's knowledge: topic words, characters, cause-effect, fluent word pairs
    prompts  first sentences of stories (~2.5 s), per split, + prompts.jsonl
    bench    swuggy / sblimp / ssc / tsc item files + wavs (held-out material only)
    measure  ASR WER, judge ranking, benchmark accuracies, judged quality of sampled continuations

Why sentence-level synthesis: stories are sequences of a few thousand distinct sentences, so each
(sentence, voice) is spoken once (and tokenized at a few frame phases) and a story's units are
its sentences' units joined. That makes tens of thousands of training stories nearly free;
the LM, not TTS, gets the time budget.

The bundle is built stage by stage in a work directory next to the target (`work_dir`) and
renamed into place when complete, so a crash never leaves a half bundle. Each stage's outputs and
its record (what it was made from) are committed atomically, and the next build skips the stages
whose record still holds: an interrupted `make run` continues where it stopped. A complete
bundle whose manifest has the same preset and seed is reused (`--force` rebuilds from scratch).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import resource
import shutil
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from backend import stats
from backend.files import write_wav
from backend.jobs import JobContext, handler
from backend.progress import Progress, StageClock
from backend.world_env import environment, thread_counts

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

STAGE_SECONDS: dict[str, dict[str, float]] = {
    # build_seconds of a full seed-0 build, code 0539a1070127 (2026-12-02, fresh 2-core VM,
    # idle but for its tts stage, which another build shared: tts kept from the 2026-12-01
    # build, 90 s; 1216 s in all)
    "full": {"corpus": 0.3, "tts": 90.3, "tokenizer": 30.4, "vocoder": 5.1, "asr": 237.4,
             "unit_lm": 780.9, "judge": 0.3, "files": 16.2, "measure": 55.0},
    # build_seconds of the tiny test bundle .cache/test-bundle-tiny-0-cf1934ce2205 (seed 0,
    # 2026-12-01, the least loaded of six tiny builds that day; 102 s in all)
    "tiny": {"corpus": 0.0, "tts": 11.9, "tokenizer": 2.0, "vocoder": 0.5, "asr": 49.5,
             "unit_lm": 21.8, "judge": 0.1, "files": 3.5, "measure": 13.1},
}
"""Measured stage durations, in build order: each stage's weight in the overall progress is its
share of its preset's total, and the ETA of stages not yet started is their duration times this
machine's speed relative to the measuring one (`backend.progress.StageClock`)."""

STAGE_THREADS: dict[str, dict[str, int]] = {
    stage: {"torch": 2, "blas": 1} for stage in STAGE_SECONDS["full"]}
"""Threads per stage, the same on every machine: float reductions split across another number of
threads round differently (measured: numpy's log-mel matmul with 2 OpenBLAS threads instead of
1 gives other features and another units digest on the tiny preset). torch 2 (what the build
used on 2 or more cores before), numpy's BLAS 1 (what `OMP_NUM_THREADS=1` gave). The features and
k-means are computed in float64 besides (models/mini/audio.py, tokenizer.py), which makes them
independent of the thread count and BLAS kernel too; torch's training is not (its kernels
depend on the CPU's instruction set), so its threads stay fixed."""

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
                "scikit-learn"):
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
    """Build a bundle at `target` (reused when complete for preset+seed, unless `force`).

    The build runs in `work_dir(target)` and continues from the stages a stopped build finished
    there (`force` starts afresh); the complete bundle is then renamed into place, so `target`
    is never half built. A file lock keeps two builds out of one work directory."""
    from filelock import FileLock

    target = Path(target)
    if not force and is_complete(target, preset, seed):
        return target
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    target.parent.mkdir(parents=True, exist_ok=True)
    work = work_dir(target)
    with FileLock(f"{work}.lock"):
        if force:
            shutil.rmtree(work, ignore_errors=True)
        m = read_manifest(work)
        if not (is_complete(work, preset, seed) and m and m.get("code_hash") == code_hash()):
            _build(work, preset, seed, progress or (lambda f, m: None))
        shutil.rmtree(work / RECORDS, ignore_errors=True)
        (work / STATUS).unlink(missing_ok=True)
        old = None
        if target.exists() or target.is_symlink():
            old = target.parent / f".{target.name}-old-{uuid.uuid4().hex[:8]}"
            os.replace(target, old)
        os.replace(work, target)
        if old is not None:
            if old.is_symlink() or old.is_file():
                old.unlink()
            else:
                shutil.rmtree(old, ignore_errors=True)
    return target


def build_status(target: Path) -> dict | None:
    """The progress of a build running now towards `target` (in any process: `make run`, a
    bootstrap job), as its last `progress.json` says; None when no build holds the work
    directory's lock (none started, finished, or killed)."""
    from filelock import FileLock, Timeout

    work = work_dir(target)
    try:
        status = json.loads((work / STATUS).read_text())
    except (OSError, ValueError):
        return None
    lock = FileLock(f"{work}.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return status  # a live build holds it
    lock.release()
    return None


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
SCRATCH = "_work"
"""Stage outputs the bundle does not ship (waves, frame units, benchmark units), under the work
directory, so a resumed build has them without redoing their stage; removed before the swap."""
RECORDS = "_stages"
"""One JSON record per finished stage (what it was made from, a digest of what it made)."""
STATUS = "progress.json"
"""The running build's progress in its work directory (stage, fractions, ETAs), for the app."""


STARTED, DONE, REUSED = "started", "done in", "reused (finished earlier)"
"""How a progress message (`<stage>: ...`) says a stage started, ended, or was skipped."""


def work_dir(target: Path) -> Path:
    """Where the bundle at `target` is built stage by stage. It stays when a build stops, so the
    next build continues from its finished stages, and is renamed into place when complete."""
    target = Path(target)
    return target.parent / f".{target.name}-partial"


def tree_digest(paths: list[Path], root: Path) -> str:
    """sha256 over the files under `paths` (relative names and bytes, in sorted order)."""
    h = hashlib.sha256()
    files = sorted(f for p in paths if p.exists() for f in ([p] if p.is_file() else p.rglob("*"))
                   if f.is_file())
    for f in files:
        h.update(str(f.relative_to(root)).encode() + b"\0")
        with f.open("rb") as fh:
            while chunk := fh.read(1 << 22):
                h.update(chunk)
    return h.hexdigest()[:16]


def release_memory() -> None:
    """Give freed memory back to the system. A stage frees many mid-sized arrays (one wave or
    feature matrix per utterance, made by worker threads), and glibc keeps such freed blocks in
    its heaps: measured, 1.5 GB of freed waves stayed resident until malloc_trim. Without this
    the next stage's allocations stack on top of the last one's garbage (the full build's peak
    RSS passed 4 GiB). No effect on what is computed."""
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    libc = ctypes.util.find_library("c")
    if sys.platform.startswith("linux") and libc:
        try:
            ctypes.CDLL(libc).malloc_trim(0)
        except (OSError, AttributeError):  # not glibc (e.g. musl): nothing to trim
            pass


def peak_rss_mib() -> float:
    """This process's largest resident size so far (a stage's record holds it at the stage's
    end, so the stage that set the build's peak can be found)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


class _Stages:
    """Runs the build's stages in a work directory, skipping those already finished there.

    A stage writes its outputs into `.tmp-<stage>/` and they are renamed into the work
    directory, then its record is written (atomically): a stage killed at any point has no
    record and is redone from scratch. A record is valid while its key (stage, code hash,
    preset, seed, and the output digests of every earlier stage) is the one this build computes
    and its outputs still hash to the recorded digest. Whether run or reused, a stage's state is
    then loaded from its outputs on disk, so a resumed build continues from exactly the state an
    uninterrupted one has. Also times each stage and reports one overall progress fraction."""

    def __init__(self, work: Path, preset: str, seed: int, progress: Progress):
        self.work, self.progress = work, progress
        self.base = {"code_hash": code_hash(), "preset": preset, "seed": seed,
                     "format": FORMAT_VERSION}
        self.chain: list[str] = []
        self.records: dict[str, dict] = {}
        self.clock = StageClock(STAGE_SECONDS[preset])
        self.last_status = 0.0
        (work / RECORDS).mkdir(parents=True, exist_ok=True)

    def note(self, digest: str) -> None:
        """Add the digest of in-memory inputs (the corpus) to what later stages depend on."""
        self.chain.append(digest)

    def _key(self, name: str) -> dict:
        inputs = hashlib.sha256(json.dumps([name, *self.chain]).encode()).hexdigest()[:16]
        return {"stage": name, **self.base, "inputs": inputs}

    def _valid(self, name: str, outputs: tuple[str, ...], key: dict) -> dict | None:
        try:
            rec = json.loads((self.work / RECORDS / f"{name}.json").read_text())
        except (OSError, ValueError):
            return None
        if {k: rec.get(k) for k in key} != key:
            return None
        paths = [self.work / o for o in outputs]
        if not all(p.exists() for p in paths) or tree_digest(paths, self.work) != rec["outputs"]:
            return None
        return rec

    def run(self, name: str, outputs: tuple[str, ...], make: Callable[[Path], dict],
            load: Callable[[dict], None]) -> dict:
        """`make(tmp)` writes `outputs` (paths relative to the work dir) under `tmp` and returns
        the stage's figures (JSON); `load(figures)` reads the stage's state from the work dir."""
        key = self._key(name)
        rec = self._valid(name, outputs, key)
        self.clock.start(name)
        if rec is not None:
            self._report(f"{name}: {REUSED}")
            rec = {**rec, "reused": True}
        else:
            (self.work / RECORDS / f"{name}.json").unlink(missing_ok=True)
            tmp = self.work / f".tmp-{name}"
            for p in (tmp, *(self.work / o for o in outputs)):
                shutil.rmtree(p, ignore_errors=True)
            tmp.mkdir(parents=True)
            self._report(f"{name}: {STARTED}")
            t0 = time.monotonic()
            with pinned_threads(name):
                threads = thread_counts()
                figures = make(tmp)
            release_memory()
            seconds = round(time.monotonic() - t0, 1)
            for o in outputs:
                (self.work / o).parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp / o, self.work / o)
            shutil.rmtree(tmp)
            rec = {**key, "outputs": tree_digest([self.work / o for o in outputs], self.work),
                   "seconds": seconds, "threads": threads, "peak_rss_mib": peak_rss_mib(),
                   "figures": figures}
            _write_json_atomic(self.work / RECORDS / f"{name}.json", rec)
            rec["reused"] = False
        with pinned_threads(name):
            load(rec["figures"])
        release_memory()
        self.records[name] = rec
        self.chain.append(rec["outputs"])
        self.clock.end(ran=not rec["reused"])
        if not rec["reused"]:
            self._report(f"{name}: {DONE} {rec['seconds']} s")
        return rec["figures"]

    @contextmanager
    def step(self, name: str):
        """A step without a record, done by every build: the corpus (in memory, cheap) and
        the measurements (the manifest, the build's last step). Yields its start time."""
        self.clock.start(name)
        self._report(f"{name}: {STARTED}")
        with pinned_threads(name):
            yield time.monotonic()
        self.clock.end()

    def update(self, frac: float, msg: str = "") -> None:
        self.clock.update(frac)
        name = self.clock.stage
        self._report(f"{name}: {msg} · {self.clock.describe()}" if msg else
                     f"{name}: {self.clock.describe()}")

    def _report(self, message: str) -> None:
        self.progress(self.clock.fraction, message)
        now = time.monotonic()
        if now - self.last_status >= 2 or message.endswith((STARTED, REUSED)):
            self.last_status = now
            _write_json_atomic(self.work / STATUS, {
                **self.clock.status(), "message": message, "pid": os.getpid(),
                "preset": self.base["preset"], "seed": self.base["seed"],
                "updated": time.time()})

    def seconds(self) -> dict[str, float]:
        return {n: r["seconds"] for n, r in self.records.items()}


@contextmanager
def pinned_threads(stage: str):
    """Run with the stage's fixed thread counts (STAGE_THREADS), whatever the machine or the
    environment (OMP_NUM_THREADS) says; the caller's counts come back afterwards."""
    import torch
    from threadpoolctl import threadpool_limits

    n = STAGE_THREADS[stage]
    before = torch.get_num_threads()
    torch.set_num_threads(n["torch"])
    try:
        with threadpool_limits(limits=n["blas"], user_api="blas"):
            yield
    finally:
        torch.set_num_threads(before)


def _write_json_atomic(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=_json_default))
    os.replace(tmp, path)


def _save_ragged(path: Path, arrays: list[np.ndarray], dtype) -> None:
    """Arrays of different lengths as one .npy and their offsets; `_load_ragged` gives them back
    as views. Streamed to the file one array at a time: no second copy in memory, and no
    writable memory map whose dirty pages count as this process's resident memory."""
    path.mkdir(parents=True, exist_ok=True)
    offsets = np.concatenate([[0], np.cumsum([len(a) for a in arrays])]).astype(np.int64)
    dtype = np.dtype(dtype)
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
              "shape": (int(offsets[-1]),)}
    with (path / "data.npy").open("wb") as fh:
        np.lib.format.write_array_header_1_0(fh, header)
        for a in arrays:
            fh.write(np.ascontiguousarray(a, dtype=dtype).tobytes())
    np.save(path / "offsets.npy", offsets)


def _load_ragged(path: Path) -> list[np.ndarray]:
    data = np.load(path / "data.npy")
    offsets = np.load(path / "offsets.npy")
    return [data[a:b] for a, b in zip(offsets[:-1], offsets[1:], strict=True)]


class _Feats(dict):
    """Log-mel frames per utterance index, computed when first asked for (a resumed build needs
    only those of the stages it still runs)."""

    def __init__(self, waves: list[np.ndarray]):
        super().__init__()
        self.waves = waves

    def __missing__(self, i: int) -> np.ndarray:
        from models.mini import audio

        f = self[i] = audio.log_mel(self.waves[i])
        return f


def _seed_all(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def _dir_bytes(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def _corpus(P: Preset, seed: int) -> SimpleNamespace:
    """The world's stories, who speaks them, every (sentence, voice) to synthesize (`keys`,
    `items` in index order), the words the unit LM hears alone (`word_items`) and the benchmark
    pairs: in memory, a second or so."""
    from models.mini import audio, benchmarks, world

    voices = list(P.voices)
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
    items = sorted(keys, key=keys.get)
    train_idx = sorted({keys[(sent, story_voice[s.id])] for s in stories["train"]
                        for sent in s.sentences})
    # Every word of the world spoken alone, as sWUGGY speaks its items, in every voice, at the
    # speaking rates its benchmark recordings do not use (a benchmark recording of (word,
    # voice) has speed_for(word, voice, seed)): the LM learns words in isolation, never the
    # benchmark's audio, and never a non-word.
    word_items = [(wd, v, sp) for wd in world.lexicon() for v in voices for sp in audio.SPEEDS
                  if sp != audio.speed_for(wd, v, seed)]
    digest = hashlib.sha256(json.dumps([items, word_items, [s.text for s in stories["train"]]])
                            .encode())
    return SimpleNamespace(stories=stories, story_voice=story_voice, keys=keys, items=items,
                           word_items=word_items, train_idx=train_idx, bench_pairs=bench_pairs,
                           digest=digest.hexdigest()[:16])


def _build(out: Path, preset_name: str, seed: int, progress: Progress) -> dict:
    """Build (or finish building) the bundle in the work directory `out`; returns the manifest."""

    from backend.loop import evaluate
    from models.interfaces import dedup
    from models.mini import asr as asr_mod
    from models.mini import audio, world
    from models.mini import judge as judge_mod
    from models.mini import tokenizer as tok_mod
    from models.mini import unit_lm as lm_mod
    from models.mini import vocoder as voc_mod

    P = PRESETS[preset_name]
    _seed_all(seed)
    out.mkdir(parents=True, exist_ok=True)
    st = _Stages(out, preset_name, seed, progress)
    t_start = time.monotonic()
    w = SimpleNamespace()  # the state stages hand on (loaded from their outputs)

    # corpus (in memory, cheap: recomputed by every build) ------------------------------------
    with st.step("corpus") as t0:
        c = _corpus(P, seed)
    st.note(c.digest)
    stories, story_voice, keys, items = c.stories, c.story_voice, c.keys, c.items
    train_idx, bench_pairs = c.train_idx, c.bench_pairs
    word_idx = range(len(items), len(items) + len(c.word_items))  # their waves follow items'
    corpus_seconds = round(time.monotonic() - t0, 1)

    # tts ---------------------------------------------------------------------------------------
    def make_tts(tmp: Path) -> dict:
        spoken = [(t, v, audio.speed_for(t, v, seed)) for t, v in items] + c.word_items
        waves: list[np.ndarray | None] = [None] * len(spoken)

        def speak(i: int) -> None:
            waves[i] = audio.synthesize(*spoken[i])

        with ThreadPoolExecutor(max_workers=2) as ex:
            for j, _ in enumerate(ex.map(speak, range(len(spoken)))):
                if j % 200 == 0:
                    st.update(j / len(spoken), f"{j}/{len(spoken)} utterances")
        _save_ragged(tmp / SCRATCH / "tts", waves, np.float32)
        return {"audio_seconds": sum(len(x) for x in waves) / audio.SR}

    def load_tts(_: dict) -> None:
        w.waves = _load_ragged(out / SCRATCH / "tts")
        w.feats = _Feats(w.waves)

    audio_seconds = st.run("tts", (f"{SCRATCH}/tts",), make_tts, load_tts)["audio_seconds"]

    # tokenizer ---------------------------------------------------------------------------------
    def make_tokenizer(tmp: Path) -> dict:
        feats = [w.feats[i] for i in range(len(items))]
        tok = tok_mod.train(np.concatenate([feats[i] for i in train_idx]), P.k, seed,
                            tmp / "tokenizer")
        frame_units = [tok_mod.assign((f - tok.mean) / tok.std, tok.centroids) for f in feats]
        _save_ragged(tmp / SCRATCH / "tokenizer", frame_units, frame_units[0].dtype)
        return {}

    def load_tokenizer(_: dict) -> None:
        w.tok = tok_mod.MiniTokenizer(out / "tokenizer")
        w.frame_units = _load_ragged(out / SCRATCH / "tokenizer")
        w.units = [dedup(u.tolist()) for u in w.frame_units]

    st.run("tokenizer", ("tokenizer", f"{SCRATCH}/tokenizer"), make_tokenizer, load_tokenizer)

    # vocoder -----------------------------------------------------------------------------------
    def make_vocoder(tmp: Path) -> dict:
        voc_mod.train([w.frame_units[i] for i in train_idx], [w.feats[i] for i in train_idx],
                      P.k, tmp / "vocoder")
        return {}

    def load_vocoder(_: dict) -> None:
        w.voc = voc_mod.MiniVocoder(out / "vocoder")

    st.run("vocoder", ("vocoder",), make_vocoder, load_vocoder)

    # asr ---------------------------------------------------------------------------------------
    def make_asr(tmp: Path) -> dict:
        rng = random.Random(f"asr-{seed}")
        asr_train = sorted(rng.sample(train_idx, min(P.asr_utts, len(train_idx))))
        heldout = sorted({keys[(sent, story_voice[s.id])] for sp in ("dev", "test")
                          for s in stories[sp] for sent in s.sentences} - set(train_idx))
        asr_eval = sorted(rng.sample(heldout, min(P.asr_eval, len(heldout))))

        def vocoded_feats(idx: list[int]) -> list[np.ndarray]:
            outf = []
            for s in range(0, len(idx), 32):
                for x in w.voc.decode_batch([w.units[i] for i in idx[s: s + 32]]):
                    outf.append(audio.log_mel(x))
                st.update(0.3 * s / max(1, len(idx)), f"vocoding {s}/{len(idx)}")
            return outf

        # Mostly vocoded speech (what continuations sound like), a quarter natural espeak
        # (prompts).
        natural = set(rng.sample(asr_train, len(asr_train) // 4))
        voc_idx = [i for i in asr_train if i not in natural]
        tr_feats = vocoded_feats(voc_idx) + [w.feats[i] for i in sorted(natural)]
        tr_texts = [items[i][0] for i in voc_idx] + [items[i][0] for i in sorted(natural)]
        asr = asr_mod.train(tr_feats, tr_texts, tmp / "asr", world.lexicon(), P.asr_steps, seed,
                            conv=P.asr_size[0], hidden=P.asr_size[1],
                            progress=lambda f: st.update(0.3 + 0.65 * f, "training"))
        ev_feats = [(f - asr.mean) / asr.std for f in vocoded_feats(asr_eval)]
        refs = [items[i][0] for i in asr_eval]
        hyps = asr.transcribe_features([f.astype(np.float32) for f in ev_feats])
        nat_hyps = asr.transcribe([w.waves[i] for i in asr_eval], audio.SR)
        return {
            "wer_vocoded_heldout": round(asr_mod.wer(refs, hyps), 4),
            "wer_natural_heldout": round(asr_mod.wer(refs, nat_hyps), 4),
            "n_eval": len(asr_eval), "n_train": len(asr_train), "steps": P.asr_steps,
            "examples": [{"ref": r, "hyp": h} for r, h in list(zip(refs, hyps, strict=True))[:3]],
        }

    def load_asr(_: dict) -> None:
        w.asr = asr_mod.MiniASR(out / "asr")

    asr_metrics = st.run("asr", ("asr",), make_asr, load_asr)

    # unit LM -----------------------------------------------------------------------------------
    def make_unit_lm(tmp: Path) -> dict:
        # In continuous speech a sentence starts at any offset within a 20 ms frame, and the
        # frame phase changes many unit assignments: an LM that only saw each sentence at
        # phase 0 memorised those exact strings (0.32 nats/unit) and met the same story spoken
        # as one recording (benchmarks, sentence 2 on) at 1.18 nats/unit, near chance on
        # sSC/tSC. So each training sentence is tokenized at `lm_phases` sub-frame offsets and
        # a story takes one per sentence at random (measured on the full preset: sSC dev
        # 45 -> 71 %, sWUGGY 69 -> 75 %).
        variants = {i: w.tok.encode_phases(w.waves[i], P.lm_phases) for i in train_idx}
        phase_rng = random.Random(f"lm-phase-{seed}")

        def story_units(s) -> list[int]:
            seq: list[int] = []
            for sent in s.sentences:
                seq.extend(phase_rng.choice(variants[keys[(sent, story_voice[s.id])]]))
            return dedup(seq)

        seqs = sorted({tuple(story_units(s)) for s in stories["train"]})  # deduplicated
        seqs_l = [list(s) for s in seqs]
        # Words alone (sWUGGY's form: a story's units never start at a word's own onset and
        # end at its release), at every phase. Their batches come on top of the stories'
        # steps, so the stories get as many steps as before; a word step is cheap (~15 units).
        words = sorted({tuple(v) for i in word_idx
                        for v in w.tok.encode_phases(w.waves[i], P.lm_phases) if v} - set(seqs))
        word_steps = round(P.lm_steps * math.ceil(len(words) / P.lm_batch)
                           / math.ceil(len(seqs_l) / P.lm_batch))
        info = lm_mod.train(
            seqs_l + [list(x) for x in words], P.k, tmp / "unit_lm", P.lm_steps + word_steps,
            seed, hidden=P.lm_hidden, layers=P.lm_layers, heads=4, batch_size=P.lm_batch,
            progress=lambda f, loss: st.update(f, f"loss {loss:.3f}"),
        )
        info["word_sequences"], info["word_steps"] = len(words), word_steps
        info["units_per_second"] = round(
            sum(len(s) for s in seqs_l) / sum(len(w.waves[keys[(x, story_voice[s.id])]])
                                               / audio.SR
                                               for s in stories["train"] for x in s.sentences),
            2)
        return {"lm": info, "sequences": len(seqs_l), "units": sum(len(s) for s in seqs_l)}

    lm_figures = st.run("unit_lm", ("unit_lm",), make_unit_lm, lambda _: None)
    lm_info = lm_figures["lm"]

    # judge -------------------------------------------------------------------------------------
    def make_judge(tmp: Path) -> dict:
        knowledge = world.generate(3000, 0, 0, seed + 1000, noise_frac=0.0)["train"]
        judge_mod.build(tmp / "judge", [s.text for s in knowledge])
        return {}

    def load_judge(_: dict) -> None:
        w.judge = judge_mod.MiniJudge(out / "judge")

    st.run("judge", ("judge",), make_judge, load_judge)

    # files: prompts and benchmarks -------------------------------------------------------------
    def make_files(tmp: Path) -> dict:
        prompt_rows = []
        for split, n in zip(("train", "dev", "test"), P.prompts, strict=True):
            seen: set[tuple[str, str]] = set()
            for s in stories[split]:
                key = (s.sentences[0], story_voice[s.id])
                if key in seen or not s.coherent:
                    continue
                seen.add(key)
                fname = f"{split}/{s.id}.wav"
                write_wav(tmp / "prompts" / fname, w.waves[keys[key]], 16000, "PCM_16")
                prompt_rows.append({
                    "file": fname, "split": split, "reference_text": s.sentences[0],
                    "story_id": s.id, "topic": s.topic, "character": s.name,
                    "activity": s.activity, "voice": key[1], "story_text": s.text, "id": s.id,
                    "duration_s": round(len(w.waves[keys[key]]) / audio.SR, 3),
                })
                if len(seen) >= n:
                    break
        (tmp / "prompts" / "prompts.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in prompt_rows))
        gap = np.zeros(int(0.05 * audio.SR), np.float32)
        bench_units: dict[str, dict[str, list[tuple[list[int], list[int]]]]] = {}
        for name, splits in bench_pairs.items():
            for split, pairs in splits.items():
                d = tmp / "benchmarks" / name
                lines = ["filename voice frequency word phones id correct" if name == "swuggy"
                         else "filename voice type id correct"]
                meta = []
                pu = []
                for p in pairs:
                    pair_units = []
                    for correct, sents in ((1, p.good), (0, p.bad)):
                        wav = np.concatenate(
                            [x for s in sents for x in (w.waves[keys[(s, p.voice)]], gap)][:-1])
                        fname = f"{split}_{p.id}_{correct}"
                        write_wav(d / split / f"{fname}.wav", wav, 16000, "PCM_16")
                        # Scored as written (16-bit PCM), as `evaluation` and every user reads
                        # it: the float wave's units differ enough to move sWUGGY by a point.
                        pair_units.append(
                            w.tok.encode(*evaluate.read_wave(d / split / f"{fname}.wav")))
                        if name == "swuggy":
                            word = p.word if correct else sents[0]
                            lines.append(f"{fname} {p.voice} {int(correct)} {word} - {p.id} "
                                         f"{correct}")
                        else:
                            lines.append(f"{fname} {p.voice} {p.kind} {p.id} {correct}")
                        meta.append({"filename": fname, "id": p.id, "correct": correct,
                                     "text": " ".join(sents), "voice": p.voice})
                    pu.append((pair_units[0], pair_units[1]))
                (d / f"{split}.item").write_text("\n".join(lines) + "\n")
                (d / f"{split}.jsonl").write_text("".join(json.dumps(m) + "\n" for m in meta))
                bench_units.setdefault(name, {})[split] = pu
        (tmp / SCRATCH / "files").mkdir(parents=True)
        (tmp / SCRATCH / "files" / "bench_units.json").write_text(json.dumps(bench_units))
        return {}

    def load_files(_: dict) -> None:
        w.prompt_rows = [json.loads(x) for x in
                         (out / "prompts" / "prompts.jsonl").read_text().splitlines()]
        w.bench_units = json.loads((out / SCRATCH / "files" / "bench_units.json").read_text())

    st.run("files", ("prompts", "benchmarks", f"{SCRATCH}/files"), make_files, load_files)

    # measure -----------------------------------------------------------------------------------
    with st.step("measure") as t0:
        measure_threads = thread_counts()
        lm = lm_mod.load(out / "unit_lm")
        bench_acc: dict[str, dict] = {}
        for name, splits in w.bench_units.items():
            for split, pu in splits.items():
                lps = lm_mod.logprobs(lm, [u for pair in pu for u in pair])
                wins = evaluate.pair_outcomes(lps[0::2], lps[1::2])  # ties count half
                bench_acc.setdefault(name, {})[split] = {
                    "accuracy": round(float(np.mean(wins)), 4), "n": len(wins),
                    "ci95": _bootstrap_ci(np.array(wins, float), seed)}
        st.update(0.3, "judge ranking")
        judge_metrics = _judge_ranking(stories["dev"] + stories["test"], w.judge, w.asr, w.voc,
                                       w.units, keys, story_voice, P.judge_pairs, seed)
        st.update(0.6, "sampling continuations")
        dev_prompts = [r for r in w.prompt_rows if r["split"] == "dev"][: P.sample_prompts]
        samples = _sampled_quality(lm, dev_prompts, out, w.tok, w.voc, w.asr, w.judge, P.k, seed)
        digest = hashlib.sha256()
        digest.update(w.tok.centroids.tobytes())
        for u in w.units[:200]:
            digest.update(np.asarray(u, np.int32).tobytes())
    seconds = {"corpus": corpus_seconds, **st.seconds(),
               "measure": round(time.monotonic() - t0, 1)}
    del w.waves, w.feats, w.frame_units  # the views keep the scratch files' arrays alive
    shutil.rmtree(out / SCRATCH)

    manifest = {
        "format": FORMAT_VERSION, "complete": True, "preset": preset_name, "seed": seed,
        "code_hash": code_hash(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "preset_config": asdict(P), "versions": _versions(),
        "build_seconds": {**seconds, "total": round(sum(seconds.values()), 1)},
        "this_run_seconds": round(time.monotonic() - t_start, 1),
        "resumed_stages": [n for n, r in st.records.items() if r["reused"]],
        "stages": {**{n: {k: r.get(k) for k in ("inputs", "outputs", "seconds", "threads",
                                                 "peak_rss_mib")}
                      for n, r in st.records.items()},
                   "measure": {"seconds": seconds["measure"], "threads": measure_threads}},
        "environment": environment(),
        "peak_rss_mib": peak_rss_mib(),
        "cpu_threads": STAGE_THREADS["unit_lm"]["torch"], "cpu_count": os.cpu_count(),
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "sizes": {
            "stories": {k: len(v) for k, v in stories.items()},
            "noisy_train_stories": Counter(s.noise or "coherent" for s in stories["train"]),
            "utterances": len(items), "audio_hours": round(audio_seconds / 3600, 3),
            "lm_train_sequences": lm_figures["sequences"], "lm_train_units": lm_figures["units"],
            "prompts": Counter(r["split"] for r in w.prompt_rows),
        },
        "components": {
            "tokenizer": {"k": P.k, "frame_rate": 50, "units_digest": digest.hexdigest()[:16]},
            "unit_lm": lm_info, "asr": asr_metrics, "judge": judge_metrics,
        },
        "benchmarks": bench_acc,
        "sampled_continuations": samples,
    }
    manifest["bars"] = _bars(manifest)
    shipped = sorted(p for p in out.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))
    manifest["digests"] = {p.name: tree_digest([p], out) for p in shipped}
    manifest["sizes"]["bundle_mib"] = round(sum(_dir_bytes(p) for p in shipped) / 2**20, 1)
    manifest["sizes"]["per_dir_mib"] = {p.name: round(_dir_bytes(p) / 2**20, 2) for p in shipped}
    _write_json_atomic(out / MANIFEST, manifest)
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
