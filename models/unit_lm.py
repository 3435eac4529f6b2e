"""`HFUnitLM`: any transformers causal LM over speech units (TWIST is Llama/OPT), plus LoRA.

Unit u is token id `unit_offset + u`. A saved LM carries its own unit layout: TWIST checkpoints as
`offset` in config.json, the mini world's LM as `studio_unit_lm.json` next to the weights
({"n_units", "unit_offset", "bos_token_id", "eos_token_id", "pad_token_id"}). The config section
fills in what the checkpoint does not state and may not contradict what it does.

Sampling is batched over prompts x n with the KV cache (`model.generate`), but every row draws its
randomness from its own generator seeded by (seed, prompt units, sample index) via the Gumbel-max
trick. So a continuation depends only on those three, never on which other prompts share its batch:
batched and one-at-a-time sampling give the same units, and the pipeline may batch as it likes.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import shutil
import tempfile
import threading
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path

import torch
from transformers import (
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
    PreTrainedTokenizerFast,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from models.config import META_FILE, UnitLMConfig
from models.device import ModelLoadError, require_path, resolve_device, resolve_dtype
from models.interfaces import LogProb, SamplingParams, Units

log = logging.getLogger(__name__)


def unit_token(u: int) -> str:
    return f"<u{int(u)}>"


def peft_name(name: str) -> str:
    """The name an adapter has inside peft, which makes it a module name: version names such
    as `TWIST-1.3B-r1` hold dots, which torch refuses there."""
    return "a" + hashlib.sha256(name.encode()).hexdigest()[:16]


def row_seed(seed: int, prompt: Sequence[int], index: int) -> int:
    """The seed of one continuation: a function of (seed, prompt units, sample index) only."""
    key = f"{seed}|{index}|{','.join(str(int(u)) for u in prompt)}".encode()
    return int(hashlib.sha256(key).hexdigest()[:15], 16)


class _AllowOnly(LogitsProcessor):
    """Masks every token that is neither a unit nor EOS, so samples are always valid units."""

    def __init__(self, allowed: torch.Tensor):
        self.allowed = allowed

    def __call__(self, input_ids, scores):
        return scores.masked_fill(~self.allowed.to(scores.device), float("-inf"))


class _RowGumbel(LogitsProcessor):
    """Turns greedy decoding into sampling: argmax(logits + Gumbel noise) ~ softmax(logits).
    Row r's noise comes from its own generator, which makes rows independent of the batch."""

    def __init__(self, seeds: Sequence[int]):
        self.gens = [torch.Generator().manual_seed(s) for s in seeds]

    def __call__(self, input_ids, scores):
        v = scores.shape[-1]
        u = torch.stack([torch.rand(v, generator=g, dtype=torch.float64) for g in self.gens])
        gumbel = -torch.log(-torch.log(u.clamp_min(1e-20)))
        return scores.float() + gumbel.to(device=scores.device, dtype=torch.float32)


def build_unit_tokenizer(vocab_size: int, unit_offset: int, n_units: int, bos: int | None,
                         eos: int | None, pad: int | None) -> PreTrainedTokenizerFast:
    """A WordLevel tokenizer with one token string per LM id (`<u{k}>` for units), split on
    `<...>` so that joined unit strings never merge (the TRL prompt/completion gotcha)."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers

    names = {i: f"<t{i}>" for i in range(vocab_size)}
    names.update({unit_offset + k: unit_token(k) for k in range(n_units)})
    specials = {}
    for key, tid, text in (("bos_token", bos, "<s>"), ("eos_token", eos, "</s>"),
                           ("pad_token", pad, "<pad>")):
        if tid is None or not 0 <= tid < vocab_size:
            continue
        if names[tid].startswith("<t"):  # not yet named (a unit or an earlier special)
            names[tid] = text
        specials[key] = names[tid]
    free = [i for i, n in names.items() if n.startswith("<t")]
    if free:
        names[free[0]] = "<unk>"
    tok = Tokenizer(models.WordLevel({n: i for i, n in names.items()}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex(r"<[^>]+>"), "isolated")]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>" if free else None, **specials
    )


class HFUnitLM:
    """A unit LM on a transformers causal LM, with several LoRA adapters switchable per call.

    `adapter=None` always means the base model with every adapter disabled (the baseline).
    """

    def __init__(self, cfg: UnitLMConfig):
        from transformers import AutoModelForCausalLM

        self.path = require_path(cfg.path, "unit LM directory", is_dir=True)
        if not (self.path / "config.json").is_file():
            raise ModelLoadError(f"unit LM: {self.path / 'config.json'} missing (expected an HF "
                                 "causal-LM directory saved with save_pretrained)")
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        self.dtype = resolve_dtype(cfg.dtype, self.device)
        try:
            model = AutoModelForCausalLM.from_pretrained(str(self.path), dtype=self.dtype)
        except Exception as e:  # noqa: BLE001 - re-raised with the file named
            raise ModelLoadError(
                f"unit LM: could not load a causal LM from {self.path}: {e}") from e
        self.model = model.to(self.device).eval()
        self._lock = threading.RLock()
        self.adapters: dict[str, str] = {}

        meta = self._read_meta()
        self.n_units, self.unit_offset, self.bos_token_id = self._layout(cfg, meta, model.config)
        eos = meta.get("eos_token_id", meta.get("eos_id", self._special(model.config.eos_token_id)))
        pad = meta.get("pad_token_id", meta.get("pad_id", self._special(model.config.pad_token_id)))
        self.eos_token_id = eos
        self.pad_token_id = pad if pad is not None else (eos if eos is not None else 0)
        self.lm_vocab = self.model.get_input_embeddings().num_embeddings
        if self.unit_offset + self.n_units > self.lm_vocab:
            raise ModelLoadError(
                f"unit LM {self.path}: units need ids {self.unit_offset}.."
                f"{self.unit_offset + self.n_units - 1} but the model's vocabulary has "
                f"{self.lm_vocab} tokens (config.json / {META_FILE}: n_units, unit_offset)")
        self.vocab_size = self.n_units
        self.max_positions = getattr(model.config, "max_position_embeddings", None)
        allowed = torch.zeros(self.lm_vocab, dtype=torch.bool)
        allowed[self.unit_offset:self.unit_offset + self.n_units] = True
        if self.eos_token_id is not None:
            allowed[self.eos_token_id] = True
        self._allowed = allowed
        self.hf_tokenizer = self._load_tokenizer()
        from models.training import linear_module_names

        self._linear_names = linear_module_names(self.model)

    # --- layout ----------------------------------------------------------------------------
    def _read_meta(self) -> dict:
        f = self.path / META_FILE
        if not f.is_file():
            return {}
        try:
            return json.loads(f.read_text())
        except ValueError as e:
            raise ModelLoadError(f"unit LM: {f} is not valid JSON: {e}") from e

    def _layout(self, cfg: UnitLMConfig, meta: dict, hf_config) -> tuple[int, int, int | None]:
        """(n_units, unit_offset, bos_token_id) as the checkpoint states them, else as
        configured. The checkpoint states them in `studio_unit_lm.json` or, for TWIST, as
        `offset` in config.json (TWIST feeds `offset + unit` and no BOS). A configured value
        that contradicts the checkpoint is an error, never silently overridden: a wrong
        offset shifts every unit onto another token."""
        stated = {k: meta[k] for k in ("n_units", "unit_offset") if k in meta}
        if "unit_offset" not in stated and getattr(hf_config, "offset", None) is not None:
            stated["unit_offset"] = hf_config.offset
        for key in ("bos_token_id", "bos_id"):
            if key in meta:
                stated["bos_token_id"] = meta[key]
        out = {}
        for name in ("n_units", "unit_offset", "bos_token_id"):
            mine = getattr(cfg, name)
            if name not in stated:
                out[name] = mine
                continue
            if name in cfg.model_fields_set and mine != stated[name]:
                raise ModelLoadError(
                    f"unit LM {self.path}: [models.unit_lm].{name} = {mine} but the checkpoint "
                    f"states {stated[name]} ({META_FILE} / config.json); remove the setting")
            out[name] = stated[name]
        if out["unit_offset"] is None:
            raise ModelLoadError(
                f"unit LM {self.path}: where unit 0 sits in the vocabulary is not stated: "
                f"config.json has no `offset` (TWIST checkpoints carry one) and there is no "
                f"{META_FILE}; set [models.unit_lm].unit_offset")
        bos = out["bos_token_id"]
        return int(out["n_units"]), int(out["unit_offset"]), None if bos is None else int(bos)

    def _special(self, tid):
        """A special id from the HF config, unless it collides with the unit range."""
        if isinstance(tid, list):
            tid = tid[0] if tid else None
        if tid is None or self.unit_offset <= tid < self.unit_offset + self.n_units:
            return None
        return int(tid)

    def _load_tokenizer(self) -> PreTrainedTokenizerFast:
        """The directory's tokenizer.json if it maps `<u{k}>` to the right ids, else one built
        from the layout (TWIST checkpoints ship none in that form)."""
        if (self.path / "tokenizer.json").is_file():
            tok = PreTrainedTokenizerFast.from_pretrained(str(self.path))
            last = self.n_units - 1
            if (tok.convert_tokens_to_ids(unit_token(0)) == self.unit_offset
                    and tok.convert_tokens_to_ids(unit_token(last)) == self.unit_offset + last):
                return tok
            log.warning("%s/tokenizer.json does not map <u0>.. to the unit ids; building one",
                        self.path)
        return build_unit_tokenizer(self.lm_vocab, self.unit_offset, self.n_units,
                                    self.bos_token_id, self.eos_token_id, self.pad_token_id)

    def units_to_text(self, units: Sequence[int]) -> str:
        return " ".join(unit_token(u) for u in units)

    def _ids(self, units: Sequence[int]) -> list[int]:
        for u in units:
            if not 0 <= int(u) < self.n_units:
                raise ValueError(f"unit {u} outside 0..{self.n_units - 1}")
        bos = [] if self.bos_token_id is None else [int(self.bos_token_id)]
        return bos + [self.unit_offset + int(u) for u in units]

    # --- adapters --------------------------------------------------------------------------
    def load_adapter(self, name: str, path: str | Path) -> None:
        """Load a saved LoRA adapter under `name` (no-op when already loaded)."""
        from peft import PeftModel

        with self._lock:
            if name in self.adapters:
                return
            p = require_path(path, f"LoRA adapter {name!r}", is_dir=True)
            if not (p / "adapter_config.json").is_file():
                raise ModelLoadError(f"LoRA adapter {name!r}: {p / 'adapter_config.json'} missing")
            self._check_targets(name, p / "adapter_config.json")
            if isinstance(self.model, PeftModel):
                self.model.load_adapter(str(p), adapter_name=peft_name(name))
            else:
                self.model = PeftModel.from_pretrained(self.model, str(p),
                                                       adapter_name=peft_name(name))
            self.model.eval()
            self.adapters[name] = str(p)

    def _check_targets(self, name: str, config: Path) -> None:
        """Every module an adapter names must exist in this LM: peft silently skips the ones
        that do not (a Llama adapter's `o_proj` on an OPT model), serving a partial adapter."""
        try:
            targets = json.loads(config.read_text()).get("target_modules")
        except ValueError as e:
            raise ModelLoadError(f"LoRA adapter {name!r}: {config} is not valid JSON: {e}") from e
        if isinstance(targets, list):  # a string is a regex: peft refuses one matching nothing
            missing = sorted(set(targets) - self._linear_names)
            if missing:
                raise ModelLoadError(
                    f"LoRA adapter {name!r}: target modules {missing} ({config}) match no "
                    f"linear module of {self.path}; it has {sorted(self._linear_names)}")

    def save_adapter(self, name: str, path: str | Path) -> Path:
        """Write adapter `name` alone into `path` (peft would nest non-default names)."""
        self._require_adapter(name)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, tempfile.TemporaryDirectory(dir=path.parent) as tmp:
            self.model.save_pretrained(tmp, selected_adapters=[peft_name(name)])
            src = Path(tmp) / peft_name(name)
            path.mkdir(parents=True, exist_ok=True)
            for f in src.iterdir():
                if f.is_file():
                    shutil.move(str(f), path / f.name)
        return path

    def unload_adapter(self, name: str) -> None:
        self._require_adapter(name)
        with self._lock:
            self.model.delete_adapter(peft_name(name))
            del self.adapters[name]

    def merge(self, name: str):
        """A new plain HF model with adapter `name` merged into a copy of the base weights."""
        self._require_adapter(name)
        with self._lock:
            peft = copy.deepcopy(self.model)
        peft.set_adapter(peft_name(name))
        return peft.merge_and_unload(adapter_names=[peft_name(name)]).eval()

    def _require_adapter(self, name: str) -> None:
        if name not in self.adapters:
            raise KeyError(f"adapter {name!r} not loaded; loaded: {sorted(self.adapters)}")

    def _use(self, adapter: str | None):
        """Context selecting `adapter` (None = base with all adapters disabled)."""
        if adapter is None:
            return self.model.disable_adapter() if self.adapters else nullcontext()
        self._require_adapter(adapter)
        self.model.set_adapter(peft_name(adapter))
        return nullcontext()

    # --- sampling --------------------------------------------------------------------------
    def _processors(self, params: SamplingParams, seeds: Sequence[int]) -> LogitsProcessorList:
        procs: list[LogitsProcessor] = [_AllowOnly(self._allowed)]
        if params.temperature > 0:
            if params.temperature != 1.0:
                procs.append(TemperatureLogitsWarper(params.temperature))
            if params.top_k and params.top_k > 0:
                procs.append(TopKLogitsWarper(params.top_k))
            if params.top_p < 1.0:
                procs.append(TopPLogitsWarper(params.top_p))
            procs.append(_RowGumbel(seeds))
        return LogitsProcessorList(procs)

    def _prompt_ids(self, prompt: Sequence[int], max_new: int) -> list[int]:
        ids = self._ids(prompt)
        if not ids:
            raise ValueError("empty prompt and no BOS token: nothing to condition on")
        if self.max_positions and len(ids) + max_new > self.max_positions:
            keep = max(1, self.max_positions - max_new)  # keep the most recent units
            ids = ids[-keep:]
        return ids

    @torch.inference_mode()
    def sample(self, prompts: Sequence[Units], params: SamplingParams,
               adapter: str | None = None) -> list[list[Units]]:
        """`params.n` continuations per prompt (new units only, cut at EOS). temperature 0 =
        greedy. Rows run in batches of `cfg.batch_size` with left padding."""
        rows = [(i, j) for i in range(len(prompts)) for j in range(params.n)]
        out: list[list[Units]] = [[[] for _ in range(params.n)] for _ in prompts]
        ids = [self._prompt_ids(p, params.max_new_units) for p in prompts]
        bs = max(1, self.cfg.batch_size)
        # A static KV cache: preallocated once per batch instead of a torch.cat per layer and
        # step (same units; ~20% less CPU on the mini LM, bench/throughput.py). Compilation
        # stays off so a call's cost does not depend on which shapes were seen before.
        gen_cfg = GenerationConfig(
            do_sample=False, max_new_tokens=params.max_new_units, pad_token_id=self.pad_token_id,
            eos_token_id=self.eos_token_id, bos_token_id=self.bos_token_id,
            cache_implementation="static", disable_compile=True,
        )
        with self._lock, self._use(adapter):
            for start in range(0, len(rows), bs):
                chunk = rows[start:start + bs]
                seqs = [ids[i] for i, _ in chunk]
                width = max(len(s) for s in seqs)
                x = torch.tensor([[self.pad_token_id] * (width - len(s)) + s for s in seqs])
                mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs])
                seeds = [row_seed(params.seed, prompts[i], j) for i, j in chunk]
                gen = self.model.generate(
                    input_ids=x.to(self.device), attention_mask=mask.to(self.device),
                    generation_config=gen_cfg, logits_processor=self._processors(params, seeds),
                )
                for (i, j), row in zip(chunk, gen[:, width:].tolist(), strict=True):
                    out[i][j] = self.ids_to_units(row)
        return out

    @property
    def non_unit_ids(self) -> list[int]:
        """Token ids that are neither a unit nor EOS: what a sampler must never emit."""
        return [int(i) for i in torch.nonzero(~self._allowed).flatten()]

    def ids_to_units(self, row: Sequence[int]) -> Units:
        """Sampled token ids -> units (cut at EOS, non-unit ids dropped)."""
        units: Units = []
        for t in row:
            if t == self.eos_token_id:
                break
            if self.unit_offset <= t < self.unit_offset + self.n_units:
                units.append(t - self.unit_offset)
        return units

    # --- scoring ---------------------------------------------------------------------------
    @torch.inference_mode()
    def logprob(self, sequences: Sequence[Units], adapter: str | None = None) -> list[LogProb]:
        """Log-likelihood of each sequence. With a BOS every unit is scored given what precedes
        it; without one the first unit has no context and is excluded."""
        out: list[LogProb] = []
        bs = max(1, self.cfg.batch_size)
        with self._lock, self._use(adapter):
            for start in range(0, len(sequences), bs):
                seqs = [self._ids(s) for s in sequences[start:start + bs]]
                width = max(len(s) for s in seqs)
                if width < 2:
                    out.extend(LogProb(0.0, []) for _ in seqs)
                    continue
                x = torch.tensor([s + [self.pad_token_id] * (width - len(s)) for s in seqs])
                mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
                logits = self.model(input_ids=x.to(self.device),
                                    attention_mask=mask.to(self.device)).logits.float()
                lp = torch.log_softmax(logits[:, :-1], -1)
                tok = lp.gather(-1, x[:, 1:, None].to(self.device))[..., 0].cpu()
                for r, s in enumerate(seqs):
                    per = tok[r, : len(s) - 1].tolist()
                    out.append(LogProb(float(sum(per)), per))
        return out

    @torch.inference_mode()
    def logits(self, units: Units, adapter: str | None = None) -> torch.Tensor:
        """Next-token logits at every position of one sequence (for tests and diagnostics)."""
        with self._lock, self._use(adapter):
            x = torch.tensor([self._ids(units)], device=self.device)
            return self.model(input_ids=x).logits[0].float().cpu()
