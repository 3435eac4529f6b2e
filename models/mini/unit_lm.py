"""Pre-training the mini unit LM: a small Llama over de-duplicated unit sequences.

Saved exactly as the real-weights loader (`models.unit_lm.HFUnitLM`) expects: a
`LlamaForCausalLM.save_pretrained` directory, a `tokenizers` WordLevel `tokenizer.json`
(`<u{k}>` at id `unit_offset + k`, specials first) and `studio_unit_lm.json`. This module only
trains and saves, plus the two small helpers (log-prob, sampling) the bootstrap uses to measure
its quality figures; serving is HFUnitLM's job.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]
PAD, BOS, EOS = 0, 1, 2
OFFSET = len(SPECIALS)


def save_tokenizer(path: Path, k: int) -> None:
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIALS)}
    vocab.update({f"<u{u}>": OFFSET + u for u in range(k)})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    # Splitting on <...> as well as whitespace avoids the prompt/completion token merge (STACK.md).
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex(r"<[^>]+>"), "isolated")]
    )
    PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
        unk_token="<unk>",
    ).save_pretrained(path)


def make_model(k: int, hidden: int, layers: int, heads: int, max_len: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=OFFSET + k, hidden_size=hidden, intermediate_size=hidden * 3,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
        max_position_embeddings=max_len, pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS,
        tie_word_embeddings=True, rope_theta=10000.0,
    )
    return LlamaForCausalLM(cfg)


def _batch(seqs: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids (BOS + units + EOS, right-padded) and labels (-100 on padding)."""
    rows = [[BOS, *(OFFSET + u for u in s), EOS] for s in seqs]
    n = max(len(r) for r in rows)
    ids = torch.full((len(rows), n), PAD)
    labels = torch.full((len(rows), n), -100)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        labels[i, : len(r)] = torch.tensor(r)
    return ids, labels


def train(seqs: list[list[int]], k: int, out_dir: Path, steps: int, seed: int, hidden: int = 256,
          layers: int = 4, heads: int = 4, batch_size: int = 16, lr: float = 2e-3,
          max_len: int = 1024, progress: Callable[[float, float], None] | None = None) -> dict:
    """Train for a fixed number of steps (not wall time: a seed must give the same model)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = make_model(k, hidden, layers, heads, max_len)
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=0.05)
    warm = max(1, steps // 20)

    def lr_at(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, steps - warm)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    seqs = [s[: max_len - 2] for s in seqs if s]
    lens = np.array([len(s) for s in seqs])
    order = np.argsort(lens, kind="stable")
    batches = [order[i: i + batch_size] for i in range(0, len(order), batch_size)]
    model.train()
    losses: list[float] = []
    step = 0
    while step < steps:
        for b in rng.permutation(len(batches)):
            ids, labels = _batch([seqs[i] for i in batches[b]])
            loss = model(input_ids=ids, attention_mask=(ids != PAD).long(), labels=labels).loss
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            losses.append(float(loss))
            step += 1
            if progress and step % 10 == 0:
                progress(step / steps, float(np.mean(losses[-50:])))
            if step >= steps:
                break
    model.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    save_tokenizer(out_dir, k)
    (out_dir / "studio_unit_lm.json").write_text(json.dumps({
        "n_units": k, "unit_offset": OFFSET, "bos_token_id": BOS, "eos_token_id": EOS,
        "pad_token_id": PAD, "bos_id": BOS, "eos_id": EOS, "pad_id": PAD,
    }, indent=2))
    return {"params": n_params, "steps": steps, "final_loss": float(np.mean(losses[-50:])),
            "hidden": hidden, "layers": layers, "train_sequences": len(seqs)}


def load(path: Path):
    from transformers import LlamaForCausalLM

    return LlamaForCausalLM.from_pretrained(path).eval()


@torch.inference_mode()
def logprobs(model, seqs: Sequence[Sequence[int]], batch_size: int = 32) -> list[float]:
    """Summed log-probability of each unit sequence given BOS (EOS not scored)."""
    out: list[float] = [0.0] * len(seqs)
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    for s in range(0, len(order), batch_size):
        idx = order[s: s + batch_size]
        ids, labels = _batch([seqs[i] for i in idx])
        labels[labels == EOS] = -100
        logits = model(input_ids=ids, attention_mask=(ids != PAD).long()).logits[:, :-1]
        tgt = labels[:, 1:]
        lp = logits.log_softmax(-1).gather(-1, tgt.clamp_min(0).unsqueeze(-1)).squeeze(-1)
        tot = (lp * (tgt != -100)).sum(1)
        for i, v in zip(idx, tot.tolist(), strict=True):
            out[i] = v
    return out


@torch.inference_mode()
def sample(model, prompts: Sequence[Sequence[int]], n: int, max_new: int, temperature: float,
           top_k: int, seed: int, k: int) -> list[list[list[int]]]:
    """`n` continuations (units only, stopped at EOS) per prompt; left-padded batch."""
    torch.manual_seed(seed)
    rows = [[BOS, *(OFFSET + u for u in p)] for p in prompts for _ in range(n)]
    m = max(len(r) for r in rows)
    ids = torch.full((len(rows), m), PAD)
    mask = torch.zeros((len(rows), m), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, m - len(r):] = torch.tensor(r)
        mask[i, m - len(r):] = 1
    gen = model.generate(input_ids=ids, attention_mask=mask, do_sample=True,
                         temperature=temperature, top_k=top_k, max_new_tokens=max_new,
                         pad_token_id=PAD, eos_token_id=EOS)[:, m:]
    out: list[list[list[int]]] = [[] for _ in prompts]
    for i, row in enumerate(gen.tolist()):
        units = []
        for t in row:
            if t in (EOS, PAD):
                break
            if OFFSET <= t < OFFSET + k:
                units.append(t - OFFSET)
        out[i // n].append(units)
    return out
