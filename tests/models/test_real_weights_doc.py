"""docs/real-weights.md, run as written: its `studio.toml`, then every command of its shell
blocks in order, on tiny random-init checkpoints saved in the published layouts (TWIST OPT and
Llama directories with `offset` in config.json and fp16 safetensors, an mHuBERT directory and a
joblib MiniBatchKMeans, a unit HiFi-GAN .pt with weight-normed convs and its JSON, an
openai-whisper .pt) and a loopback OpenAI-compatible judge. The doc's paths (/weights, /data,
/srv/studio) and judge URLs are mapped into a temporary directory; only the scale is turned down
(environment variables, which outrank the file)."""

from __future__ import annotations

import json
import re
import shlex
import threading
import tomllib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from .conftest import save_mhubert, save_twist_lm, save_whisper_pt

DOC = Path(__file__).resolve().parents[2] / "docs" / "real-weights.md"
N_UNITS = 500  # TWIST's k-means K: tokenizer, LM and vocoder must agree
SCALE = {  # test scale: a few prompts, short continuations, two DPO steps
    "STUDIO_GENERATION__N": "4", "STUDIO_GENERATION__MAX_NEW_UNITS": "8",
    "STUDIO_GENERATION__HELDOUT_N": "1", "STUDIO_GENERATION__BATCH_SIZE": "4",
    "STUDIO_SELECTION__MIN_PAIRS": "1", "STUDIO_DPO__MAX_STEPS": "2",
    "STUDIO_DPO__BATCH_SIZE": "2", "STUDIO_MODELS__ASR__BATCH_SIZE": "4",
}


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(), flags=re.S)


class LoopbackJudge:
    """POST /v1/chat/completions answering scores 5, 1, 4, 2, 3, 5, ... in turn, so every
    prompt's continuations differ enough to give preference pairs."""

    def __init__(self):
        self.n, self.lock, judge = 0, threading.Lock(), self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with judge.lock:
                    score, judge.n = (5, 1, 4, 2, 3)[judge.n % 5], judge.n + 1
                data = json.dumps({
                    "id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                    "choices": [{"index": 0, "finish_reason": "stop", "message": {
                        "role": "assistant", "content": f"Fine.\nScore: {score}"}}],
                    "usage": {"prompt_tokens": 50, "completion_tokens": 5, "total_tokens": 55},
                }).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def _wav(path: Path, seconds: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000
    wave = 0.3 * np.sin(2 * np.pi * (150 + 40 * seed) * t) + 0.05 * rng.standard_normal(len(t))
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, wave.astype(np.float32), 16000)


def build_published_files(root: Path, arch: str) -> None:
    """Everything the doc names under /weights and /data, in the published layouts."""
    from tests.evaluation.test_benchmark_converters import zerospeech_tree
    from tests.models.test_vocoder import BASE, DUR, save_published

    w = root / "weights"
    w.mkdir(parents=True)
    save_mhubert(w / "mhubert-base-25hz", w / "mhubert_base_25hz_cp_mls_cv_sp_fisher_L11_km500.bin",
                 N_UNITS, n_layers=12, layer=11)  # the doc keeps the default layer, 11
    save_twist_lm(w / "TWIST-1.3B", arch, n_units=N_UNITS)
    voc = w / "hifigan-mhubert-base-25hz-km500"
    ckpt, conf, _ = save_published(voc, {**BASE, **DUR, "num_embeddings": N_UNITS})
    ckpt.rename(voc / "generator.pt")
    save_whisper_pt(w / "whisper" / "large-v3.pt")
    d = root / "data"
    for split, n in (("train", 6), ("dev", 2)):
        rows = []
        for i in range(n):
            rel = f"wavs/{split}{i}.wav"
            _wav(d / "my-prompts" / rel, 4.0, seed=i + (10 if split == "dev" else 0))
            rows.append(json.dumps({"audio": rel}))
        (d / "my-prompts" / f"{split}.jsonl").write_text("\n".join(rows) + "\n")
    for sub in ("lexical", "syntactic"):
        zerospeech_tree(d / "zerospeech2021", sub)
    for name in ("sSC", "tSC"):
        for n in range(3):
            _wav(d / "storycloze" / name / f"{n}_correct.wav", 0.4, seed=n)
            _wav(d / "storycloze" / name / f"{n}_incorrect.wav", 0.4, seed=n + 50)


def deep_merge(base: dict, extra: dict) -> dict:
    """The GPU block's values merged into the studio.toml sections they name."""
    for k, v in extra.items():
        base[k] = deep_merge(base.get(k, {}), v) if isinstance(v, dict) else v
    return base


def localize(text: str, root: Path, judge_url: str) -> str:
    text = re.sub(r'(?<=[\s"=])/(weights|data|srv/studio)\b', lambda m: f"{root}/{m.group(1)}",
                  text)
    return re.sub(r'base_url = "[^"]*"', f'base_url = "{judge_url}"', text)


@pytest.mark.parametrize("arch", ["opt", "llama"])
def test_every_command_of_the_doc_runs(arch, tmp_path, monkeypatch, capsys):
    from sqlalchemy import select

    from backend.cli import main
    from backend.config import Settings
    from backend.registry import list_versions
    from backend.runtime import Runtime
    from db.schema import EvalResult, Prompt

    build_published_files(tmp_path, arch)
    judge = LoopbackJudge()
    try:
        toml_blocks = blocks("toml")
        studio_toml = localize(toml_blocks[0], tmp_path, judge.url)
        data_dir = Path(tomllib.loads(studio_toml)["data_dir"])
        data_dir.mkdir(parents=True)
        (data_dir / "studio.toml").write_text(studio_toml)
        for k, v in SCALE.items():
            monkeypatch.setenv(k, v)
        commands = [ln.strip() for b in blocks("sh") for ln in b.splitlines() if ln.strip()]
        assert len(commands) >= 12
        for line in commands:
            line = localize(line, tmp_path, judge.url)
            if line.startswith("export "):
                key, _, value = line.removeprefix("export ").partition("=")
                monkeypatch.setenv(key, value)
                continue
            argv = shlex.split(line)
            assert argv[:3] == ["python", "-m", "backend"], f"not a studio command: {line}"
            assert main(argv[3:]) == 0, f"{line}: {capsys.readouterr().err}"
        out = capsys.readouterr().out
        assert f"{tmp_path}/weights/TWIST-1.3B" in out  # config show, evaluate, report ran

        rt = Runtime(Settings())
        try:
            versions = list_versions(rt)
            assert [v.kind for v in versions] == ["baseline", "aligned"]
            assert versions[0].name == "TWIST-1.3B"
            assert rt.unit_lm.unit_offset == 4 and rt.vocoder.dur_prediction
            adapter = json.loads((Path(versions[1].adapter_path) / "adapter_config.json")
                                 .read_text())
            out_proj = "out_proj" if arch == "opt" else "o_proj"
            assert set(adapter["target_modules"]) == {"q_proj", "k_proj", "v_proj", out_proj}
            with rt.store.read() as s:
                benches = {(r.model_version_id, r.benchmark) for r in s.scalars(select(EvalResult))}
                durations = list(s.scalars(select(Prompt.duration_s)))
            # the doc's own prompts: 6 train + 2 dev clips of 4 s, cut to prompt_seconds (3 s)
            assert len(durations) == 8 and all(abs(d - 3.0) < 1e-3 for d in durations)
            for v in versions:
                assert {"swuggy", "sblimp", "ssc", "tsc"} <= {b for i, b in benches if i == v.id}
        finally:
            rt.close()
    finally:
        judge.close()

    merged = deep_merge(tomllib.loads(studio_toml), tomllib.loads(toml_blocks[1]))
    s = Settings(**merged)
    assert (s.models.unit_lm.dtype, s.models.unit_lm.device, s.dpo.use_cpu, s.dpo.bf16) == (
        "bfloat16", "cuda", False, True)
