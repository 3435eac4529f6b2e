"""Mini ASR: a small CTC recognizer over characters (conv front end + 2-layer BiGRU).

Trained on *vocoded* corpus speech (units -> mini vocoder), because that is what it has to read
in the loop: continuations exist only as units. Greedy CTC decoding, batched; each decoded word
that is not in the world's lexicon is snapped to its closest lexicon word when it is close enough
(a crude stand-in for Whisper's language model, and why the judge sees mostly real words).
Bundle dir: `model.pt` (state dict), `mean.npy`, `std.npy`, `lexicon.txt`, `config.json`.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from models.mini import audio

CHARS = "_ abcdefghijklmnopqrstuvwxyz'"  # index 0 = CTC blank


def text_to_ids(text: str) -> list[int]:
    text = " ".join("".join(c for c in text.lower() if c in CHARS[1:]).split())
    return [CHARS.index(c) for c in text]


class CTCNet(nn.Module):
    """Convs (the second with stride 2: the GRU runs at 25 Hz, the slow part on CPU) + BiGRU;
    each 25 Hz step emits two CTC positions, so the output is back at 50 Hz (espeak speaks up to
    ~16 characters/s, too close to 25 Hz for CTC's blanks between repeated letters)."""

    def __init__(self, n_in: int = audio.N_MELS, conv: int = 192, hidden: int = 160,
                 layers: int = 1):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv1d(n_in, conv, 5, padding=2), nn.GELU(),
            nn.Conv1d(conv, conv, 5, stride=2, padding=2), nn.GELU(),
            nn.Conv1d(conv, conv, 3, padding=1), nn.GELU(),
        )
        self.norm = nn.LayerNorm(conv)
        self.rnn = nn.GRU(conv, hidden, num_layers=layers, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * hidden, 2 * len(CHARS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, frames, n_mels) -> log-probs (batch, 2 * ceil(frames / 2), chars)."""
        h = self.norm(self.conv(x.transpose(1, 2)).transpose(1, 2))
        h, _ = self.rnn(h)
        y = self.out(h)
        return y.reshape(y.shape[0], -1, len(CHARS)).log_softmax(-1)


def greedy(logp: torch.Tensor, lens: Sequence[int]) -> list[str]:
    best = logp.argmax(-1).numpy()
    out = []
    for row, n in zip(best, lens, strict=True):
        chars, prev = [], 0
        for c in row[:n]:
            if c != prev and c != 0:
                chars.append(CHARS[c])
            prev = c
        out.append(" ".join("".join(chars).split()))
    return out


def _pad(feats: list[np.ndarray]) -> tuple[torch.Tensor, list[int]]:
    lens = [len(f) for f in feats]
    x = torch.zeros(len(feats), max(lens), feats[0].shape[1])
    for i, f in enumerate(feats):
        x[i, : len(f)] = torch.from_numpy(f)
    return x, lens


class MiniASR:
    sample_rate = audio.SR

    def __init__(self, path: str | Path, batch_size: int = 16):
        self.path = Path(path)
        self.config = json.loads((self.path / "config.json").read_text())
        self.model = CTCNet(**self.config["net"])
        self.model.load_state_dict(torch.load(self.path / "model.pt", weights_only=True))
        self.model.eval()
        self.mean = np.load(self.path / "mean.npy")
        self.std = np.load(self.path / "std.npy")
        self.lexicon = (self.path / "lexicon.txt").read_text().split()
        self._lex = set(self.lexicon)
        self._snap_cache: dict[str, str] = {}
        self.batch_size = batch_size

    def _snap(self, word: str) -> str:
        if word in self._lex:
            return word
        if word not in self._snap_cache:
            m = difflib.get_close_matches(word, self.lexicon, n=1, cutoff=0.75)
            self._snap_cache[word] = m[0] if m else word
        return self._snap_cache[word]

    def snap(self, text: str) -> str:
        return " ".join(self._snap(w) for w in text.split())

    def features(self, wave: np.ndarray, sample_rate: int) -> np.ndarray:
        f = audio.log_mel(audio.to_16k_mono(wave, sample_rate))
        return ((f - self.mean) / self.std).astype(np.float32)

    def transcribe_features(self, feats: list[np.ndarray]) -> list[str]:
        out: list[str] = [""] * len(feats)
        order = sorted(range(len(feats)), key=lambda i: len(feats[i]))
        with torch.inference_mode():
            for s in range(0, len(order), self.batch_size):
                idx = order[s: s + self.batch_size]
                x, lens = _pad([feats[i] for i in idx])
                for i, t in zip(idx, greedy(self.model(x), lens), strict=True):
                    out[i] = self.snap(t)
        return out

    def transcribe(self, waves: Sequence[np.ndarray], sample_rate: int) -> list[str]:
        if not len(waves):
            return []
        feats = [self.features(w, sample_rate) for w in waves]
        # A near-silent or empty wave gives an empty transcript, never an error.
        return self.transcribe_features([f if len(f) else np.zeros((1, audio.N_MELS), np.float32)
                                         for f in feats])


def wer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Corpus word error rate (edit distance over words / reference words)."""
    errs = n = 0
    for r, h in zip(refs, hyps, strict=True):
        rw, hw = text_to_words(r), text_to_words(h)
        d = list(range(len(hw) + 1))
        for i in range(1, len(rw) + 1):
            prev, d[0] = d[0], i
            for j in range(1, len(hw) + 1):
                cur = min(d[j] + 1, d[j - 1] + 1, prev + (rw[i - 1] != hw[j - 1]))
                prev, d[j] = d[j], cur
        errs += d[len(hw)]
        n += len(rw)
    return errs / max(1, n)


def text_to_words(text: str) -> list[str]:
    return "".join(CHARS[i] for i in text_to_ids(text)).split()


def train(feats: list[np.ndarray], texts: list[str], out_dir: Path, lexicon: list[str],
          steps: int, seed: int, batch_size: int = 24, lr: float = 5e-3, conv: int = 192,
          hidden: int = 160,
          progress: Callable[[float], None] | None = None) -> MiniASR:
    """Train with CTC on (log-mel, text) pairs; time grows linearly with `steps`."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    allf = np.concatenate(feats)
    mean, std = allf.mean(0), allf.std(0) + 1e-3
    feats = [((f - mean) / std).astype(np.float32) for f in feats]
    targets = [torch.tensor(text_to_ids(t)) for t in texts]
    net_cfg = {"conv": conv, "hidden": hidden, "layers": 1}
    model = CTCNet(**net_cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    ctc = nn.CTCLoss(zero_infinity=True)
    # Length-bucketed batches: sort by length, cut into batches, shuffle the batch order.
    order = np.argsort([len(f) for f in feats], kind="stable")
    batches = [order[i: i + batch_size] for i in range(0, len(order), batch_size)]
    model.train()
    step = 0
    while step < steps:
        for b in rng.permutation(len(batches)):
            idx = batches[b]
            x, lens = _pad([feats[i] for i in idx])
            # SpecAugment-lite: random time and frequency masks make it robust to LM samples.
            if rng.random() < 0.5:
                f0 = int(rng.integers(0, audio.N_MELS - 10))
                x[:, :, f0: f0 + int(rng.integers(1, 10))] = 0.0
            tgt = [targets[i] for i in idx]
            logp = model(x).transpose(0, 1)
            loss = ctc(logp, torch.cat(tgt), torch.tensor(lens),
                       torch.tensor([len(t) for t in tgt]))
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            sched.step()
            step += 1
            if progress and step % 10 == 0:
                progress(step / steps)
            if step >= steps:
                break
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out_dir / "model.pt")
    np.save(out_dir / "mean.npy", mean.astype(np.float32))
    np.save(out_dir / "std.npy", std.astype(np.float32))
    (out_dir / "lexicon.txt").write_text("\n".join(sorted(lexicon)) + "\n")
    (out_dir / "config.json").write_text(json.dumps(
        {"kind": "mini", "net": net_cfg, "chars": CHARS, "steps": steps, "seed": seed}, indent=2))
    return MiniASR(out_dir)
