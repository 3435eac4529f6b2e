"""A tiny, fully offline stand-in world for the loop tests (used until / besides the mini bundle).

Everything satisfies the protocols in `models.interfaces` and mirrors the `HFUnitLM` contract
(`.model`, `.hf_tokenizer`, `.units_to_text`, `.path`, `load_adapter`, `sample(adapter=)`,
`logprob(adapter=)`):

- audio is a lossless "unit code": each unit is a block of `BLOCK` samples at level (u+1)/(K+1),
  so the tokenizer, vocoder and ASR round-trip exactly;
- the ASR writes unit u as the word `w{u}`;
- the judge scores a continuation by its share of "good" words (units < K/2): 1 + 4 * share,
  and fails (value None) on an empty continuation. DPO on its pairs has a clear, learnable signal.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from models.interfaces import LogProb, SamplingParams, Score, Units

K = 16
OFFSET = 4
BLOCK = 4
SR = 16000
SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]


def build_tiny_lm_dir(path: Path, hidden: int = 64, layers: int = 2, seed: int = 0) -> Path:
    """Save a random Llama unit LM + tokenizer + studio_unit_lm.json (the HF unit-LM layout)."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    vocab = {t: i for i, t in enumerate(SPECIALS)}
    vocab.update({f"<u{k}>": OFFSET + k for k in range(K)})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex(r"<[^>]+>"), "isolated")]
    )
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
        unk_token="<unk>",
    )
    hf_tok.save_pretrained(path)
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(vocab), hidden_size=hidden, intermediate_size=hidden * 2,
        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=4,
        max_position_embeddings=512, pad_token_id=0, bos_token_id=1, eos_token_id=2,
        tie_word_embeddings=False,
    )
    LlamaForCausalLM(cfg).save_pretrained(path)
    (path / "studio_unit_lm.json").write_text(
        json.dumps({"n_units": K, "unit_offset": OFFSET, "bos_id": 1, "eos_id": 2, "pad_id": 0})
    )
    return path


class TinyUnitLM:
    """An HF-backed unit LM with the HFUnitLM contract, kept small."""

    def __init__(self, path: Path):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.path = Path(path)
        meta = json.loads((self.path / "studio_unit_lm.json").read_text())
        self.n_units, self.offset = meta["n_units"], meta["unit_offset"]
        self.vocab_size = self.n_units
        self.hf_tokenizer = AutoTokenizer.from_pretrained(self.path)
        self.model = AutoModelForCausalLM.from_pretrained(self.path).eval()
        self.adapters: dict[str, str] = {}
        self._lock = threading.RLock()  # the UnitLM contract: safe to share between threads

    def units_to_text(self, units: Sequence[int]) -> str:
        return " ".join(f"<u{int(u)}>" for u in units)

    def load_adapter(self, name: str, path: str | Path) -> None:
        from peft import PeftModel

        with self._lock:
            self._load_adapter(name, path, PeftModel)

    def _load_adapter(self, name, path, PeftModel) -> None:
        if name in self.adapters:
            return
        if isinstance(self.model, PeftModel):
            self.model.load_adapter(str(path), adapter_name=name)
        else:
            self.model = PeftModel.from_pretrained(self.model, str(path), adapter_name=name)
        self.model.eval()
        self.adapters[name] = str(path)

    def _ctx(self, adapter: str | None):
        from contextlib import nullcontext

        from peft import PeftModel

        if isinstance(self.model, PeftModel):
            if adapter is None:
                return self.model.disable_adapter()
            self.model.set_adapter(adapter)
        elif adapter is not None:
            raise KeyError(f"adapter {adapter!r} not loaded")
        return nullcontext()

    def _ids(self, units: Units) -> list[int]:
        return [1] + [self.offset + int(u) for u in units]

    @torch.no_grad()
    def sample(self, prompts, params: SamplingParams, adapter=None):
        with self._lock:  # the global torch seed and the active adapter are shared state
            return self._sample(prompts, params, adapter)

    def _sample(self, prompts, params: SamplingParams, adapter=None):
        torch.manual_seed(params.seed)
        seqs = [self._ids(p) for p in prompts]
        width = max(len(s) for s in seqs)
        ids = torch.tensor([[0] * (width - len(s)) + s for s in seqs])
        mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs])
        with self._ctx(adapter):
            out = self.model.generate(
                input_ids=ids, attention_mask=mask, do_sample=True,
                temperature=params.temperature, top_k=params.top_k, top_p=params.top_p,
                max_new_tokens=params.max_new_units, num_return_sequences=params.n,
                pad_token_id=0, eos_token_id=2,
            )
        return [[self.ids_to_units(out[i * params.n + j, width:].tolist())
                 for j in range(params.n)] for i in range(len(prompts))]

    @property
    def non_unit_ids(self) -> list[int]:
        units = range(self.offset, self.offset + self.n_units)
        return [i for i in range(self.model.config.vocab_size) if i not in units and i != 2]

    def ids_to_units(self, row) -> Units:
        units: Units = []
        for t in row:
            if t == 2:
                break
            if self.offset <= t < self.offset + self.n_units:
                units.append(t - self.offset)
        return units

    @torch.no_grad()
    def logits(self, units: Units, adapter=None) -> torch.Tensor:
        with self._lock, self._ctx(adapter):
            return self.model(input_ids=torch.tensor([self._ids(units)])).logits[0]

    @torch.no_grad()
    def logprob(self, sequences, adapter=None):
        out = []
        for s in sequences:
            lp = torch.log_softmax(self.logits(s, adapter), -1)
            ids = self._ids(s)
            per = [float(lp[i - 1, ids[i]]) for i in range(2, len(ids))]
            out.append(LogProb(sum(per), per))
        return out


def units_to_wave(units: Units) -> np.ndarray:
    levels = np.repeat((np.asarray(units, dtype=np.float32) + 1) / (K + 1), BLOCK)
    return levels.astype(np.float32) if len(units) else np.zeros(BLOCK, np.float32)


def wave_to_units(wave: np.ndarray) -> Units:
    w = np.asarray(wave, dtype=np.float32)[: len(wave) // BLOCK * BLOCK].reshape(-1, BLOCK)
    units = np.rint(w.mean(1) * (K + 1) - 1).astype(int)
    return [int(u) for u in units if 0 <= u < K]


class TinyTokenizer:
    sample_rate = SR
    vocab_size = K

    def encode(self, wave, sample_rate, deduplicate=True):
        from models.interfaces import dedup

        u = wave_to_units(wave)
        return dedup(u) if deduplicate else u


class TinyVocoder:
    sample_rate = SR

    def decode(self, units):
        return units_to_wave(units)


class TinyASR:
    def transcribe(self, waves, sample_rate):
        return [" ".join(f"w{u}" for u in wave_to_units(w)) for w in waves]


class TinyJudge:
    prompt_version = "v1"

    def __init__(self, name: str = "tiny-judge"):
        self.name = name
        self.calls = 0

    def score(self, prompt_text, continuation_text):
        self.calls += 1
        words = re.findall(r"w(\d+)", continuation_text or "")
        if not words:
            return Score(None, judge=self.name, prompt_version=self.prompt_version,
                         error="empty continuation", raw="")
        good = sum(int(w) < K // 2 for w in words) / len(words)
        value = round(1 + 4 * good, 3)
        return Score(value, rationale=f"good share {good:.2f}", raw=f"SCORE: {value}",
                     judge=self.name, prompt_version=self.prompt_version,
                     cost={"calls": 1})


class FlakyJudge(TinyJudge):
    """Fails its first `fail_first` calls, then behaves like TinyJudge."""

    def __init__(self, name="flaky-judge", fail_first=3):
        super().__init__(name)
        self.fail_first = fail_first

    def score(self, prompt_text, continuation_text):
        if self.calls < self.fail_first:
            self.calls += 1
            return Score(None, judge=self.name, prompt_version=self.prompt_version,
                         error="timeout", raw="")
        return super().score(prompt_text, continuation_text)


def tiny_runtime_class():
    """A Runtime whose components come from its cache only (no models.factory needed)."""
    from backend.runtime import Runtime

    class TinyRuntime(Runtime):
        tokenizer = property(lambda self: self._components["tokenizer"])
        unit_lm = property(lambda self: self._components["unit_lm"])
        vocoder = property(lambda self: self._components["vocoder"])
        asr = property(lambda self: self._components["asr"])

        def judge(self, name=None):
            name = name or self.settings.models.judges[0].name
            if f"judge:{name}" not in self._components:
                raise ValueError(f"unknown judge {name!r}")
            return self._components[f"judge:{name}"]

    return TinyRuntime


def install(rt, lm_dir: Path, judges: Sequence | None = None) -> None:
    """Put the stand-ins into a Runtime's component cache (what models.factory would build)."""
    rt._components["tokenizer"] = TinyTokenizer()
    rt._components["unit_lm"] = TinyUnitLM(lm_dir)
    rt._components["vocoder"] = TinyVocoder()
    rt._components["asr"] = TinyASR()
    for j in judges or [TinyJudge()]:
        rt._components[f"judge:{j.name}"] = j


def write_prompt_bundle(bundle: Path, n_train: int = 8, n_dev: int = 4, seed: int = 0) -> Path:
    """A bundle/prompts/prompts.jsonl + wavs in the tiny code."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    d = bundle / "prompts"
    (d / "wav").mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n_train + n_dev):
        units = [int(u) for u in rng.integers(0, K, size=6)]
        from models.interfaces import dedup

        units = dedup(units)
        sf.write(d / "wav" / f"p{i}.wav", units_to_wave(units), SR, subtype="FLOAT")
        lines.append(json.dumps({
            "id": f"p{i}", "audio": f"wav/p{i}.wav", "text": " ".join(f"w{u}" for u in units),
            "split": "train" if i < n_train else "dev",
        }))
    (d / "prompts.jsonl").write_text("\n".join(lines) + "\n")
    return bundle
