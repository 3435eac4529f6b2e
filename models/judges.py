"""LLM judges: one versioned scoring prompt, a strict parser, an OpenAI-compatible client and a
local transformers chat model.

A judge never invents a score: a refusal, an unparsable or out-of-range answer, or a request that
keeps failing gives `Score(value=None, error=...)`. Successful verdicts are cached on disk, keyed
on everything that determines them (judge, model, prompt version, both texts), so re-running a
judging job costs nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from email.utils import parsedate_to_datetime
from pathlib import Path

from models.config import JudgeConfig
from models.device import ModelLoadError, require_path, resolve_device
from models.interfaces import Score, Verdict

log = logging.getLogger(__name__)

PROMPT_VERSION = "align-slm-v1"

SYSTEM_PROMPT = (
    "You evaluate continuations of spoken utterances. Both texts are automatic transcripts of "
    "speech: ignore punctuation, capitalisation and small recognition errors."
)

USER_TEMPLATE = """Someone spoke the beginning of an utterance (the prompt). A speech model then \
continued it. Both were transcribed automatically.

Prompt: "{prompt}"
Continuation: "{continuation}"

Rate from 1 to 5 how likely and relevant the continuation is given the prompt, and whether it \
makes sense:
1 = very unlikely and irrelevant, or meaningless
2 = unlikely, mostly irrelevant or hard to make sense of
3 = somewhat plausible and related, with clear problems
4 = likely and relevant, with minor problems
5 = very likely, highly relevant and fully meaningful

First write a brief analysis (at most three sentences). Then end with one final line of exactly \
this form, where N is a whole number from 1 to 5:
Score: N"""

PAIR_TEMPLATE = """Someone spoke the beginning of an utterance (the prompt). A speech model then \
continued it twice. All three were transcribed automatically.

Prompt: "{prompt}"
Continuation A: "{first}"
Continuation B: "{second}"

Which continuation is more likely and relevant given the prompt, and makes more sense? Judge \
the content only, not which one comes first. First write a brief analysis (at most three \
sentences). Then end with one final line of exactly this form, where X is A, B or tie:
Better: X"""

_BETTER_RE = re.compile(r"better\**\s*[:=]\s*\**\s*(A|B|tie)\b", re.IGNORECASE)

_SCORE_RE = re.compile(r"score\**\s*[:=]\s*\**\s*([-+]?\d+(?:\.\d+)?)", re.IGNORECASE)


def build_messages(prompt_text: str, continuation_text: str) -> list[dict[str, str]]:
    user = USER_TEMPLATE.format(prompt=prompt_text.strip(), continuation=continuation_text.strip())
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def parse_score(text: str) -> tuple[float | None, str, str | None]:
    """(value, rationale, error) from a judge's answer. The last `Score: N` wins; a value outside
    1..5 or no such line is a failure, never a guess."""
    matches = list(_SCORE_RE.finditer(text or ""))
    if not matches:
        return None, "", "unparsable: no 'Score: N' line in the answer"
    last = matches[-1]
    value = float(last.group(1))
    rationale = text[: last.start()].rstrip("*#> \n\t").strip()
    if not 1 <= value <= 5:
        return None, rationale, f"score {last.group(1)} outside 1..5"
    return value, rationale, None


def build_pair_messages(prompt_text: str, first: str, second: str) -> list[dict[str, str]]:
    user = PAIR_TEMPLATE.format(prompt=prompt_text.strip(), first=first.strip(),
                                second=second.strip())
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def parse_better(text: str) -> tuple[str | None, str, str | None]:
    """(choice A/B/tie, rationale, error) from a pairwise answer; the last `Better: X` wins."""
    matches = list(_BETTER_RE.finditer(text or ""))
    if not matches:
        return None, "", "unparsable: no 'Better: A|B|tie' line in the answer"
    last = matches[-1]
    word = last.group(1)
    choice = "tie" if word.lower() == "tie" else word.upper()
    return choice, text[: last.start()].rstrip("*#> \n\t").strip(), None


def cache_key(judge: str, model: str, prompt_version: str, prompt: str, continuation: str) -> str:
    blob = json.dumps([judge, model, prompt_version, prompt, continuation], ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


class ScoreCache:
    """One small JSON file per verdict (atomic writes, safe across threads and processes)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _file(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        f = self._file(key)
        try:
            return json.loads(f.read_text())
        except (OSError, ValueError):
            return None

    def put(self, key: str, data: dict) -> None:
        f = self._file(key)
        f.parent.mkdir(parents=True, exist_ok=True)
        tmp = f.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(data, ensure_ascii=False))
        os.replace(tmp, f)


class ChatJudge:
    """Shared scoring logic: prompt, cache, parse, bounded concurrency. Subclasses implement
    `_complete(messages) -> (answer text, usage dict)` and raise on transport failure."""

    def __init__(self, cfg: JudgeConfig, model_id: str):
        self.cfg = cfg
        self.name = cfg.name
        self.model_id = model_id
        self.prompt_version = PROMPT_VERSION
        self.cache = ScoreCache(cfg.cache_dir) if cfg.cache_dir else None
        self._sem = threading.Semaphore(max(1, cfg.concurrency))
        self._stats_lock = threading.Lock()
        self.stats = {"requests": 0, "cache_hits": 0, "failures": 0}

    def _count(self, key: str) -> None:
        with self._stats_lock:
            self.stats[key] += 1

    def _complete(self, messages: list[dict[str, str]]) -> tuple[str, dict]:
        raise NotImplementedError

    def _score(self, value, rationale="", raw="", error=None, cost=None) -> Score:
        return Score(value=value, rationale=rationale, raw=raw, judge=self.name,
                     prompt_version=self.prompt_version, error=error, cost=cost or {})

    def score(self, prompt_text: str, continuation_text: str) -> Score:
        key = cache_key(self.name, self.model_id, self.prompt_version, prompt_text,
                        continuation_text)
        if self.cache and (hit := self.cache.get(key)):
            self._count("cache_hits")
            return self._score(hit["value"], hit["rationale"], hit["raw"],
                               cost={**hit.get("cost", {}), "cached": True, "usd": 0.0})
        try:
            raw, usage = self._complete(build_messages(prompt_text, continuation_text))
        except Exception as e:  # noqa: BLE001 - any failure becomes a failed Score
            self._count("failures")
            log.warning("judge %s: request failed: %s", self.name, type(e).__name__)
            return self._score(None, error=f"request failed: {type(e).__name__}: {e}")
        cost = self._cost(usage)
        if usage.get("refusal"):
            return self._score(None, raw=raw, error=f"refused: {usage['refusal']}", cost=cost)
        value, rationale, error = parse_score(raw)
        if error is None and self.cache:
            self.cache.put(key, {"value": value, "rationale": rationale, "raw": raw, "cost": cost})
        return self._score(value, rationale, raw, error, cost)

    def _cost(self, usage: dict) -> dict:
        i, o = int(usage.get("input_tokens", 0)), int(usage.get("output_tokens", 0))
        usd = i / 1000 * self.cfg.price_per_1k_input + o / 1000 * self.cfg.price_per_1k_output
        return {"input_tokens": i, "output_tokens": o, "usd": round(usd, 8), "cached": False,
                "attempts": int(usage.get("attempts", 1))}

    def compare(self, prompt_text: str, first_text: str, second_text: str) -> Verdict:
        """Which continuation, in the order given, is better (A, B or tie). Callers ask in
        both orders (`backend.loop.judge.judge_pairs`): LLM judges favour a position."""
        key = cache_key(self.name, self.model_id, self.prompt_version + ":pair", prompt_text,
                        first_text + "\x00" + second_text)
        if self.cache and (hit := self.cache.get(key)):
            self._count("cache_hits")
            return Verdict(hit["choice"], hit["rationale"], hit["raw"])
        try:
            raw, usage = self._complete(build_pair_messages(prompt_text, first_text,
                                                            second_text))
        except Exception as e:  # noqa: BLE001 - any failure becomes a failed verdict
            self._count("failures")
            return Verdict(None, error=f"request failed: {type(e).__name__}: {e}")
        if usage.get("refusal"):
            return Verdict(None, raw=raw, error=f"refused: {usage['refusal']}")
        choice, rationale, error = parse_better(raw)
        if error is None and self.cache:
            self.cache.put(key, {"choice": choice, "rationale": rationale, "raw": raw})
        return Verdict(choice, rationale, raw, error)

    def score_many(self, pairs: Sequence[tuple[str, str]]) -> list[Score]:
        """Scores in input order, `concurrency` requests in flight at most."""
        with ThreadPoolExecutor(max_workers=max(1, self.cfg.concurrency)) as pool:
            return list(pool.map(lambda p: self.score(p[0], p[1]), pairs))


def _retry_after(exc: Exception) -> float | None:
    """Seconds a server asked us to wait (Retry-After as seconds or a date, or retry-after-ms)."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    if ms := headers.get("retry-after-ms"):
        try:
            return float(ms) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


class OpenAIJudge(ChatJudge):
    """Any OpenAI-compatible chat endpoint (OpenAI, vLLM, Ollama). Retries timeouts, connection
    errors, 5xx and 429 with exponential backoff (honouring Retry-After); other errors fail."""

    def __init__(self, cfg: JudgeConfig):
        from openai import OpenAI

        super().__init__(cfg, cfg.model)
        key = os.environ.get(cfg.api_key_env, "")
        if not key:
            if cfg.base_url is None:
                raise ModelLoadError(f"judge {cfg.name!r}: environment variable "
                                     f"{cfg.api_key_env} (the API key) is not set")
            key = "EMPTY"  # local OpenAI-compatible servers accept any key
        self.client = OpenAI(api_key=key, base_url=cfg.base_url, timeout=cfg.timeout_s,
                             max_retries=0)

    def _complete(self, messages):
        import openai

        retryable = (openai.APITimeoutError, openai.APIConnectionError, openai.RateLimitError,
                     openai.InternalServerError)
        for attempt in range(self.cfg.max_retries + 1):
            try:
                with self._sem:
                    self._count("requests")
                    resp = self.client.chat.completions.create(
                        model=self.cfg.model, messages=messages,
                        temperature=self.cfg.temperature, max_tokens=self.cfg.max_tokens,
                    )
                break
            except retryable as e:
                if attempt == self.cfg.max_retries:
                    raise
                wait = _retry_after(e)
                if wait is None:
                    wait = self.cfg.retry_backoff_s * 2**attempt * random.uniform(0.8, 1.2)
                wait = min(wait, self.cfg.max_retry_wait_s)
                log.info("judge %s: %s, retry %d in %.2fs", self.name, type(e).__name__,
                         attempt + 1, wait)
                time.sleep(wait)
        if not resp.choices:
            raise ValueError("no choices in the response")
        choice = resp.choices[0]
        usage = {"attempts": attempt + 1}
        if resp.usage is not None:
            usage["input_tokens"] = resp.usage.prompt_tokens or 0
            usage["output_tokens"] = resp.usage.completion_tokens or 0
        msg = choice.message
        if getattr(msg, "refusal", None):
            usage["refusal"] = msg.refusal
        elif choice.finish_reason == "content_filter":
            usage["refusal"] = "content filter"
        return msg.content or "", usage


class HFChatJudge(ChatJudge):
    """A local transformers instruct model through its chat template, greedy decoding."""

    def __init__(self, cfg: JudgeConfig):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = require_path(cfg.path, f"judge {cfg.name!r} model directory", is_dir=True)
        super().__init__(cfg, f"hf:{path.name}")
        self.device = resolve_device("auto")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(path))
            self.model = AutoModelForCausalLM.from_pretrained(str(path)).to(self.device).eval()
        except Exception as e:  # noqa: BLE001
            raise ModelLoadError(f"judge {cfg.name!r}: could not load {path}: {e}") from e
        if not getattr(self.tokenizer, "chat_template", None):
            raise ModelLoadError(f"judge {cfg.name!r}: {path} has no chat template "
                                 "(expected an instruct model's tokenizer_config/chat_template)")
        self._gen_lock = threading.Lock()

    def _prompt(self, messages) -> str:
        try:
            return self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                      add_generation_prompt=True)
        except Exception:  # noqa: BLE001 - templates without a system role (e.g. Mistral)
            merged = [{"role": "user",
                       "content": messages[0]["content"] + "\n\n" + messages[1]["content"]}]
            return self.tokenizer.apply_chat_template(merged, tokenize=False,
                                                      add_generation_prompt=True)

    def _complete(self, messages):
        import torch

        enc = self.tokenizer(self._prompt(messages), return_tensors="pt",
                             add_special_tokens=False).to(self.device)
        pad = self.tokenizer.pad_token_id
        if pad is None:
            pad = self.tokenizer.eos_token_id
        with self._gen_lock, torch.inference_mode():
            self._count("requests")
            out = self.model.generate(**enc, do_sample=False, max_new_tokens=self.cfg.max_tokens,
                                      pad_token_id=pad)
        new = out[0, enc["input_ids"].shape[1]:]
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        return text, {"input_tokens": enc["input_ids"].shape[1], "output_tokens": len(new)}
