"""Judges: the parser, the OpenAI-compatible judge against a real local HTTP server (timeouts,
5xx, 429 + Retry-After, garbage, refusals, cache, concurrency, cost) and the local HF judge."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

from models.config import JudgeConfig
from models.factory import ModelLoadError, build_judge
from models.interfaces import Judge
from models.judges import PROMPT_VERSION, build_messages, parse_score

KEY = "sk-test-secret-123"


# --- parser ------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, value", [
    ("Coherent and on topic.\nScore: 4", 4.0),
    ("**Score:** 5", 5.0),
    ("score = 2", 2.0),
    ("First I thought Score: 2 but on reflection\nScore: 3", 3.0),
    ("Score: 4.5", 4.5),
])
def test_parse_ok(text, value):
    v, rationale, err = parse_score(text)
    assert (v, err) == (value, None)
    assert not rationale.endswith(text.splitlines()[-1])  # the verdict line is not rationale


@pytest.mark.parametrize("text, error", [
    ("I cannot rate this.", "unparsable"),
    ("", "unparsable"),
    ("Score: 7", "outside 1..5"),
    ("Score: 0", "outside 1..5"),
    ("Score: 3\nScore: 9", "outside 1..5"),  # the last one wins, and it is invalid
    ("Score: N", "unparsable"),
])
def test_parse_rejects(text, error):
    v, _, err = parse_score(text)
    assert v is None and error in err


def test_prompt_contains_texts_and_format():
    msgs = build_messages("the cat sat", "on the mat")
    user = msgs[-1]["content"]
    assert '"the cat sat"' in user and '"on the mat"' in user and user.endswith("Score: N")


# --- an OpenAI-compatible server ---------------------------------------------------------------
class FakeServer:
    """POST /v1/chat/completions. The continuation text picks the behaviour; counts requests."""

    def __init__(self):
        self.counts: dict[str, int] = {}
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        self.auth: set[str] = set()
        handler = self._handler()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def behave(self, marker: str, n: int):
        """(status, extra headers, answer text, delay s, extra message fields) of request n."""
        if marker == "slow":  # the first answer comes after the client's timeout
            return (200, {}, "late\nScore: 1", 1.5, {}) if n == 1 else (200, {}, "Score: 3", 0, {})
        if marker.startswith("conc"):
            return 200, {}, "Score: 3", 0.3, {}
        if marker == "err500" and n <= 2 or marker == "always500":
            return 503 if marker == "always500" else 500, {}, None, 0, {}
        if marker == "rate" and n == 1:
            return 429, {"Retry-After": "1"}, None, 0, {}
        answers = {"err500": "Recovered.\nScore: 2", "rate": "Score: 5",
                   "garbage": "I would rather talk about the weather.", "range": "Score: 11",
                   "refuse": None}
        if marker == "bad_request":
            return 400, {}, None, 0, {}
        extra = {"refusal": "I can't help with that."} if marker == "refuse" else {}
        return 200, {}, answers.get(marker, "Fine.\nScore: 4"), 0, extra

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                user = body["messages"][-1]["content"]
                marker = re.search(r'Continuation: "([^"]*)"', user).group(1)
                with server.lock:
                    server.counts[marker] = n = server.counts.get(marker, 0) + 1
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                    server.auth.add(self.headers.get("Authorization", ""))
                try:
                    status, headers, text, delay, extra = server.behave(marker, n)
                    time.sleep(delay)
                    if status != 200:
                        payload = {"error": {"message": "nope", "type": "server_error"}}
                    else:
                        payload = {
                            "id": "x", "object": "chat.completion", "created": 0,
                            "model": body["model"],
                            "choices": [{"index": 0, "finish_reason": "stop", "message": {
                                "role": "assistant", "content": text, **extra}}],
                            "usage": {"prompt_tokens": 100, "completion_tokens": 20,
                                      "total_tokens": 120},
                        }
                    data = json.dumps(payload).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)
                finally:
                    with server.lock:
                        server.in_flight -= 1

        return Handler


@pytest.fixture
def server():
    s = FakeServer()
    yield s
    s.close()


@pytest.fixture
def judge_cfg(server, tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_TEST_JUDGE_KEY", KEY)
    return JudgeConfig(
        name="gpt-test", kind="openai", model="test-model", base_url=server.base_url,
        api_key_env="STUDIO_TEST_JUDGE_KEY", timeout_s=0.6, max_retries=3,
        retry_backoff_s=0.05, concurrency=2, cache_dir=str(tmp_path / "cache"),
        price_per_1k_input=0.01, price_per_1k_output=0.03,
    )


def test_ok_score_cost_and_key(server, judge_cfg, caplog):
    caplog.set_level(logging.DEBUG)
    judge = build_judge(judge_cfg)
    assert isinstance(judge, Judge) and judge.prompt_version == PROMPT_VERSION
    s = judge.score("the prompt", "fine")
    assert s.ok and s.value == 4.0 and s.rationale == "Fine." and s.judge == "gpt-test"
    assert s.cost["input_tokens"] == 100 and s.cost["output_tokens"] == 20
    assert s.cost["usd"] == pytest.approx(100 / 1000 * 0.01 + 20 / 1000 * 0.03)
    assert server.auth == {f"Bearer {KEY}"}
    assert KEY not in caplog.text


def test_cache_hits_skip_the_server(server, judge_cfg):
    judge = build_judge(judge_cfg)
    first = judge.score("p", "cached-one")
    second = build_judge(judge_cfg).score("p", "cached-one")  # a new judge, same cache dir
    assert server.counts["cached-one"] == 1
    assert second.value == first.value and second.raw == first.raw and second.cost["cached"]
    other_prompt = judge.score("another prompt", "cached-one")
    assert other_prompt.ok and server.counts["cached-one"] == 2
    no_cache = build_judge(judge_cfg.model_copy(update={"cache_dir": ""}))
    no_cache.score("p", "cached-one")
    assert server.counts["cached-one"] == 3


def test_timeout_then_retry(server, judge_cfg):
    s = build_judge(judge_cfg).score("p", "slow")
    assert s.ok and s.value == 3.0 and server.counts["slow"] == 2 and s.cost["attempts"] == 2


def test_500_then_recovers_and_permanent_500_fails(server, judge_cfg):
    judge = build_judge(judge_cfg)
    s = judge.score("p", "err500")
    assert s.value == 2.0 and server.counts["err500"] == 3
    bad = judge.score("p", "always500")
    assert bad.value is None and "InternalServerError" in bad.error
    assert server.counts["always500"] == judge_cfg.max_retries + 1
    again = judge.score("p", "always500")  # failures are not cached
    assert again.value is None and server.counts["always500"] == 2 * (judge_cfg.max_retries + 1)


def test_429_honours_retry_after(server, judge_cfg):
    t = time.monotonic()
    s = build_judge(judge_cfg).score("p", "rate")
    assert s.value == 5.0 and server.counts["rate"] == 2
    assert time.monotonic() - t >= 0.95  # waited the server's 1 s, not the 0.05 s backoff


def test_4xx_is_not_retried(server, judge_cfg):
    s = build_judge(judge_cfg).score("p", "bad_request")
    assert s.value is None and server.counts["bad_request"] == 1


@pytest.mark.parametrize("marker, error", [
    ("garbage", "unparsable"), ("range", "outside 1..5"), ("refuse", "refused"),
])
def test_bad_answers_give_no_score(server, judge_cfg, marker, error):
    judge = build_judge(judge_cfg)
    s = judge.score("p", marker)
    assert s.value is None and not s.ok and error in s.error
    judge.score("p", marker)
    assert server.counts[marker] == 2  # not cached


def test_score_many_keeps_order_and_bounds_concurrency(server, judge_cfg):
    judge = build_judge(judge_cfg.model_copy(update={"timeout_s": 5.0}))
    pairs = [("p", f"conc{i}") for i in range(6)]
    t = time.monotonic()
    scores = judge.score_many(pairs + [("p", "garbage")])
    assert [s.value for s in scores] == [3.0] * 6 + [None]
    assert server.max_in_flight == judge_cfg.concurrency
    assert time.monotonic() - t < 6 * 0.3  # parallel, not serial


def test_missing_key_is_a_load_error(monkeypatch):
    monkeypatch.delenv("STUDIO_NO_SUCH_KEY", raising=False)
    cfg = JudgeConfig(name="j", kind="openai", api_key_env="STUDIO_NO_SUCH_KEY")
    with pytest.raises(ModelLoadError, match="STUDIO_NO_SUCH_KEY"):
        build_judge(cfg)


# --- a local HF chat judge ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def hf_judge_dir(tmp_path_factory):
    """A tiny random Llama with a byte-level tokenizer and a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    d = tmp_path_factory.mktemp("hf_judge")
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {c: i for i, c in enumerate(["<pad>", "<s>", "</s>", *sorted(alphabet)])}
    tok = Tokenizer(models.BPE(vocab, [], unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>",
                                     eos_token="</s>")
    hf_tok.chat_template = (
        "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}</s>{% endfor %}"
        "{% if add_generation_prompt %}<s>assistant: {% endif %}"
    )
    hf_tok.save_pretrained(d)
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(
        vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=4096,
        pad_token_id=0, bos_token_id=1, eos_token_id=2)).save_pretrained(d)
    return d


def test_hf_chat_judge_garbage_is_a_failure(hf_judge_dir, tmp_path):
    cfg = JudgeConfig(name="local", kind="hf", path=str(hf_judge_dir), max_tokens=8,
                      cache_dir=str(tmp_path / "c"))
    judge = build_judge(cfg)
    a, b = judge.score("the cat", "sat down"), judge.score("the cat", "sat down")
    assert a.value is None and "unparsable" in a.error and a.raw == b.raw  # greedy: same text
    assert a.cost["input_tokens"] > 100 and 0 < a.cost["output_tokens"] <= 8
    assert judge.stats["requests"] == 2  # failures are never cached


def test_hf_chat_judge_parses_a_scored_answer(hf_judge_dir, monkeypatch):
    judge = build_judge(JudgeConfig(name="local", kind="hf", path=str(hf_judge_dir),
                                    max_tokens=4))
    monkeypatch.setattr(judge, "_complete", lambda msgs: ("Good.\nScore: 5", {}))
    assert judge.score("p", "c").value == 5.0
