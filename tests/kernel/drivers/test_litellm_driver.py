"""The litellm driver, driven against a fake Gemini API over loopback.

Gemini is a real non-OpenAI protocol (generateContent, SSE of GenerateContentResponse,
x-goog-api-key), so these tests exercise litellm's translation both ways, not a pass-through.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from contextlib import aclosing
from pathlib import Path

import pytest

from app.kernel.canonical import ChatMessage, ChatRequest, ModelSpec
from app.kernel.drivers import create_driver
from app.kernel.drivers.base import ProviderConfig
from app.kernel.drivers.litellm_driver import LiteLLMDriver, litellm_error, load_litellm
from app.kernel.errors import (
    AuthenticationError,
    BadRequestError,
    ConfigError,
    ContextWindowExceededError,
    ModelNotFoundError,
    PermissionDeniedError,
    RateLimitError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from tests.fakes.gemini_upstream import FakeGemini
from tests.fakes.upstream import Fault

ROOT = Path(__file__).resolve().parents[3]
FLASH = ModelSpec(id="gem/gemini-2.5-flash", name="gemini-2.5-flash", provider="gem")
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def make_driver(fake, **overrides) -> LiteLLMDriver:
    options = {"litellm_provider": "gemini", **overrides.pop("options", {})}
    settings = {"base_url": fake.api_base, "api_key": "fake-gemini-key", "timeout": 10.0, **overrides}
    driver = create_driver(ProviderConfig(id="gem", kind="litellm", options=options, **settings))
    assert isinstance(driver, LiteLLMDriver)
    return driver


@pytest.fixture
async def driver(fake_gemini):
    await load_litellm()  # once per session; keeps the first test's timing honest
    d = make_driver(fake_gemini)
    yield d
    await d.aclose()


def ask(text: str = "Say hello", **kw) -> ChatRequest:
    return ChatRequest(model="alias", messages=[ChatMessage(role="user", content=text)], **kw)


async def collect(driver: LiteLLMDriver, request: ChatRequest, model: ModelSpec = FLASH):
    async with aclosing(driver.stream(request, model)) as chunks:
        return [c async for c in chunks]


# -- chat ------------------------------------------------------------------------------------


async def test_chat_speaks_gemini_and_returns_canonical(driver, fake_gemini):
    request = ChatRequest(
        model="alias",
        messages=[
            ChatMessage(role="system", content="Be brief."),
            ChatMessage(role="user", content="Say hello"),
        ],
        temperature=0.2,
        max_tokens=50,
    )
    answer = await driver.chat(request, FLASH)

    assert answer.message.content == fake_gemini.reply_text
    assert answer.message.role == "assistant"
    assert answer.finish_reason == "stop"
    assert answer.model == "gemini-2.5-flash"
    assert answer.usage is not None
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (4, 5)  # "Be brief." + "Say hello"
    assert answer.usage.total_tokens == 9

    seen = fake_gemini.requests[-1]
    assert seen.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert seen.headers["x-goog-api-key"] == "fake-gemini-key"
    assert seen.body["contents"] == [{"role": "user", "parts": [{"text": "Say hello"}]}]
    assert seen.body["system_instruction"] == {"parts": [{"text": "Be brief."}]}
    assert seen.body["generationConfig"]["temperature"] == 0.2
    assert seen.body["generationConfig"]["max_output_tokens"] == 50


async def test_chat_maps_max_tokens_finish(driver, fake_gemini):
    fake_gemini.finish_reason = "MAX_TOKENS"
    answer = await driver.chat(ask(), FLASH)
    assert answer.finish_reason == "length"


async def test_tool_calls_come_back_as_openai_tool_calls(driver, fake_gemini):
    fake_gemini.tool_call = {"name": "get_weather", "args": {"city": "Oslo"}}
    answer = await driver.chat(ask("Weather in Oslo?", tools=[WEATHER_TOOL]), FLASH)

    assert answer.finish_reason == "tool_calls"
    (call,) = answer.message.tool_calls
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Oslo"}
    assert call.id
    declared = fake_gemini.requests[-1].body["tools"][0]["function_declarations"][0]
    assert declared["name"] == "get_weather"


async def test_model_names_get_the_route_prefix_once(fake_gemini):
    d = make_driver(fake_gemini)
    assert d.litellm_model("gemini-2.5-flash") == "gemini/gemini-2.5-flash"
    assert d.litellm_model("gemini/gemini-2.5-flash") == "gemini/gemini-2.5-flash"
    prefixed = FLASH.model_copy(update={"name": "gemini/gemini-2.5-flash"})
    await d.chat(ask(), prefixed)
    assert fake_gemini.requests[-1].path == "/v1beta/models/gemini-2.5-flash:generateContent"


async def test_control_fields_in_the_request_body_do_not_reach_litellm(driver, fake_gemini):
    """A client must not redirect our key elsewhere by putting litellm's own arguments in the body."""
    request = ChatRequest.model_validate(
        {
            "model": "alias",
            "messages": [{"role": "user", "content": "hi"}],
            "api_base": "http://127.0.0.1:9/v1beta",
            "api_key": "stolen",
            "mock_response": "not from upstream",
        }
    )
    answer = await driver.chat(request, FLASH)
    assert answer.message.content == fake_gemini.reply_text
    assert fake_gemini.requests[-1].headers["x-goog-api-key"] == "fake-gemini-key"


# -- stream ----------------------------------------------------------------------------------


async def test_stream_yields_text_finish_and_usage(driver, fake_gemini):
    chunks = await collect(driver, ask())

    assert "".join(c.text() for c in chunks) == fake_gemini.reply_text
    assert sum(1 for c in chunks if c.text()) == 5, "one chunk per word, as the fake sent them"
    finishes = [ch.finish_reason for c in chunks for ch in c.choices if ch.finish_reason]
    assert finishes == ["stop"]
    usages = [c.usage for c in chunks if c.usage is not None]
    assert usages and usages[-1].prompt_tokens == 2 and usages[-1].completion_tokens == 5
    assert all(c.model == "gemini-2.5-flash" for c in chunks)
    assert fake_gemini.requests[-1].path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    assert fake_gemini.streams_finished == 1


async def test_stream_tool_call(driver, fake_gemini):
    fake_gemini.tool_call = {"name": "get_weather", "args": {"city": "Oslo"}}
    chunks = await collect(driver, ask("Weather?", tools=[WEATHER_TOOL]))
    calls = [t for c in chunks for ch in c.choices for t in ch.delta.tool_calls or []]
    assert calls and calls[0].function.name == "get_weather"
    assert json.loads("".join(t.function.arguments for t in calls)) == {"city": "Oslo"}
    assert [ch.finish_reason for c in chunks for ch in c.choices if ch.finish_reason] == ["tool_calls"]


async def test_closing_a_stream_early_closes_the_upstream_connection(driver, fake_gemini):
    fake_gemini.reply_text = " ".join(f"word{i}" for i in range(200))
    fake_gemini.chunk_delay = 0.01
    stream = driver.stream(ask(), FLASH)
    first = await anext(stream)
    assert first.text() == "word0 "
    await stream.aclose()
    # the fake notices when its next write hits a closed connection
    await asyncio.wait_for(fake_gemini.cancelled.wait(), timeout=5)
    assert fake_gemini.streams_finished == 0


async def test_a_dropped_stream_is_a_retryable_error(driver, fake_gemini):
    fake_gemini.fault = Fault(kind="disconnect", after_chunks=2, times=1)
    received = []
    with pytest.raises(UpstreamUnavailableError) as caught:
        async for chunk in driver.stream(ask(), FLASH):
            received.append(chunk.text())
    assert received == ["Hello ", "from "]
    assert caught.value.retryable and caught.value.provider == "gem"


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error", "retryable"),
    [
        (401, AuthenticationError, False),
        (403, PermissionDeniedError, False),
        (429, RateLimitError, True),
        (500, UpstreamUnavailableError, True),
        (503, UpstreamUnavailableError, True),
        (400, BadRequestError, False),
    ],
)
@pytest.mark.parametrize("streaming", [False, True], ids=["chat", "stream"])
async def test_upstream_statuses_become_typed_errors(
    driver, fake_gemini, status, error, retryable, streaming
):
    fake_gemini.fault = Fault(kind="status", status=status, message=f"injected {status}", times=1)
    with pytest.raises(error) as caught:
        if streaming:
            await collect(driver, ask())
        else:
            await driver.chat(ask(), FLASH)
    assert caught.value.retryable is retryable
    assert caught.value.provider == "gem" and caught.value.model == "gemini-2.5-flash"
    # the vendor's own words, not litellm's wrapping, and where they came from
    assert caught.value.message == f"injected {status} (HTTP {status} from provider gem)"


@pytest.mark.parametrize("streaming", [False, True], ids=["chat", "stream"])
async def test_a_server_error_mentioning_403_stays_a_server_error(driver, fake_gemini, streaming):
    """litellm classifies Gemini errors by searching their text for "403"; the status decides."""
    fake_gemini.fault = Fault(
        kind="status", status=500, message="relay got 403 from the quota service", times=1
    )
    with pytest.raises(UpstreamUnavailableError) as caught:
        if streaming:
            await collect(driver, ask())
        else:
            await driver.chat(ask(), FLASH)
    assert caught.value.retryable


async def test_rate_limit_carries_retry_after(driver, fake_gemini):
    fake_gemini.fault = Fault(
        kind="status", status=429, message="quota", headers={"Retry-After": "7"}, times=1
    )
    with pytest.raises(RateLimitError) as caught:
        await driver.chat(ask(), FLASH)
    assert caught.value.retry_after == 7.0


async def test_wrong_key_is_an_authentication_error(fake_gemini):
    d = make_driver(fake_gemini, api_key="wrong-key")
    with pytest.raises(AuthenticationError) as caught:
        await d.chat(ask(), FLASH)
    assert "API key not valid" in caught.value.message
    assert not caught.value.retryable


async def test_missing_key_is_an_authentication_error(fake_gemini, monkeypatch):
    for var in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "PALM_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    d = make_driver(fake_gemini, api_key=None)
    with pytest.raises(AuthenticationError):
        await d.chat(ask(), FLASH)
    assert fake_gemini.requests == [], "nothing was sent without a key"


async def test_unknown_model_is_model_not_found(driver):
    ghost = ModelSpec(id="gem/ghost", name="gemini-ghost", provider="gem")
    with pytest.raises(ModelNotFoundError) as caught:
        await driver.chat(ask(), ghost)
    assert "gemini-ghost" in caught.value.message


async def test_context_overflow_is_recognised(driver, fake_gemini):
    fake_gemini.fault = Fault(
        kind="status",
        status=400,
        message="The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).",
        times=1,
    )
    with pytest.raises(ContextWindowExceededError) as caught:
        await driver.chat(ask(), FLASH)
    assert not caught.value.retryable


@pytest.mark.parametrize("streaming", [False, True], ids=["chat", "stream"])
async def test_refused_connection_is_retryable(driver, fake_gemini, streaming):
    await fake_gemini.refuse()
    with pytest.raises(UpstreamUnavailableError) as caught:
        if streaming:
            await collect(driver, ask())
        else:
            await driver.chat(ask(), FLASH)
    assert caught.value.retryable


@pytest.mark.parametrize("streaming", [False, True], ids=["chat", "stream"])
async def test_refused_connection_on_a_port_with_403_in_it(streaming):
    """litellm's string heuristics call any Gemini error mentioning "403" a 403; a refused
    connection to 127.0.0.1:40365 is still a refused connection."""
    fake = FakeGemini()
    for port in range(40300, 40400):
        try:
            await fake.start(port=port)
            break
        except OSError:
            continue
    else:
        pytest.skip("no free port with 403 in it")
    await fake.refuse()
    d = make_driver(fake)
    with pytest.raises(UpstreamUnavailableError) as caught:
        if streaming:
            await collect(d, ask())
        else:
            await d.chat(ask(), FLASH)
    assert caught.value.retryable and "403" in str(fake.port)


async def test_a_hanging_upstream_times_out(fake_gemini):
    d = make_driver(fake_gemini, timeout=0.3)
    fake_gemini.fault = Fault(kind="hang", times=1)
    with pytest.raises(UpstreamTimeoutError) as caught:
        await d.chat(ask(), FLASH)
    assert caught.value.retryable


async def test_litellm_exception_classes_map_to_typed_errors():
    litellm = await load_litellm()
    cases = [
        (litellm.Timeout("slow", model="m", llm_provider="p"), UpstreamTimeoutError),
        (litellm.APIConnectionError("down", llm_provider="p", model="m"), UpstreamUnavailableError),
        (litellm.ServiceUnavailableError("busy", llm_provider="p", model="m"), UpstreamUnavailableError),
        (
            litellm.ContextWindowExceededError("too long", model="m", llm_provider="p"),
            ContextWindowExceededError,
        ),
        (litellm.RateLimitError("slow down", llm_provider="p", model="m"), RateLimitError),
        (litellm.NotFoundError("no such model", model="m", llm_provider="p"), ModelNotFoundError),
        (litellm.BadRequestError("bad", model="m", llm_provider="p"), BadRequestError),
        (ValueError("nonsense parameter"), BadRequestError),
        (RuntimeError("who knows"), UpstreamUnavailableError),
    ]
    for exc, expected in cases:
        mapped = litellm_error(exc, provider="p", model="m")
        assert type(mapped) is expected, (exc, mapped)
        assert mapped.retryable is expected.retryable
        assert "litellm." not in mapped.message, mapped.message


# -- embeddings, models, health, config ------------------------------------------------------


async def test_embed_through_gemini_batch_embed(driver, fake_gemini):
    model = ModelSpec(id="gem/gemini-embedding-001", name="gemini-embedding-001", provider="gem")
    result = await driver.embed(["alpha", "be", "alpha"], model)
    assert len(result.vectors) == 3 and all(len(v) == fake_gemini.embedding_dim for v in result.vectors)
    assert result.vectors[0] == result.vectors[2] != result.vectors[1]
    seen = fake_gemini.requests[-1]
    assert seen.path == "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    assert len(seen.body["requests"]) == 3
    assert (await driver.embed([], model)).vectors == []


async def test_list_models_from_catalog_and_options(fake_gemini, listed_models):
    chat = listed_models("gemini", tools=True, priced=True)
    listed, configured = chat[0], chat[-1]  # models of litellm's map today (tests/conftest.py)
    embedder = listed_models("gemini", mode="embedding")[0]
    d = make_driver(
        fake_gemini, options={"models": ["my-tuned-model", {"name": configured.name, "quality": 0.9}]}
    )
    specs = {s.name: s for s in await d.list_models()}
    spec = specs[listed.name]
    assert spec.id == f"gem/{listed.name}" and spec.provider == "gem"
    assert spec.context_window == listed.context_window and spec.capabilities.tools
    assert spec.input_cost_per_token > 0
    assert specs[embedder.name].capabilities.embeddings
    assert specs["my-tuned-model"].id == "gem/my-tuned-model"
    mine = specs[configured.name]
    assert mine.quality == 0.9, "configured facts win"
    assert mine.context_window == configured.context_window, "and the catalog fills the rest"


async def test_health_is_cheap_and_honest(driver, fake_gemini, monkeypatch):
    status = await driver.health()
    assert status.ok, status.detail
    assert not any(":generateContent" in r.path for r in fake_gemini.requests), "no tokens spent"

    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    keyless = await make_driver(fake_gemini, api_key=None).health()
    assert not keyless.ok and "API key" in keyless.detail

    await fake_gemini.refuse()
    down = await driver.health()
    assert not down.ok and "connect" in down.detail


async def test_litellm_stays_quiet(driver, fake_gemini, capfd):
    fake_gemini.fault = Fault(kind="status", status=500, message="boom", times=1)
    with pytest.raises(UpstreamUnavailableError):
        await driver.chat(ask(), FLASH)
    out, err = capfd.readouterr()
    assert "Give Feedback" not in out + err and "LiteLLM" not in out + err


def test_listing_models_and_health_do_not_import_litellm():
    """The kernel builds every configured driver at start; only a request may pay for litellm."""
    code = (
        "import asyncio, sys\n"
        "from app.kernel.drivers import create_driver, ProviderConfig\n"
        "d = create_driver(ProviderConfig(id='g', kind='litellm', api_key='k',"
        " options={'litellm_provider': 'gemini'}))\n"
        "specs = asyncio.run(d.list_models())\n"
        "health = asyncio.run(d.health())\n"
        "print(len(specs) > 10, health.ok, 'litellm' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True", "False"]


async def test_config_problems_are_config_errors(fake_gemini):
    with pytest.raises(ConfigError, match="base_url"):
        create_driver(
            ProviderConfig(
                id="x", kind="litellm", base_url="localhost:8080", options={"litellm_provider": "gemini"}
            )
        )
    with pytest.raises(ConfigError):
        create_driver(ProviderConfig(id="x", kind="litellm", options={}))
    with pytest.raises(ConfigError):
        create_driver(
            ProviderConfig(id="x", kind="litellm", options={"litellm_provider": "gemini", "models": "a"})
        )
    bogus = make_driver(fake_gemini, options={"litellm_provider": "no-such-vendor"})
    with pytest.raises(ConfigError, match="no-such-vendor"):
        await bogus.chat(ask(), FLASH)
    assert fake_gemini.requests == []


def test_a_vendor_body_shown_as_a_python_dict_becomes_its_message_in_words():
    from app.kernel.drivers.litellm_driver import litellm_error

    class VendorError(Exception):  # what litellm wraps: a vendor's exception with its status
        status_code = 503

    exc = VendorError("litellm.InternalServerError: OpenAIException - {'error': {'message': 'model overloaded', "
                      "'type': 'server_error'}}")
    error = litellm_error(exc, provider="x", model="m")
    assert error.message == "model overloaded (HTTP 503 from provider x)" and error.retryable
