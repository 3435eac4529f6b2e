"""Judged continuations per second, stage by stage and end to end, on a built mini world.

A round's cost is sampling: generate -> vocode -> transcribe -> judge. This bench runs each stage
alone on the round's default settings (the mini world's overrides applied), then the loop's own
functions end to end on a fresh store, and reports continuations per second of wall time and of
process CPU time (CPU time is what a stage costs when the machine is shared; wall time is what
a user waits). For LM sampling it also reports the achieved FLOP rate over that of a large
matmul measured in the same run with the same threads: the last line is `roofline: 0.NN`.

    .venv/bin/python -m bench.throughput --data-dir D [--prompts 16] [--threads 2]

D's `bundle/` is the built world (a symlink is fine). Writes bench/results/throughput.json (or
--out). Sampling FLOPs per generated unit: 2 x the LM's non-embedding parameters (the tied
output projection counted once) plus attention over the context (4 x layers x hidden x context).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class Clock:
    """Wall and process-CPU seconds of a block."""

    def __enter__(self):
        self.w, self.c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.w
        self.cpu = time.process_time() - self.c


def rates(n: int, clock: Clock) -> dict:
    return {"n": n, "wall_s": round(clock.wall, 3), "cpu_s": round(clock.cpu, 3),
            "per_s_wall": round(n / clock.wall, 2) if clock.wall else None,
            "per_s_cpu": round(n / clock.cpu, 2) if clock.cpu else None}


def matmul_gflops(threads: int, size: int = 2048, reps: int = 5) -> float:
    """Best-of-`reps` float32 matmul rate: what these cores can do on dense work."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * size ** 3 / best / 1e9


def flops_per_unit(model, context: float) -> float:
    """The input embedding is a lookup (free); a tied output projection is a matmul with it."""
    cfg = model.config
    emb = model.get_input_embeddings().weight.numel()
    params = sum(p.numel() for p in model.parameters())
    dense = params if getattr(cfg, "tie_word_embeddings", False) else params - emb
    return 2 * dense + 4 * cfg.num_hidden_layers * cfg.hidden_size * context


def measure(rt, n_prompts: int, threads: int) -> dict:
    import numpy as np
    from sqlalchemy import select

    from backend import registry
    from backend.loop import generate, judge, transcribe
    from backend.loop.generate import sampling_params
    from db.schema import Prompt

    split = rt.settings.generation.train_split
    with rt.store.read() as s:
        rows = s.execute(select(Prompt.id, Prompt.units, Prompt.transcript,
                                Prompt.reference_text).where(Prompt.split == split)
                         .order_by(Prompt.id).limit(n_prompts)).all()
    if not rows:
        raise SystemExit(f"no {split!r} prompts in the store; is the bundle built?")
    params = sampling_params(rt)
    bs = max(1, rt.settings.generation.batch_size)
    lm, voc, asr = rt.unit_lm, rt.vocoder, rt.asr
    jd = rt.judge(None)
    units = [list(r.units) for r in rows]
    lm.sample(units[:1], sampling_params(rt, n=1, max_new_units=8))  # warm-up

    out: dict = {"prompts": len(rows), "sampling": {k: getattr(params, k) for k in (
        "n", "temperature", "top_k", "max_new_units")}, "prompt_batch": bs,
        "lm_batch": lm.cfg.batch_size}
    conts: list[list[int]] = []
    with Clock() as c:
        for b in range(0, len(units), bs):
            for cs in lm.sample(units[b:b + bs], params):
                conts.extend(cs)
    n_units = sum(len(u) for u in conts)
    out["sample"] = {**rates(len(conts), c), "units": n_units}
    ctx = np.mean([len(u) for u in units]) + np.mean([len(u) for u in conts]) / 2
    flop = flops_per_unit(lm.model, ctx) * n_units
    achieved = flop / c.wall / 1e9  # on `threads` cores, like the matmul below
    peak = matmul_gflops(threads)
    out["roofline"] = {"lm_gflops": round(achieved, 2), "matmul_gflops": round(peak, 1),
                       "ratio": round(achieved / peak, 3)}

    with Clock() as c:
        waves = [voc.decode(u) for u in conts]
    out["vocode"] = rates(len(conts), c)
    with Clock() as c:
        texts = asr.transcribe(waves, voc.sample_rate)
    out["asr"] = rates(len(waves), c)
    prompt_text = {i: r.transcript or r.reference_text or "" for i, r in enumerate(rows)}
    n = params.n
    with Clock() as c:
        for k, t in enumerate(texts):
            jd.score(prompt_text[k // n], t)
    out["judge"] = rates(len(texts), c)

    ver = registry.ensure_baseline(rt)
    transcribe.transcribe(rt, sample_ids=[])  # the prompts' own transcripts: once per store
    with Clock() as c:
        generate.generate(rt, ver.id, prompt_ids=[r.id for r in rows], seed=12345)
        judged = judge.judge(rt, version=ver.id)
    out["end_to_end"] = rates(len(conts), c)
    out["end_to_end"]["judge_result"] = {k: v for k, v in judged.items()
                                         if isinstance(v, int | float)}
    return out


def table(res: dict) -> str:
    lines = [f"{'stage':<12} {'n':>6} {'wall s':>8} {'cpu s':>8} {'/s wall':>9} {'/s cpu':>9}"]
    for k in ("sample", "vocode", "asr", "judge", "end_to_end"):
        r = res[k]
        lines.append(f"{k:<12} {r['n']:>6} {r['wall_s']:>8.2f} {r['cpu_s']:>8.2f} "
                     f"{r['per_s_wall']:>9.2f} {r['per_s_cpu']:>9.2f}")
    rf = res["roofline"]
    lines.append(f"LM sampling {rf['lm_gflops']:.2f} GFLOP/s of {rf['matmul_gflops']:.1f} "
                 f"(a {2048}x{2048} matmul, {res['threads']} threads)")
    lines.append(f"roofline: {rf['ratio']:.2f}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", required=True, help="data dir whose bundle/ is the built world")
    ap.add_argument("--prompts", type=int, default=16, help="training prompts to continue")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "throughput.json"))
    a = ap.parse_args()
    import torch

    from backend import prompts
    from backend.config import load_settings
    from backend.runtime import Runtime
    from backend.world import read_manifest

    torch.set_num_threads(a.threads)
    rt = Runtime(load_settings(world="mini", data_dir=a.data_dir))
    prompts.import_bundle_prompts(rt)
    res = measure(rt, a.prompts, a.threads)
    res["threads"] = a.threads
    man = read_manifest(rt.settings.bundle_dir) or {}
    res["world"] = {k: man.get(k) for k in ("preset", "seed", "code_hash")}
    res["world"]["units_digest"] = man.get("components", {}).get("tokenizer", {}).get(
        "units_digest")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(table(res))


if __name__ == "__main__":
    main()
