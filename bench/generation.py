"""Unit-LM serving costs on a small random Llama (HFUnitLM, CPU).

1. Sampling: 8 prompts x 8 continuations x 100 units, batched (one `generate` over all 64 rows,
   KV cache, left padding) vs one row at a time (batch_size=1). Per-row seeding makes both give
   the same units, which the bench checks.
2. Memory of serving 4 LoRA adapters (r=32 on q/k/v/o) on one base vs 4 merged copies. Measured
   two ways, each mode in its own subprocess: tensor bytes of the parameters and buffers held
   (storage de-duplicated; exact, model memory only; this is the ratio line) and the growth of
   the process RSS from after the imports to holding the models (includes allocator slack and
   transient load buffers, so it is noisier).

Usage: .venv/bin/python -m bench.generation [--hidden 256 --layers 4 --threads 1]
The last line is `speed-up: N.NNx`; the line before it the memory ratio.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

K, OFFSET, N_ADAPTERS = 500, 3, 4


def build(root: Path, hidden: int, layers: int) -> tuple[Path, list[Path]]:
    """A random unit Llama (K=500) and N_ADAPTERS random LoRA adapters, saved to disk."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    lm_dir = root / "lm"
    LlamaForCausalLM(LlamaConfig(
        vocab_size=OFFSET + K, hidden_size=hidden, intermediate_size=hidden * 2,
        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=4,
        max_position_embeddings=512, pad_token_id=0, bos_token_id=1, eos_token_id=2,
    )).save_pretrained(lm_dir)
    (lm_dir / "studio_unit_lm.json").write_text(json.dumps(
        {"n_units": K, "unit_offset": OFFSET, "bos_token_id": 1, "eos_token_id": None,
         "pad_token_id": 0}))
    adapters = []
    for i in range(N_ADAPTERS):
        peft = get_peft_model(AutoModelForCausalLM.from_pretrained(lm_dir), LoraConfig(
            r=32, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
            init_lora_weights=False))
        peft.save_pretrained(root / f"adapter{i}")
        adapters.append(root / f"adapter{i}")
    return lm_dir, adapters


def tensor_bytes(*modules) -> int:
    seen, total = set(), 0
    for m in modules:
        for t in [*m.parameters(), *m.buffers()]:
            ptr = t.untyped_storage().data_ptr()
            if ptr not in seen:
                seen.add(ptr)
                total += t.untyped_storage().nbytes()
    return total


def memory_mode(mode: str, lm_dir: Path, adapters: list[Path]) -> dict:
    """Run in a subprocess: hold the models of one serving mode, report bytes and peak RSS."""
    import gc

    import psutil
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from models.config import UnitLMConfig
    from models.unit_lm import HFUnitLM

    torch.set_num_threads(1)
    proc = psutil.Process()
    gc.collect()
    rss0 = proc.memory_info().rss
    if mode == "adapters":
        lm = HFUnitLM(UnitLMConfig(kind="hf", path=str(lm_dir), device="cpu"))
        for i, a in enumerate(adapters):
            lm.load_adapter(f"a{i}", a)
        held = [lm.model]
    else:
        held = [PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(lm_dir), str(a))
                .merge_and_unload() for a in adapters]
    gc.collect()
    return {"tensor_bytes": tensor_bytes(*held), "rss_growth": proc.memory_info().rss - rss0}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--new-units", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--memory-mode", help=argparse.SUPPRESS)
    ap.add_argument("--root", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_mode:
        root = Path(args.root)
        adapters = [root / f"adapter{i}" for i in range(N_ADAPTERS)]
        print(json.dumps(memory_mode(args.memory_mode, root / "lm", adapters)))
        return

    import random

    import torch
    from transformers.utils import logging as hf_logging

    from models.config import UnitLMConfig
    from models.interfaces import SamplingParams
    from models.unit_lm import HFUnitLM

    hf_logging.disable_progress_bar()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        lm_dir, _ = build(root, args.hidden, args.layers)
        rng = random.Random(0)
        prompts = [[rng.randrange(K) for _ in range(75)] for _ in range(args.prompts)]  # ~3 s
        params = SamplingParams(n=args.n, temperature=0.8, top_k=25, max_new_units=args.new_units)
        rows = args.prompts * args.n
        batched_lm = HFUnitLM(UnitLMConfig(kind="hf", path=str(lm_dir), batch_size=rows,
                                           device="cpu"))
        single_lm = HFUnitLM(UnitLMConfig(kind="hf", path=str(lm_dir), batch_size=1,
                                          device="cpu"))
        n_params = sum(p.numel() for p in batched_lm.model.parameters())
        print(f"model: Llama {args.layers} layers, hidden {args.hidden}, {n_params / 1e6:.1f}M "
              f"params; {args.prompts} prompts x {args.n} continuations x {args.new_units} units; "
              f"torch threads {args.threads}")
        batched_lm.sample(prompts[:1], SamplingParams(n=1, max_new_units=2))  # warm-up
        t = time.perf_counter()
        batched = batched_lm.sample(prompts, params)
        t_batched = time.perf_counter() - t
        t = time.perf_counter()
        single = single_lm.sample(prompts, params)
        t_single = time.perf_counter() - t
        print(f"batched ({rows} rows per generate): {t_batched:.2f} s")
        print(f"one at a time ({rows} generate calls): {t_single:.2f} s")
        print(f"identical outputs: {batched == single}")

        mem = {}
        for mode in ("adapters", "merged"):
            out = subprocess.run(
                [sys.executable, __file__, "--memory-mode", mode, "--root", str(root)],
                capture_output=True, text=True, check=True,
            ).stdout.strip().splitlines()[-1]
            mem[mode] = json.loads(out)
        a, m = mem["adapters"], mem["merged"]
        print(f"tensor bytes: base + {N_ADAPTERS} adapters {a['tensor_bytes'] / 2**20:.1f} MiB, "
              f"{N_ADAPTERS} merged copies {m['tensor_bytes'] / 2**20:.1f} MiB")
        print(f"RSS growth while holding them: base + {N_ADAPTERS} adapters "
              f"{a['rss_growth'] / 2**20:.1f} MiB, {N_ADAPTERS} merged copies "
              f"{m['rss_growth'] / 2**20:.1f} MiB")
        print(f"memory ratio ({N_ADAPTERS} merged copies / base + {N_ADAPTERS} adapters, "
              f"tensor bytes): {m['tensor_bytes'] / a['tensor_bytes']:.2f}x")
        print(f"speed-up: {t_single / t_batched:.2f}x")


if __name__ == "__main__":
    main()
