"""DPO step time and peak memory for three ways of getting the reference model:

- `adapter_off`: `peft_config=` on the parent; the reference is the same weights with the LoRA
  adapter disabled (what backend.training does; no second copy);
- `ref_copy`: a LoRA-wrapped policy plus a separate full reference copy (`ref_model=`);
- `precompute`: adapter off, and TRL's `precompute_ref_log_probs=True` (one reference pass over
  the data before training, no reference forward per step).

Each mode runs in its own subprocess so peak RSS (ru_maxrss) is per mode. CPU, 2 threads.
Usage: .venv/bin/python -m bench.dpo [--hidden 256 --layers 4 --steps 12 --pairs 64]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODES = ("adapter_off", "ref_copy", "precompute")


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_mode(mode: str, lm_dir: str, steps: int, pairs: int, batch: int, length: int) -> dict:
    import torch

    torch.set_num_threads(2)
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from tests.loop import tiny

    tok = AutoTokenizer.from_pretrained(lm_dir)
    rng = random.Random(0)

    def txt(units):
        return " ".join(f"<u{u}>" for u in units)

    data = [{"prompt": "<s> " + txt(rng.choices(range(tiny.K), k=20)),
             "chosen": " " + txt(rng.choices(range(tiny.K // 2), k=length)),
             "rejected": " " + txt(rng.choices(range(tiny.K // 2, tiny.K), k=length))}
            for _ in range(pairs)]
    model = AutoModelForCausalLM.from_pretrained(lm_dir, dtype=torch.float32)
    before = rss_mb()
    lora = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                      task_type="CAUSAL_LM")
    kw: dict = {}
    if mode == "ref_copy":
        kw["ref_model"] = AutoModelForCausalLM.from_pretrained(lm_dir, dtype=torch.float32)
        model = get_peft_model(model, lora)
    else:
        kw["peft_config"] = lora
    with tempfile.TemporaryDirectory() as out:
        args = DPOConfig(
            output_dir=out, per_device_train_batch_size=batch, max_steps=steps,
            learning_rate=1e-3, use_cpu=True, bf16=False, gradient_checkpointing=False,
            report_to="none", save_strategy="no", logging_steps=steps, disable_tqdm=True,
            precompute_ref_log_probs=(mode == "precompute"), seed=0,
        )
        t0 = time.perf_counter()
        trainer = DPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(data),
                             processing_class=tok, **kw)
        t1 = time.perf_counter()
        trainer.train()
        t2 = time.perf_counter()
    return {"mode": mode, "setup_s": t1 - t0, "train_s": t2 - t1, "step_s": (t2 - t1) / steps,
            "peak_rss_mb": rss_mb(), "rss_before_trainer_mb": before,
            "params_m": sum(p.numel() for p in trainer.model.parameters()) / 1e6}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--pairs", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--length", type=int, default=100, help="completion units")
    ap.add_argument("--mode", choices=MODES)
    ap.add_argument("--lm-dir")
    a = ap.parse_args()
    if a.mode:  # child
        print("RESULT " + json.dumps(run_mode(a.mode, a.lm_dir, a.steps, a.pairs, a.batch,
                                              a.length)))
        return
    from tests.loop import tiny

    with tempfile.TemporaryDirectory() as d:
        lm = tiny.build_tiny_lm_dir(Path(d) / "lm", hidden=a.hidden, layers=a.layers)
        results = {}
        for mode in MODES:
            out = subprocess.run(
                [sys.executable, __file__, "--mode", mode, "--lm-dir", str(lm),
                 "--steps", str(a.steps), "--pairs", str(a.pairs), "--batch", str(a.batch),
                 "--length", str(a.length)],
                capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
            line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
            if not line:
                raise SystemExit(f"{mode} failed:\n{out.stderr[-3000:]}")
            results[mode] = json.loads(line[0][7:])
    ref = results["adapter_off"]
    print(f"tiny Llama hidden={a.hidden} layers={a.layers}, {a.pairs} pairs, batch {a.batch}, "
          f"{a.steps} steps, completions {a.length} units, CPU 2 threads")
    print(f"{'mode':<12} {'step s':>8} {'setup s':>8} {'peak RSS MB':>12} "
          f"{'step ratio':>11} {'RSS ratio':>10}")
    for m, r in results.items():
        print(f"{m:<12} {r['step_s']:>8.3f} {r['setup_s']:>8.2f} {r['peak_rss_mb']:>12.0f} "
              f"{r['step_s'] / ref['step_s']:>11.2f} "
              f"{r['peak_rss_mb'] / ref['peak_rss_mb']:>10.2f}")


if __name__ == "__main__":
    main()
