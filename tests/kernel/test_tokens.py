"""Token counts: the real tokenizer of each family, offline, with OpenAI's message framing."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap

import pytest

from app.kernel import tokens
from app.kernel.canonical import ChatMessage, ModelSpec
from app.kernel.tokens import count_message_tokens, count_tokens, estimate_tokens, family


def spec(name: str, vendor: str = "unknown", provider: str = "p") -> ModelSpec:
    return ModelSpec(id=f"{provider}/{name}", name=name, provider=provider, vendor=vendor)


@pytest.fixture(autouse=True)
def _bundled_bpe_files(monkeypatch):
    """Tests call tiktoken directly too; it must find litellm's files whatever ran first.
    (That tokens.py finds them on its own is tested in a fresh process below.)"""
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tokens._litellm_tokenizers_dir()))


GPT_4O = spec("gpt-4o", "openai", "openai")
GPT_4 = spec("gpt-4-0613", "openai", "openai")
CLAUDE = spec("claude-3-5-sonnet-20241022", "anthropic", "anthropic")

# OpenAI cookbook, "How to count tokens with tiktoken": the example conversation
COOKBOOK_MESSAGES = [
    {
        "role": "system",
        "content": "You are a helpful, pattern-following assistant that translates corporate jargon "
        "into plain English.",
    },
    {"role": "system", "name": "example_user", "content": "New synergies will help drive top-line growth."},
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Things working well together will increase revenue.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "Let's circle back when we have more bandwidth to touch base on opportunities "
        "for increased leverage.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Let's talk later when we're less busy about how to do better.",
    },
    {
        "role": "user",
        "content": "This late pivot means we don't have time to boil the ocean for the client deliverable.",
    },
]


def cookbook_count(messages: list[dict], encoding_name: str) -> int:
    """The cookbook's reference implementation, straight on tiktoken."""
    import tiktoken

    encoding = tiktoken.get_encoding(encoding_name)
    n = 0
    for message in messages:
        n += 3
        for key, value in message.items():
            n += len(encoding.encode(value))
            if key == "name":
                n += 1
    return n + 3


@pytest.mark.parametrize(
    ("name", "vendor", "expected"),
    [
        ("gpt-4o", "openai", "o200k_base"),
        ("gpt-4o-mini-2024-07-18", "openai", "o200k_base"),
        ("gpt-4.1-nano", "openai", "o200k_base"),
        ("gpt-5", "openai", "o200k_base"),
        ("o1", "openai", "o200k_base"),
        ("o3-mini", "openai", "o200k_base"),
        ("openai/gpt-4o", "openai", "o200k_base"),  # OpenRouter's names carry the maker
        ("gpt-4-0613", "openai", "cl100k_base"),
        ("gpt-3.5-turbo", "openai", "cl100k_base"),
        ("claude-3-5-haiku-latest", "anthropic", "anthropic"),
        ("anthropic/claude-3.7-sonnet", "unknown", "anthropic"),
        ("llama3.2:latest", "meta", "cl100k_base"),
        ("deepseek-chat", "deepseek", "cl100k_base"),
    ],
)
def test_each_model_family_gets_its_tokenizer(name, vendor, expected):
    assert family(spec(name, vendor)) == expected


def test_messages_are_counted_like_openais_reference():
    assert count_tokens(GPT_4, COOKBOOK_MESSAGES) == cookbook_count(COOKBOOK_MESSAGES, "cl100k_base") == 129
    assert count_tokens(GPT_4O, COOKBOOK_MESSAGES) == cookbook_count(COOKBOOK_MESSAGES, "o200k_base")


def test_plain_text_counts_without_framing():
    assert count_tokens(GPT_4, "tiktoken is great!") == 6
    assert count_tokens(GPT_4, "") == 0


def test_real_counts_differ_from_the_estimate():
    text = "Antidisestablishmentarianism notwithstanding, 12345 µ-architectures 漢字 🙂"
    real = count_tokens(GPT_4O, text)
    assert real != estimate_tokens(text)
    import tiktoken

    assert real == len(tiktoken.get_encoding("o200k_base").encode(text))


def test_special_token_text_in_a_prompt_is_just_text():
    n = count_tokens(GPT_4O, [{"role": "user", "content": "say <|endoftext|> and stop"}])
    assert n > 3 + 3 + 1


def test_one_message_includes_its_framing_and_name():
    plain = count_message_tokens(GPT_4, {"role": "user", "content": "hi there"})
    named = count_message_tokens(GPT_4, {"role": "user", "name": "bob", "content": "hi there"})
    assert plain == 3 + 1 + 2  # framing, "user", "hi there"
    assert named == plain + 1 + 1  # "bob" and the name's extra token
    assert count_tokens(GPT_4, [{"role": "user", "content": "hi there"}]) == plain + tokens.REPLY_PRIMING


def test_tool_calls_tool_results_and_images_are_counted():
    call = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
            }
        ],
    }
    result = {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 3}'}
    bare = count_message_tokens(GPT_4O, {"role": "assistant", "content": None})
    assert count_message_tokens(GPT_4O, call) > bare + tokens.TOKENS_PER_TOOL_CALL + 4
    assert count_message_tokens(GPT_4O, result) > 3 + 1 + 4

    def image(detail):
        url = {"url": "data:image/png;base64,AAAA", "detail": detail}
        return {
            "role": "user",
            "content": [{"type": "text", "text": "what is this"}, {"type": "image_url", "image_url": url}],
        }

    text_only = count_message_tokens(GPT_4O, {"role": "user", "content": "what is this"})
    assert count_message_tokens(GPT_4O, image("low")) == text_only + tokens.IMAGE_TOKENS_LOW
    assert count_message_tokens(GPT_4O, image("high")) == text_only + tokens.IMAGE_TOKENS_HIGH


def test_pydantic_messages_count_like_their_dicts():
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "name": "ann", "content": "hello"},
    ]
    models = [ChatMessage.model_validate(m) for m in messages]
    assert count_tokens(GPT_4O, models) == count_tokens(GPT_4O, messages)


def test_anthropic_models_use_the_anthropic_tokenizer():
    from tokenizers import Tokenizer

    text = "Claude counts tokens with its own vocabulary, not OpenAI's BPE: schadenfreude."
    path = tokens._litellm_tokenizers_dir() / "anthropic_tokenizer.json"
    expected = len(Tokenizer.from_file(str(path)).encode(text, add_special_tokens=False).ids)
    assert count_tokens(CLAUDE, text) == expected
    assert expected != count_tokens(GPT_4O, text)


@pytest.mark.llama
def test_a_local_models_own_tokenizer_is_used(tiny_gguf):
    """The llama.cpp runtime can count with the GGUF's vocabulary; the caller passes that in."""
    llama_cpp = pytest.importorskip("llama_cpp")
    vocab = llama_cpp.Llama(model_path=str(tiny_gguf), vocab_only=True, verbose=False)

    def llama_count(text: str) -> int:
        return len(vocab.tokenize(text.encode(), add_bos=False, special=False))

    local = ModelSpec(id="local/tiny-chat", name="tiny-chat", provider="local", local=True)
    text = "the model has a word list of its own"
    own = llama_count(text)
    assert count_tokens(local, text, tokenizer=llama_count) == own
    assert count_tokens(local, text) == count_tokens(GPT_4, text) != own  # without it: the default
    messages = [{"role": "user", "content": text}]
    assert count_tokens(local, messages, tokenizer=llama_count) == 3 + llama_count("user") + own + 3


PROSE = (
    "ByenatOS holds an AI socket: plug in any model, cloud or local, and every app on the machine "
    "reaches it through one local gateway. Swap the model at any time; running requests finish on "
    "the old one, conversations carry on with their history, and a failing model is failed over to "
    "the next in line. | Result | Target |\n|---|---|\n| p50 1.1 ms, p99 3.9 ms | < 5 ms |\n"
)
CODE = (
    "async def chat(self, request: ChatRequest, *, app: str | None = None) -> ChatResponse:\n"
    "    plan = await self._plan(request.model, None, None)\n"
    "    response, info = await self.router.run(plan, lambda dep: self._chat_on(dep, request))\n"
    "    return {k: v for k, v in zip(keys, values, strict=True) if v is not None}\n"
)


def test_estimate_errs_high_on_prose_and_code():
    # fixed samples: a test that read README.md broke whenever the README changed
    for text in (PROSE, CODE):
        assert estimate_tokens(text) >= count_tokens(GPT_4, text)
        assert estimate_tokens(text) >= count_tokens(GPT_4O, text)
    assert estimate_tokens("漢字漢字") == 4
    assert estimate_tokens("") == 0


def test_without_bpe_files_counts_fall_back_to_the_estimate_and_say_so_once(monkeypatch, caplog):
    monkeypatch.setattr(tokens, "_COUNTERS", {})
    monkeypatch.setattr(tokens, "_FALLBACK_LOGGED", set())
    monkeypatch.setattr(tokens, "_litellm_tokenizers_dir", lambda: None)
    monkeypatch.delenv("TIKTOKEN_CACHE_DIR", raising=False)
    text = "a sentence of plain English words to count"
    with caplog.at_level(logging.WARNING, logger="app.kernel.tokens"):
        assert count_tokens(GPT_4O, text) == estimate_tokens(text)
        assert count_tokens(GPT_4O, text + "!") == estimate_tokens(text + "!")
        assert count_tokens(CLAUDE, text) == estimate_tokens(text)
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2  # once per family, not per count
    assert "o200k_base" in warnings[0] and "estimated" in warnings[0]


async def test_warm_up_builds_the_encoder_off_the_loop(monkeypatch):
    monkeypatch.setattr(tokens, "_COUNTERS", {})
    assert not tokens.is_warm(GPT_4)
    await tokens.warm_up(GPT_4)
    assert tokens.is_warm(GPT_4)
    assert count_tokens(GPT_4, "tiktoken is great!") == 6


def test_counting_works_offline_without_importing_litellm(tmp_path):
    """A fresh process, no cache dir set, every download routed to a dead proxy."""
    script = textwrap.dedent(
        """
        import json, os, sys
        from app.kernel.canonical import ModelSpec
        from app.kernel.tokens import count_tokens
        spec = ModelSpec(id="openai/gpt-4o", name="gpt-4o", provider="openai", vendor="openai")
        old = ModelSpec(id="openai/gpt-4", name="gpt-4", provider="openai", vendor="openai")
        print(json.dumps({
            "o200k": count_tokens(spec, "tiktoken is great!"),
            "cl100k": count_tokens(old, "tiktoken is great!"),
            "litellm_imported": "litellm" in sys.modules,
            "cache_dir": os.environ.get("TIKTOKEN_CACHE_DIR"),
        }))
        """
    )
    env = {k: v for k, v in os.environ.items() if k not in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR")}
    env |= {"HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9", "TMPDIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    result = json.loads(out.stdout)
    import tiktoken

    assert result["o200k"] == len(tiktoken.get_encoding("o200k_base").encode("tiktoken is great!"))
    assert result["cl100k"] == 6
    assert not result["litellm_imported"]
    assert result["cache_dir"].endswith("litellm_core_utils/tokenizers")


def test_counts_of_seen_texts_are_remembered_without_keeping_the_texts():
    calls: list[int] = []

    def slow_count(text: str) -> int:
        calls.append(len(text))
        return len(text) // 4

    cache = tokens._CountCache(slow_count, size=2)
    document = "a pasted document " * 10_000  # long texts are cached too
    assert cache(document) == cache("".join(["a pasted document "] * 10_000)) == len(document) // 4
    assert calls == [len(document)]  # an equal text, another str object: counted once
    cache("b")
    cache("c")  # over the size: the least recently used (the document) goes
    assert all(isinstance(part, int) for key in cache._seen for part in key)  # no texts held
    cache(document)
    assert calls == [len(document), 1, 1, len(document)]
