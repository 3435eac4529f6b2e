"""The mini world's build resumes: `python -m backend bootstrap` killed (SIGKILL) in the unit LM
stage, run again, redoes nothing that was finished and gives the bundle an uninterrupted build
of the same code and seed gives (the cached tiny test bundle)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backend.world import REUSED, work_dir

ROOT = Path(__file__).resolve().parents[2]
FINISHED_BEFORE_LM = ["tts", "tokenizer", "vocoder", "asr"]


def _bootstrap(data: Path, name: str) -> subprocess.Popen:
    """The CLI as `make run` starts it: stage lines on stdout (`<name>.log`), the bar on
    stderr (`<name>.bar`)."""
    env = {**os.environ, "STUDIO_DATA_DIR": str(data), "OMP_NUM_THREADS": "1"}
    data.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [sys.executable, "-m", "backend", "bootstrap", "--preset", "tiny", "--seed", "0"],
        cwd=ROOT, env=env, stdout=(data.parent / f"{name}.log").open("w"),
        stderr=(data.parent / f"{name}.bar").open("w"))


@pytest.mark.timeout(3600)  # two tiny builds in all (~3 min on 2 idle cores; shared: longer)
def test_killed_build_resumes_where_it_stopped(tmp_path, request):
    data = tmp_path / "data"
    bundle = data / "bundle"
    work = work_dir(bundle)
    first = _bootstrap(data, "first")
    try:
        deadline = time.monotonic() + 3600
        # killed once the unit LM has trained a few steps (its first loss is on the bar)
        while "unit_lm: loss" not in (tmp_path / "first.bar").read_text(errors="replace"):
            assert first.poll() is None, (tmp_path / "first.bar").read_text()[-2000:]
            assert time.monotonic() < deadline
            time.sleep(0.5)
        first.send_signal(signal.SIGKILL)
        first.wait()
    finally:
        if first.poll() is None:
            first.kill()
    assert not bundle.exists()
    records = {p.stem: json.loads(p.read_text()) for p in (work / "_stages").glob("*.json")}
    assert sorted(records) == sorted(FINISHED_BEFORE_LM)
    assert not (work / "unit_lm").exists()  # half-trained: only in its .tmp dir
    mtimes = {p: p.stat().st_mtime_ns for d in ("tokenizer", "vocoder", "asr")
              for p in (work / d).rglob("*") if p.is_file()}

    assert (tmp_path / "first.log").read_text().splitlines()[-1] == "unit_lm: started"
    second = _bootstrap(data, "second")
    assert second.wait(timeout=3600) == 0, (tmp_path / "second.bar").read_text()[-2000:]
    events = (tmp_path / "second.log").read_text().splitlines()
    assert events[:5] == ["corpus: started", *(f"{s}: {REUSED}" for s in FINISHED_BEFORE_LM)]
    assert not [e for e in events if e.split(":")[0] in FINISHED_BEFORE_LM and REUSED not in e]
    assert "unit_lm: started" in events
    for p, t in mtimes.items():  # the finished stages' files were not rewritten
        assert (bundle / p.relative_to(work)).stat().st_mtime_ns == t, p
    assert not work.exists()

    resumed = json.loads((bundle / "manifest.json").read_text())
    # the uninterrupted build: asked for only now, so a fresh one builds alongside this test's
    whole = json.loads((request.getfixturevalue("mini_bundle") / "manifest.json").read_text())
    assert resumed["complete"] and resumed["resumed_stages"] == FINISHED_BEFORE_LM
    assert resumed["build_seconds"]["asr"] == records["asr"]["seconds"]
    assert resumed["digests"] == whole["digests"]
    def made(m: dict) -> dict:  # what each recorded stage was made from and what it made
        return {n: (r["inputs"], r["outputs"]) for n, r in m["stages"].items() if "outputs" in r}

    assert made(resumed) == made(whole) and len(made(whole)) == 7
    assert (resumed["components"]["tokenizer"]["units_digest"]
            == whole["components"]["tokenizer"]["units_digest"])
    assert resumed["benchmarks"] == whole["benchmarks"]
    assert resumed["components"]["unit_lm"] == whole["components"]["unit_lm"]


@pytest.mark.parametrize("damage", ["record", "output"])
def test_a_stage_whose_record_or_output_changed_is_redone(tmp_path, damage):
    """A record is trusted only while its outputs hash to what it says and its key holds."""
    import numpy as np

    from backend.world import _Stages

    made = []

    def make(tmp: Path) -> dict:
        made.append(1)
        (tmp / "a").mkdir()
        np.save(tmp / "a" / "x.npy", np.arange(3))
        return {"n": 3}

    loaded = []
    _Stages(tmp_path, "tiny", 0, lambda f, m: None).run("tts", ("a",), make, loaded.append)
    assert made == [1] and loaded == [{"n": 3}]
    _Stages(tmp_path, "tiny", 0, lambda f, m: None).run("tts", ("a",), make, loaded.append)
    assert made == [1]  # reused
    if damage == "record":
        _Stages(tmp_path, "tiny", 1, lambda f, m: None).run("tts", ("a",), make, loaded.append)
    else:
        np.save(tmp_path / "a" / "x.npy", np.arange(4))
        _Stages(tmp_path, "tiny", 0, lambda f, m: None).run("tts", ("a",), make, loaded.append)
    assert made == [1, 1]
    assert np.array_equal(np.load(tmp_path / "a" / "x.npy"), np.arange(3))
