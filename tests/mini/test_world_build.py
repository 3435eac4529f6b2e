"""The mini world's build machinery without a full build: fixed thread counts, the manifest's
environment and the diff of two manifests, progress with honest ETAs, the running build's
status as the page shows it."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from backend import world
from backend.progress import StageClock, format_duration

ROOT = Path(__file__).resolve().parents[2]


def test_pinned_threads_fix_the_blas_threads_whatever_the_environment():
    """A float32 matmul of log-mel's shape rounds differently on 1 and 2 OpenBLAS threads (the
    build's units once depended on OMP_NUM_THREADS this way); inside a stage the count is
    fixed."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    power = rng.random((2000, 513), dtype=np.float32) ** 4
    basis = rng.random((80, 513), dtype=np.float32)
    with threadpool_limits(1, user_api="blas"):
        one = power @ basis.T
    with threadpool_limits(2, user_api="blas"):
        two = power @ basis.T
        with world.pinned_threads("tokenizer"):
            pinned = power @ basis.T
    assert not np.array_equal(one, two)
    assert np.array_equal(one, pinned)


def test_pinned_threads_set_torch_and_restore_it():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with world.pinned_threads("unit_lm"):
            assert torch.get_num_threads() == world.STAGE_THREADS["unit_lm"]["torch"]
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_environment_records_cpu_blas_and_threads():
    from backend.world_env import environment, thread_counts

    env = environment()
    assert env["cpu"]["model"] and isinstance(env["cpu"]["flags"], str)
    assert {"blas", "lapack"} <= set(env["numpy_blas"])
    assert any(k.startswith("openblas:") for k in env["loaded_blas_openmp"])
    assert env["torch"]["config"] and env["torch"]["cpu_capability"]
    assert thread_counts()["torch"] >= 1


def test_cpu_info_reads_the_first_processor(tmp_path):
    from backend.world_env import cpu_info

    f = tmp_path / "cpuinfo"
    f.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n"
                 "flags\t\t: fma avx2 sse2 avx\n\nprocessor\t: 1\nmodel name\t: other\n")
    info = cpu_info(f)
    assert info["model"] == "AMD EPYC 7B13" and info["vendor"] == "AuthenticAMD"
    assert info["flags"] == "avx avx2 fma sse2"


def _manifest(**over) -> dict:
    m = {"code_hash": "abc", "preset": "tiny", "seed": 0,
         "versions": {"torch": "2.13.0", "numpy": "2.4.6"},
         "environment": {"cpu": {"model": "AMD EPYC", "flags": "avx avx2"},
                         "env": {"OMP_NUM_THREADS": "1"}},
         "stages": {"tts": {"outputs": "t1", "threads": {"torch": 2}, "seconds": 10},
                    "tokenizer": {"outputs": "k1", "threads": {"torch": 2}, "seconds": 3}},
         "digests": {"tokenizer": "d1", "asr": "a1"},
         "components": {"tokenizer": {"units_digest": "u1"}},
         "build_seconds": {"total": 100}}
    for k, v in over.items():
        m[k] = v
    return m


def test_diff_of_two_manifests_lists_causes_and_effects():
    from backend.world_env import diff_manifests

    a = _manifest()
    assert diff_manifests(a, _manifest()) == {"causes": [], "effects": []}
    b = _manifest(environment={"cpu": {"model": "Intel Xeon", "flags": "avx avx2 avx512f"},
                               "env": {}},
                  stages={"tts": {"outputs": "t1", "threads": {"torch": 2}, "seconds": 99},
                          "tokenizer": {"outputs": "k2", "threads": {"torch": 1},
                                        "seconds": 3}},
                  digests={"tokenizer": "d2", "asr": "a1"},
                  components={"tokenizer": {"units_digest": "u2"}},
                  build_seconds={"total": 200})
    d = diff_manifests(a, b)
    causes = {r["key"]: (r["a"], r["b"]) for r in d["causes"]}
    assert causes == {
        "environment.cpu.model": ("AMD EPYC", "Intel Xeon"),
        "environment.cpu.flags": ("avx avx2", "avx avx2 avx512f"),
        "environment.env.OMP_NUM_THREADS": ("1", None),
        "stages.tokenizer.threads.torch": (2, 1),
    }
    assert [r["key"] for r in d["effects"]] == [
        "digests.tokenizer", "stages.tokenizer.outputs", "components.tokenizer.units_digest"]


def test_world_diff_cli(tmp_path):
    for name, m in (("a", _manifest()), ("b", _manifest(seed=1))):
        (tmp_path / name).mkdir()
        (tmp_path / name / "manifest.json").write_text(json.dumps(m))
    out = subprocess.run([sys.executable, "-m", "backend", "world-diff", str(tmp_path / "a"),
                          str(tmp_path / "b" / "manifest.json"), "--json"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(out)["causes"] == [{"key": "seed", "a": 0, "b": 1}]
    bad = subprocess.run([sys.executable, "-m", "backend", "world-diff", str(tmp_path / "a"),
                          str(tmp_path / "nowhere")], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 2 and "no manifest" in bad.stderr


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_stage_clock_weights_stages_by_measured_time_and_scales_by_machine_speed():
    clock = FakeClock()
    c = StageClock({"a": 10, "b": 30, "c": 60}, clock)
    c.start("a")
    assert c.fraction == 0 and c.eta() == pytest.approx(100)  # nothing measured here yet
    clock.t = 20  # this machine is twice as slow as the measuring one
    c.update(1.0)
    c.end()
    assert c.fraction == pytest.approx(0.1) and c.speed() == pytest.approx(2)
    c.start("b")
    assert c.stage_eta() == pytest.approx(60) and c.eta() == pytest.approx(60 + 120)
    clock.t = 20 + 15
    c.update(0.5)  # b runs at its measured speed: its own rate now says 15 s more
    assert c.stage_eta() == pytest.approx(15)
    assert c.fraction == pytest.approx((10 + 15) / 100)
    assert c.speed() == pytest.approx((20 + 15) / (10 + 15))
    assert c.eta() == pytest.approx(15 + 60 * 35 / 25)
    assert c.status()["stage"] == "b" and "stage 50 %" in c.describe()


def test_stage_clock_reused_stages_count_as_done_but_not_as_speed():
    clock = FakeClock()
    c = StageClock({"a": 50, "b": 50}, clock)
    c.start("a")
    c.end(ran=False)
    assert c.fraction == 0.5 and c.speed() == 1.0
    c.start("b")
    clock.t = 10
    c.update(0.01)  # too little of the stage to trust its own rate
    assert c.stage_eta() == pytest.approx(40)


def test_format_duration():
    assert [format_duration(s) for s in (4.4, 59.6, 190, 3725)] == [
        "4 s", "1 min 00 s", "3 min 10 s", "1 h 02 min"]


def test_build_status_is_shown_only_while_a_build_holds_the_lock(tmp_path):
    from filelock import FileLock

    from app.admin.world import build_progress

    target = tmp_path / "bundle"
    work = world.work_dir(target)
    work.mkdir()
    status = {"stage": "unit_lm", "stage_fraction": 0.45, "stage_eta_s": 190.0,
              "fraction": 0.62, "eta_s": 400.0, "preset": "full", "seed": 0}
    (work / world.STATUS).write_text(json.dumps(status))
    assert world.build_status(target) is None  # a killed build's file: nobody holds the lock
    with FileLock(f"{work}.lock"):
        assert world.build_status(target) == status
        line = build_progress(world.build_status(target))
    assert "stage **unit_lm** 45 %, about 3 min 10 s left in it" in line
    assert "62 % done, about 6 min 40 s left" in line
    assert build_progress(None) == ""


def test_banner_follows_a_running_build(tmp_path):
    from filelock import FileLock

    from app.main import world_banner
    from backend.config import Settings

    s = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'x.db'}", world="mini")
    rt = SimpleNamespace(settings=s)
    assert "not built yet" in world_banner(rt)
    work = world.work_dir(s.bundle_dir)
    work.mkdir(parents=True)
    (work / world.STATUS).write_text(json.dumps(
        {"stage": "tts", "stage_fraction": 0.1, "stage_eta_s": 50, "fraction": 0.01,
         "eta_s": 900, "preset": "full", "seed": 0}))
    with FileLock(f"{work}.lock"):
        banner = world_banner(rt)
    assert "Building the mini world" in banner and "15 min 00 s left" in banner


KERNEL_PROBE = """
import hashlib, sys
import numpy as np
from models.mini import audio
from models.mini import tokenizer as tok
waves = [audio.synthesize(t, "en-us", 165) for t in
         ("Tom went to the farm to feed the hens.", "She saw a small rose near the fence.")]
f = np.concatenate([audio.log_mel(w) for w in waves])
c = tok.kmeans((f - f.mean(0)) / f.std(0), 16, 0, 10)
u = tok.assign((f - f.mean(0)) / f.std(0), c)
print(hashlib.sha256(f.tobytes() + c.tobytes() + u.tobytes()).hexdigest())
"""


def test_features_and_kmeans_do_not_depend_on_the_blas_kernel_or_threads():
    """The units' inputs and k-means computed with other OpenBLAS kernels (as on other CPUs)
    and thread counts are bit-identical (float32 matmuls were not: see the pinned test)."""
    digests = set()
    for env in ({"OMP_NUM_THREADS": "1"}, {"OMP_NUM_THREADS": "2"},
                {"OMP_NUM_THREADS": "1", "OPENBLAS_CORETYPE": "Prescott"},
                {"OMP_NUM_THREADS": "2", "OPENBLAS_CORETYPE": "Sandybridge"}):
        out = subprocess.run([sys.executable, "-c", KERNEL_PROBE], cwd=ROOT, check=True,
                             env={**os.environ, **env}, capture_output=True,
                             text=True).stdout
        digests.add(out.strip())
    assert len(digests) == 1, digests


def test_the_lm_hears_every_word_alone_but_never_a_benchmark_recording():
    """sWUGGY speaks single words; the unit LM's training has each word of the world alone in
    each voice at the other speaking rates, never the benchmark's (word, voice, rate), never a
    non-word."""
    from models.mini import audio
    from models.mini import world as mini_world

    P = world.PRESETS["tiny"]
    c = world._corpus(P, 0)
    spoken = set(c.word_items)
    assert {wd for wd, _, _ in spoken} == set(mini_world.lexicon())
    assert len(spoken) == len(mini_world.lexicon()) * len(P.voices) * (len(audio.SPEEDS) - 1)
    pairs = [p for split in c.bench_pairs["swuggy"].values() for p in split]
    assert pairs
    for p in pairs:
        assert (p.word, p.voice, audio.speed_for(p.word, p.voice, 0)) not in spoken
        assert not {wd for wd, _, _ in spoken} & set(p.bad)


def test_ragged_arrays_round_trip_as_one_npy(tmp_path):
    """Stage scratch (waves, frame units) is written array by array into one standard .npy."""
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(n).astype(np.float32) for n in (5, 0, 3000, 1)]
    world._save_ragged(tmp_path / "r", arrays, np.float32)
    assert np.load(tmp_path / "r" / "data.npy").shape == (3006,)
    back = world._load_ragged(tmp_path / "r")
    assert [len(b) for b in back] == [5, 0, 3000, 1]
    assert all(np.array_equal(a, b) for a, b in zip(arrays, back, strict=True))


def _rss_mib() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(not Path("/proc/self/statm").exists() or platform.libc_ver()[0] != "glibc",
                    reason="resident size read from /proc; malloc_trim is glibc's")
def test_release_memory_returns_freed_utterance_arrays_to_the_system():
    """Many mid-sized arrays made by worker threads and freed stay resident under glibc until
    trimmed (what pushed the full build past 4 GiB); release_memory gives them back."""
    from concurrent.futures import ThreadPoolExecutor

    world.release_memory()
    arrays: list = [None] * 2000
    small: list = [None] * 2000  # kept: they pin the holes the freed arrays leave

    def make(i: int) -> None:
        arrays[i] = np.ones(30_000 + i, np.float32)  # ~120 KiB, under glibc's mmap threshold
        small[i] = np.ones(8, np.float32)

    with ThreadPoolExecutor(max_workers=2) as ex:
        list(ex.map(make, range(len(arrays))))
    held = sum(a.nbytes for a in arrays) / 2**20  # ~260 MiB
    arrays.clear()
    before = _rss_mib()
    world.release_memory()
    after = _rss_mib()
    assert len(small) == 2000
    assert before - after > 0.5 * held, (before, after, held)
