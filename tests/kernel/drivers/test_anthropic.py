"""The Anthropic driver against the fake Anthropic API over loopback."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from typing import Any

import httpx
import pytest

from app.kernel.canonical import ChatChunk, ChatMessage, ChatRequest, FunctionCall, ModelSpec, ToolCall
from app.kernel.compat.anthropic import ANTHROPIC_VERSION, DEFAULT_MAX_TOKENS
from app.kernel.drivers import anthropic as anthropic_driver
from app.kernel.drivers import create_driver
from app.kernel.drivers.anthropic import AnthropicDriver
from app.kernel.drivers.base import ProviderConfig
from app.kernel.errors import (
    AuthenticationError,
    ByenatosError,
    ContextWindowExceededError,
    NotFoundError,
    NotSupportedError,
    PermissionDeniedError,
    RateLimitError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.upstream import Fault

KEY = "sk-ant-test"
SONNET = ModelSpec(id="anthropic/claude-fake-sonnet", name="claude-fake-sonnet", provider="anthropic")
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def make_driver(fake: FakeAnthropic, **kw: Any) -> AnthropicDriver:
    config = ProviderConfig(id="anthropic", kind="anthropic", base_url=fake.url, api_key=KEY, **kw)
    driver = create_driver(config)
    assert isinstance(driver, AnthropicDriver)
    return driver


@pytest.fixture
async def driver(anthropic_upstream: FakeAnthropic):
    anthropic_upstream.api_key = KEY
    d = make_driver(anthropic_upstream, timeout=10.0)
    try:
        yield d
    finally:
        await d.aclose()


def ask(*messages: dict[str, Any], **kw: Any) -> ChatRequest:
    if not messages:
        messages = ({"role": "user", "content": "Hello?"},)
    return ChatRequest(model="default", messages=[ChatMessage(**m) for m in messages], **kw)


async def collect(driver: AnthropicDriver, request: ChatRequest, spec: ModelSpec = SONNET) -> list[ChatChunk]:
    return [chunk async for chunk in driver.stream(request, spec)]


def assembled_calls(chunks: list[ChatChunk]) -> list[dict[str, Any]]:
    calls: dict[int, dict[str, Any]] = {}
    for chunk in chunks:
        for call in chunk.choices[0].delta.tool_calls or [] if chunk.choices else []:
            slot = calls.setdefault(call.index, {"id": None, "name": None, "arguments": ""})
            slot["id"] = call.id or slot["id"]
            slot["name"] = call.function.name or slot["name"]
            slot["arguments"] += call.function.arguments
    return [calls[i] for i in sorted(calls)]


# -- chat ----------------------------------------------------------------------------------


async def test_chat_sends_anthropic_headers_system_and_default_max_tokens(driver, anthropic_upstream) -> None:
    request = ask({"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello?"})
    response = await driver.chat(request, SONNET)

    assert response.message.content == anthropic_upstream.reply_text
    assert response.finish_reason == "stop"
    assert response.model == "claude-fake-sonnet"
    assert response.usage.prompt_tokens == 3  # "Be brief." + "Hello?" in the fake's word count
    assert response.usage.completion_tokens == len(anthropic_upstream.reply_text.split())
    seen = anthropic_upstream.requests[-1]
    assert (seen.method, seen.path) == ("POST", "/v1/messages")
    assert seen.headers["x-api-key"] == KEY
    assert seen.headers["anthropic-version"] == ANTHROPIC_VERSION
    assert seen.body["model"] == "claude-fake-sonnet"  # the spec's name, not the alias
    assert seen.body["system"] == "Be brief."
    assert seen.body["messages"] == [{"role": "user", "content": "Hello?"}]
    assert seen.body["max_tokens"] == DEFAULT_MAX_TOKENS
    assert "stream" not in seen.body


async def test_max_tokens_comes_from_the_request_or_the_spec(driver, anthropic_upstream) -> None:
    spec = SONNET.model_copy(update={"max_output_tokens": 8192})
    await driver.chat(ask(), spec)
    assert anthropic_upstream.requests[-1].body["max_tokens"] == 8192
    response = await driver.chat(ask(max_tokens=2), spec)
    assert anthropic_upstream.requests[-1].body["max_tokens"] == 2
    assert response.finish_reason == "length"  # the fake stops at max_tokens like the API


async def test_a_base_url_ending_in_v1_still_works(anthropic_upstream) -> None:
    d = AnthropicDriver(ProviderConfig(id="a", kind="anthropic", base_url=f"{anthropic_upstream.url}/v1/"))
    try:
        response = await d.chat(ask(), SONNET)
    finally:
        await d.aclose()
    assert response.message.content == anthropic_upstream.reply_text
    assert anthropic_upstream.requests[-1].path == "/v1/messages"
    assert "x-api-key" not in anthropic_upstream.requests[-1].headers  # no key configured, none sent


async def test_tool_use_answers_become_tool_calls(driver, anthropic_upstream) -> None:
    anthropic_upstream.tool_use = {"name": "get_weather", "input": {"city": "Oslo", "days": [1, 2]}}
    response = await driver.chat(ask(tools=[WEATHER_TOOL], tool_choice="required"), SONNET)

    assert response.finish_reason == "tool_calls"
    call = response.message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Oslo", "days": [1, 2]}
    sent = anthropic_upstream.requests[-1].body
    assert sent["tools"][0]["input_schema"] == WEATHER_TOOL["function"]["parameters"]
    assert sent["tool_choice"] == {"type": "any"}


async def test_a_tool_conversation_is_accepted_upstream(driver, anthropic_upstream) -> None:
    call = ToolCall(id="toolu_1", function=FunctionCall(name="get_weather", arguments='{"city": "Oslo"}'))
    request = ask(
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "12°C"},
        tools=[WEATHER_TOOL],
    )
    response = await driver.chat(request, SONNET)
    assert response.message.content == anthropic_upstream.reply_text
    sent = anthropic_upstream.requests[-1].body["messages"]
    assert sent[1]["content"][0] == {
        "type": "tool_use",
        "id": "toolu_1",
        "name": "get_weather",
        "input": {"city": "Oslo"},
    }
    assert sent[2] == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "12°C"}],
    }


async def test_a_request_anthropic_cannot_take_fails_before_any_http(driver, anthropic_upstream) -> None:
    with pytest.raises(NotSupportedError):
        await driver.chat(ask(n=3), SONNET)
    with pytest.raises(NotSupportedError):
        await collect(driver, ask(n=3))
    assert anthropic_upstream.requests == []


# -- stream --------------------------------------------------------------------------------


async def test_stream_yields_text_then_finish_and_usage(driver, anthropic_upstream) -> None:
    chunks = await collect(
        driver, ask({"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"})
    )

    assert "".join(c.text() for c in chunks) == anthropic_upstream.reply_text
    assert len([c for c in chunks if c.text()]) > 1  # really streamed, word by word
    last = chunks[-1]
    assert last.choices[0].finish_reason == "stop"
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (
        3,
        len(anthropic_upstream.reply_text.split()),
    )
    assert anthropic_upstream.requests[-1].body["stream"] is True
    assert anthropic_upstream.requests[-1].body["system"] == "Be brief."
    assert anthropic_upstream.streams_finished == 1


async def test_streamed_input_json_deltas_assemble_into_tool_call_arguments(
    driver, anthropic_upstream
) -> None:
    tool_input = {"city": "Reykjavík", "units": "metric", "days": 3}
    anthropic_upstream.tool_use = {"name": "get_weather", "input": tool_input}
    chunks = await collect(driver, ask(tools=[WEATHER_TOOL]))

    fragments = [c for c in chunks if c.choices and c.choices[0].delta.tool_calls]
    assert len(fragments) > 2  # a start plus several input_json_delta pieces
    [call] = assembled_calls(chunks)
    assert call["name"] == "get_weather" and call["id"].startswith("toolu_")
    assert json.loads(call["arguments"]) == tool_input
    assert "".join(c.text() for c in chunks) == "Let me check."
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


# -- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected", "retryable"),
    [
        (401, AuthenticationError, False),
        (403, PermissionDeniedError, False),
        (404, NotFoundError, False),
        (500, UpstreamUnavailableError, True),
        (529, UpstreamUnavailableError, True),
    ],
)
@pytest.mark.parametrize("streaming", [False, True])
async def test_http_errors_become_typed_errors(
    driver, anthropic_upstream, status, expected, retryable, streaming
) -> None:
    anthropic_upstream.fault = Fault(kind="status", status=status, message=f"injected {status}")
    with pytest.raises(expected) as info:
        if streaming:
            await collect(driver, ask())
        else:
            await driver.chat(ask(), SONNET)
    assert type(info.value) is expected
    assert info.value.retryable is retryable
    assert f"injected {status}" in info.value.message
    assert info.value.provider == "anthropic"


async def test_a_wrong_key_is_an_authentication_error(anthropic_upstream) -> None:
    anthropic_upstream.api_key = "sk-ant-right"
    d = make_driver(anthropic_upstream)  # configured with KEY, which is not it
    try:
        with pytest.raises(AuthenticationError, match="x-api-key"):
            await d.chat(ask(), SONNET)
    finally:
        await d.aclose()


async def test_429_carries_retry_after(driver, anthropic_upstream) -> None:
    anthropic_upstream.fault = Fault(
        kind="status", status=429, message="rate limited", headers={"retry-after": "7"}
    )
    with pytest.raises(RateLimitError) as info:
        await driver.chat(ask(), SONNET)
    assert info.value.retryable and info.value.retry_after == 7.0


@pytest.mark.parametrize("streaming", [False, True])
async def test_prompt_too_long_is_a_context_window_error(driver, anthropic_upstream, streaming) -> None:
    anthropic_upstream.context_window = 3
    request = ask({"role": "user", "content": "far too many words for this tiny window"})
    with pytest.raises(ContextWindowExceededError, match="prompt is too long") as info:
        if streaming:
            await collect(driver, request)
        else:
            await driver.chat(request, SONNET)
    assert not info.value.retryable


@pytest.mark.parametrize("streaming", [False, True])
async def test_a_refused_connection_is_retryable(driver, anthropic_upstream, streaming) -> None:
    await anthropic_upstream.refuse()
    with pytest.raises(UpstreamUnavailableError) as info:
        if streaming:
            await collect(driver, ask())
        else:
            await driver.chat(ask(), SONNET)
    assert info.value.retryable


async def test_a_hanging_upstream_times_out(anthropic_upstream) -> None:
    anthropic_upstream.fault = Fault(kind="hang")
    d = make_driver(anthropic_upstream, timeout=0.3)
    try:
        with pytest.raises(UpstreamTimeoutError) as info:
            await d.chat(ask(), SONNET)
    finally:
        await d.aclose()
    assert info.value.retryable
    assert anthropic_upstream.hanging.is_set()


async def test_a_stream_cut_mid_way_raises_after_the_first_chunks(driver, anthropic_upstream) -> None:
    anthropic_upstream.fault = Fault(kind="disconnect", after_chunks=4)
    received: list[ChatChunk] = []
    with pytest.raises(UpstreamUnavailableError) as info:
        async for chunk in driver.stream(ask(), SONNET):
            received.append(chunk)
    assert info.value.retryable
    assert received and received[-1].choices[0].finish_reason is None  # never saw a proper end
    assert anthropic_upstream.streams_finished == 0


async def test_a_dropped_non_streaming_answer_is_retryable(driver, anthropic_upstream) -> None:
    anthropic_upstream.fault = Fault(kind="disconnect")
    with pytest.raises(UpstreamUnavailableError):
        await driver.chat(ask(), SONNET)


@pytest.mark.parametrize(
    ("kind", "expected", "retryable"),
    [("overloaded_error", UpstreamUnavailableError, True), ("invalid_request_error", ByenatosError, False)],
)
async def test_a_mid_stream_error_event_raises_typed(
    driver, anthropic_upstream, kind, expected, retryable
) -> None:
    anthropic_upstream.stream_error = (kind, "Overloaded")
    texts = []
    with pytest.raises(expected) as info:
        async for chunk in driver.stream(ask(), SONNET):
            texts.append(chunk.text())
    assert "".join(texts)  # the error came after real output
    assert info.value.retryable is retryable
    assert "Overloaded" in info.value.message


async def test_closing_a_stream_early_cancels_the_upstream(driver, anthropic_upstream) -> None:
    anthropic_upstream.reply_text = " ".join(f"word{i}" for i in range(500))
    anthropic_upstream.chunk_delay = 0.005  # the fake keeps generating while we walk away
    stream = driver.stream(ask(), SONNET)
    async for chunk in stream:
        if chunk.text():
            break
    await stream.aclose()
    await asyncio.wait_for(anthropic_upstream.cancelled.wait(), timeout=5)
    assert anthropic_upstream.streams_finished == 0


async def test_cancelling_the_consumer_task_cancels_the_upstream(driver, anthropic_upstream) -> None:
    anthropic_upstream.reply_text = " ".join(f"word{i}" for i in range(500))
    anthropic_upstream.chunk_delay = 0.005
    first_text = asyncio.Event()

    async def consume() -> None:
        async for chunk in driver.stream(ask(), SONNET):
            if chunk.text():
                first_text.set()

    task = asyncio.create_task(consume())
    await first_text.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(anthropic_upstream.cancelled.wait(), timeout=5)


# -- models and health ---------------------------------------------------------------------


async def test_list_models_reads_ids_display_names_and_limits(driver, anthropic_upstream) -> None:
    models = {m.name: m for m in await driver.list_models()}
    assert set(models) == {"claude-fake-sonnet", "claude-fake-haiku"}
    sonnet = models["claude-fake-sonnet"]
    assert sonnet.id == "anthropic/claude-fake-sonnet" and sonnet.provider == "anthropic"
    assert sonnet.display_name == "Claude Fake Sonnet"
    assert (sonnet.context_window, sonnet.max_output_tokens) == (200_000, 64_000)
    assert sonnet.capabilities.tools and sonnet.capabilities.vision and not sonnet.local
    assert models["claude-fake-haiku"].context_window == anthropic_driver.DEFAULT_CONTEXT_WINDOW
    assert anthropic_upstream.requests[-1].headers["x-api-key"] == KEY


async def test_list_models_follows_pages_and_skips_retired_models(
    driver, anthropic_upstream, monkeypatch
) -> None:
    monkeypatch.setattr(anthropic_driver, "MODEL_PAGE_SIZE", 2)
    anthropic_upstream.models = [{"id": f"claude-{i}", "display_name": f"Claude {i}"} for i in range(5)]
    anthropic_upstream.models[3]["lifecycle"] = "retired"
    names = [m.name for m in await driver.list_models()]
    assert names == ["claude-0", "claude-1", "claude-2", "claude-4"]
    assert len([r for r in anthropic_upstream.requests if r.path == "/v1/models"]) == 3


@pytest.mark.parametrize("fault", ["status", "refuse"])
async def test_list_models_falls_back_to_nothing(driver, anthropic_upstream, fault) -> None:
    if fault == "refuse":
        await anthropic_upstream.refuse()
    else:
        anthropic_upstream.fault = Fault(kind="status", status=401)
    assert await driver.list_models() == []


async def test_health(driver, anthropic_upstream) -> None:
    healthy = await driver.health()
    assert healthy.ok and healthy.latency_ms is not None
    anthropic_upstream.fault = Fault(kind="status", status=401, message="invalid x-api-key")
    unauthorised = await driver.health()
    assert not unauthorised.ok and "invalid x-api-key" in unauthorised.detail
    await anthropic_upstream.refuse()
    assert not (await driver.health()).ok


# -- the fake validates like the real API ------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ({"model": "m", "messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
        ({"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}, "system"),
        ({"model": "m", "max_tokens": 5, "messages": [{"role": "tool", "content": "x"}]}, "role"),
    ],
)
async def test_the_fake_refuses_what_the_api_refuses(anthropic_upstream, body, match) -> None:
    async with httpx.AsyncClient(base_url=anthropic_upstream.url) as client:
        response = await client.post(
            "/v1/messages", json=body, headers={"anthropic-version": ANTHROPIC_VERSION}
        )
    assert response.status_code == 400
    error = response.json()
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert match in error["error"]["message"]


async def test_the_fake_allows_consecutive_user_messages(anthropic_upstream) -> None:
    body = {
        "model": "m",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
    }
    async with httpx.AsyncClient(base_url=anthropic_upstream.url) as client:
        response = await client.post(
            "/v1/messages", json=body, headers={"anthropic-version": ANTHROPIC_VERSION}
        )
    assert response.status_code == 200 and response.json()["type"] == "message"


def test_importing_the_driver_stays_light() -> None:
    code = (
        "import sys, app.kernel.drivers.anthropic\n"
        "heavy = {'litellm', 'numpy', 'chromadb', 'llama_cpp', 'onnxruntime', 'anthropic'} & set(sys.modules)\n"
        "assert not heavy, heavy"
    )
    subprocess.run(
        [sys.executable, "-c", code], check=True, cwd=str(__import__("pathlib").Path(__file__).parents[3])
    )


async def test_an_http_error_is_anthropics_message_in_words(driver, anthropic_upstream) -> None:
    anthropic_upstream.fault = Fault(kind="status", status=529, message="Overloaded")
    with pytest.raises(UpstreamUnavailableError) as info:
        await driver.chat(ask(), SONNET)
    assert info.value.message == "Overloaded (HTTP 529 from provider anthropic)"  # not the JSON it came in
