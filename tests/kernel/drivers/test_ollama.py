"""The Ollama driver against the fake Ollama server on loopback."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from app.kernel.canonical import ChatRequest, ModelSpec, Repository, model_id
from app.kernel.drivers import create_driver
from app.kernel.drivers.base import ProviderConfig
from app.kernel.drivers.ollama import DEFAULT_BASE_URL, FALLBACK_CONTEXT, OllamaDriver, vendor_of
from app.kernel.errors import (
    BadRequestError,
    ContextWindowExceededError,
    ModelNotFoundError,
    NotFoundError,
    NotSupportedError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from tests.fakes.upstream import Fault

LLAMA = "llama3.2:latest"
EMBEDDER = "nomic-embed-text:latest"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.fixture
async def make_driver(ollama_upstream):
    drivers: list[OllamaDriver] = []

    def make(**options) -> OllamaDriver:
        timeout = options.pop("timeout", 5.0)
        api_key = options.pop("api_key", None)
        config = ProviderConfig(
            id="ollama",
            kind="ollama",
            base_url=ollama_upstream.url,
            options=options,
            timeout=timeout,
            api_key=api_key,
        )
        drivers.append(OllamaDriver(config))
        return drivers[-1]

    yield make
    for driver in drivers:
        await driver.aclose()


@pytest.fixture
def driver(make_driver) -> OllamaDriver:
    return make_driver()


def spec(name: str = LLAMA, context_window: int = 131_072) -> ModelSpec:
    return ModelSpec(
        id=model_id("ollama", name), name=name, provider="ollama", context_window=context_window, local=True
    )


def ask(text: str = "hi", **kw) -> ChatRequest:
    return ChatRequest(model="default", messages=[{"role": "user", "content": text}], **kw)


def chat_bodies(fake) -> list[dict]:
    return [r.body for r in fake.requests if r.path == "/api/chat"]


# -- construction ------------------------------------------------------------------------------
async def test_registered_kind_and_defaults():
    driver = create_driver(ProviderConfig(id="ollama", kind="ollama"))
    assert isinstance(driver, OllamaDriver)
    assert driver.config.base_url == DEFAULT_BASE_URL
    assert driver.manages_memory is True and driver.kind == "ollama"
    await driver.aclose()


@pytest.mark.parametrize(
    ("name", "family", "vendor"),
    [
        ("llama3.2:latest", "llama", "meta"),
        ("mistral:7b", "llama", "mistral"),  # the family is borrowed; the name tells
        ("tinyllama:1.1b", "llama", "tinyllama"),
        ("myorg/custom:q4", "qwen2", "alibaba"),
        ("mystery:latest", "", "unknown"),
    ],
)
def test_vendor_of(name, family, vendor):
    assert vendor_of(name, family) == vendor


# -- chat -----------------------------------------------------------------------------------------
async def test_chat(driver, ollama_upstream):
    response = await driver.chat(ask(), spec())
    assert response.message.content == ollama_upstream.reply_text
    assert response.finish_reason == "stop"
    assert response.usage.completion_tokens == 5 and response.usage.prompt_tokens == 1
    (body,) = chat_bodies(ollama_upstream)
    assert body["model"] == LLAMA and body["stream"] is False
    assert body["messages"] == [{"role": "user", "content": "hi"}]
    assert body["keep_alive"] == "5m"
    assert body["options"] == {"num_ctx": 8192}  # the model's window capped by the default num_ctx


async def test_options_mapping_seen_upstream(make_driver, ollama_upstream):
    driver = make_driver(keep_alive="30m", num_ctx=4096)
    request = ask(temperature=0.1, top_p=0.5, seed=3, stop="###", max_tokens=2)
    response = await driver.chat(request, spec(context_window=2048))
    (body,) = chat_bodies(ollama_upstream)
    assert body["keep_alive"] == "30m"
    assert body["options"] == {
        "temperature": 0.1,
        "top_p": 0.5,
        "seed": 3,
        "stop": ["###"],
        "num_predict": 2,
        "num_ctx": 2048,  # smaller than the configured 4096: the model's own window
    }
    assert response.finish_reason == "length"  # the fake honours num_predict
    assert response.message.content == "Hello from "


async def test_stream(driver, ollama_upstream):
    chunks = [c async for c in driver.stream(ask(), spec())]
    assert "".join(c.text() for c in chunks) == ollama_upstream.reply_text
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert chunks[-1].usage.completion_tokens == 5
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1
    (body,) = chat_bodies(ollama_upstream)
    assert body["stream"] is True and body["keep_alive"] == "5m"


async def test_tool_call_and_tool_result(driver, ollama_upstream):
    ollama_upstream.tool_call = {"name": "get_weather", "arguments": {"city": "Paris"}}
    response = await driver.chat(ask("weather in Paris?", tools=[WEATHER_TOOL]), spec())
    (call,) = response.message.tool_calls
    assert response.finish_reason == "tool_calls"
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    assert call.id.startswith("call_")
    assert chat_bodies(ollama_upstream)[0]["tools"] == [WEATHER_TOOL]

    ollama_upstream.tool_call = None
    follow_up = ChatRequest(
        model="default",
        messages=[
            {"role": "user", "content": "weather in Paris?"},
            response.message,
            {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
        ],
        tools=[WEATHER_TOOL],
    )
    answer = await driver.chat(follow_up, spec())
    assert answer.message.content == ollama_upstream.reply_text
    sent = chat_bodies(ollama_upstream)[1]["messages"]
    assert sent[1]["tool_calls"] == [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]
    assert sent[2] == {"role": "tool", "content": "sunny", "tool_name": "get_weather"}


async def test_streamed_tool_call(driver, ollama_upstream):
    ollama_upstream.tool_call = {"name": "get_weather", "arguments": {"city": "Rome"}}
    chunks = [c async for c in driver.stream(ask(tools=[WEATHER_TOOL]), spec())]
    calls = [tc for c in chunks for tc in c.choices[0].delta.tool_calls or []]
    assert [(tc.index, tc.function.name, json.loads(tc.function.arguments)) for tc in calls] == [
        (0, "get_weather", {"city": "Rome"})
    ]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


async def test_no_tool_call_without_tools(driver, ollama_upstream):
    ollama_upstream.tool_call = {"name": "get_weather", "arguments": {}}
    response = await driver.chat(ask(), spec())
    assert response.message.tool_calls is None and response.finish_reason == "stop"


async def test_json_mode(driver, ollama_upstream):
    response = await driver.chat(ask(response_format={"type": "json_object"}), spec())
    assert json.loads(response.message.content) == {"reply": ollama_upstream.reply_text}
    assert chat_bodies(ollama_upstream)[0]["format"] == "json"


async def test_json_schema(driver, ollama_upstream):
    schema = {"type": "object", "properties": {"age": {"type": "integer"}, "ok": {"type": "boolean"}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": schema}}
    chunks = [c async for c in driver.stream(ask(response_format=fmt), spec())]
    assert json.loads("".join(c.text() for c in chunks)) == {"age": 42, "ok": True}
    assert chat_bodies(ollama_upstream)[0]["format"] == schema


async def test_images_travel_as_base64(driver, ollama_upstream):
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x01" * 8).decode()
    content = [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}},
    ]
    await driver.chat(ChatRequest(model="m", messages=[{"role": "user", "content": content}]), spec())
    assert chat_bodies(ollama_upstream)[0]["messages"] == [
        {"role": "user", "content": "what is this?", "images": [png]}
    ]


async def test_bad_input_fails_before_any_request(driver, ollama_upstream):
    content = [{"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]
    with pytest.raises(NotSupportedError) as caught:
        await driver.chat(ChatRequest(model="m", messages=[{"role": "user", "content": content}]), spec())
    assert caught.value.provider == "ollama" and caught.value.model == LLAMA
    with pytest.raises(BadRequestError):
        [c async for c in driver.stream(ask(response_format={"type": "json_schema"}), spec())]
    assert ollama_upstream.requests == []


async def test_api_key_becomes_a_bearer_token(make_driver, ollama_upstream):
    await make_driver(api_key="sk-proxy").chat(ask(), spec())
    assert ollama_upstream.requests[0].headers["Authorization"] == "Bearer sk-proxy"


# -- models ---------------------------------------------------------------------------------------
async def test_list_models(driver, ollama_upstream):
    specs = {s.name: s for s in await driver.list_models()}
    assert set(specs) == set(ollama_upstream.models)
    llama, qwen, embedder = specs[LLAMA], specs["qwen2.5:0.5b"], specs[EMBEDDER]
    assert llama.id == "ollama/llama3.2:latest" and llama.provider == "ollama"
    assert (llama.vendor, qwen.vendor, embedder.vendor) == ("meta", "alibaba", "nomic")
    assert all(s.local and s.repository is Repository.LOCAL for s in specs.values())
    assert llama.memory_bytes == ollama_upstream.models[LLAMA]["size"]
    # from /api/show: model_info["<arch>.context_length"], capped by the num_ctx we run with
    assert (llama.context_window, qwen.context_window, embedder.context_window) == (8192, 8192, 2048)
    assert llama.capabilities.tools and llama.capabilities.json_mode and not llama.capabilities.embeddings
    assert embedder.capabilities.embeddings and not embedder.capabilities.chat
    assert llama.quality > qwen.quality  # 3.2B over 0.5B
    shown = sorted(r.body["model"] for r in ollama_upstream.requests if r.path == "/api/show")
    assert shown == sorted(ollama_upstream.models)


async def test_context_window_follows_num_ctx_option(make_driver):
    specs = {s.name: s for s in await make_driver(num_ctx=65_536).list_models()}
    assert specs[LLAMA].context_window == 65_536  # trained for 131072, run with 65536
    assert specs["qwen2.5:0.5b"].context_window == 32_768  # its own window is smaller


async def test_show_requests_run_concurrently(driver, ollama_upstream):
    ollama_upstream.hold_show = asyncio.Event()
    listing = asyncio.create_task(driver.list_models())
    try:
        # all three are held at once: a sequential driver would never get past one
        await asyncio.wait_for(ollama_upstream.wait_for_shows(3), timeout=5)
    finally:
        ollama_upstream.hold_show.set()
    assert len(await listing) == 3


async def test_list_models_survives_failing_show(driver, ollama_upstream):
    ollama_upstream.broken_show = {LLAMA}
    specs = {s.name: s for s in await driver.list_models()}
    assert specs[LLAMA].context_window == FALLBACK_CONTEXT
    assert specs["qwen2.5:0.5b"].context_window == 8192


async def test_list_models_survives_hanging_show(make_driver, ollama_upstream):
    ollama_upstream.hold_show = asyncio.Event()  # never released
    specs = await make_driver(show_timeout=0.1).list_models()
    assert len(specs) == 3 and all(s.context_window == FALLBACK_CONTEXT for s in specs)


async def test_list_models_when_down(driver, ollama_upstream):
    await ollama_upstream.refuse()
    with pytest.raises(UpstreamUnavailableError):
        await driver.list_models()


async def test_load_unload_and_loaded_models(driver, ollama_upstream):
    assert await driver.loaded_models() == []
    await driver.load(spec())
    assert await driver.loaded_models() == [LLAMA]
    load = next(r.body for r in ollama_upstream.requests if r.path == "/api/generate")
    assert load == {"model": LLAMA, "keep_alive": "5m", "stream": False, "options": {"num_ctx": 8192}}
    assert "prompt" not in load
    expires = datetime.fromisoformat(ollama_upstream.loaded[LLAMA].isoformat())
    assert timedelta(minutes=4) < expires - datetime.now(UTC) <= timedelta(minutes=5)

    await driver.load(spec(EMBEDDER, 2048))
    assert sorted(await driver.loaded_models()) == [LLAMA, EMBEDDER]
    await driver.unload(spec())
    assert await driver.loaded_models() == [EMBEDDER]
    unload = [r.body for r in ollama_upstream.requests if r.path == "/api/generate"][-1]
    assert unload["keep_alive"] == 0


async def test_chat_loads_the_model_upstream(driver, ollama_upstream):
    await driver.chat(ask(), spec())
    assert await driver.loaded_models() == [LLAMA]


async def test_load_unknown_model(driver):
    with pytest.raises(ModelNotFoundError):
        await driver.load(spec("ghost:latest"))


# -- embeddings ----------------------------------------------------------------------------------
async def test_embed(driver, ollama_upstream):
    result = await driver.embed(["why is the sky blue?", "grass"], spec(EMBEDDER, 2048))
    assert result.vectors == [ollama_upstream.vector("why is the sky blue?"), ollama_upstream.vector("grass")]
    assert result.model == EMBEDDER and result.usage.prompt_tokens == 6
    body = next(r.body for r in ollama_upstream.requests if r.path == "/api/embed")
    assert body == {"model": EMBEDDER, "input": ["why is the sky blue?", "grass"], "keep_alive": "5m"}


async def test_embed_nothing_asks_nothing(driver, ollama_upstream):
    assert (await driver.embed([], spec(EMBEDDER))).vectors == []
    assert ollama_upstream.requests == []


# -- health ---------------------------------------------------------------------------------------
async def test_health_up(driver, ollama_upstream):
    status = await driver.health()
    assert status.ok and status.latency_ms is not None and status.latency_ms >= 0
    assert "0.6.8" in status.detail
    assert ollama_upstream.requests[-1].path == "/api/version"


async def test_health_down(driver, ollama_upstream):
    await ollama_upstream.refuse()
    status = await driver.health()
    assert not status.ok and "connect" in status.detail


async def test_health_hang_is_bounded(make_driver, ollama_upstream):
    ollama_upstream.fault = Fault(kind="hang")
    status = await asyncio.wait_for(make_driver(health_timeout=0.2).health(), timeout=5)
    assert not status.ok and "timed out" in status.detail


# -- errors ---------------------------------------------------------------------------------------
async def test_unknown_model_is_not_found(driver):
    with pytest.raises(NotFoundError) as caught:
        await driver.chat(ask(), spec("ghost:latest"))
    assert isinstance(caught.value, ModelNotFoundError)
    assert "ghost:latest" in caught.value.message and caught.value.model == "ghost:latest"
    with pytest.raises(ModelNotFoundError):
        [c async for c in driver.stream(ask(), spec("ghost:latest"))]


async def test_server_error_is_retryable(driver, ollama_upstream):
    ollama_upstream.fault = Fault(kind="status", status=500, message="llama runner process has terminated")
    with pytest.raises(UpstreamUnavailableError) as caught:
        await driver.chat(ask(), spec())
    assert caught.value.retryable and "llama runner" in caught.value.message


async def test_unsupported_tools_is_not_supported(driver, ollama_upstream):
    ollama_upstream.fault = Fault(
        kind="status", status=400, message="registry.ollama.ai/library/gemma:2b does not support tools"
    )
    with pytest.raises(NotSupportedError):
        [c async for c in driver.stream(ask(tools=[WEATHER_TOOL]), spec())]


async def test_refused(driver, ollama_upstream):
    await ollama_upstream.refuse()
    with pytest.raises(UpstreamUnavailableError, match="connect"):
        await driver.chat(ask(), spec())
    with pytest.raises(UpstreamUnavailableError):
        [c async for c in driver.stream(ask(), spec())]


async def test_hang_times_out(make_driver, ollama_upstream):
    ollama_upstream.fault = Fault(kind="hang")
    with pytest.raises(UpstreamTimeoutError):
        await make_driver(timeout=0.2).chat(ask(), spec())
    assert ollama_upstream.hanging.is_set()


async def test_disconnect_mid_stream(driver, ollama_upstream):
    ollama_upstream.fault = Fault(kind="disconnect", after_chunks=2)
    received = []
    with pytest.raises(UpstreamUnavailableError) as caught:
        async for chunk in driver.stream(ask(), spec()):
            received.append(chunk)
    assert "".join(c.text() for c in received) == "Hello from "
    assert caught.value.retryable


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ("an error was encountered while running the model: CUDA error", UpstreamUnavailableError),
        ("the input length exceeds the context length", ContextWindowExceededError),
    ],
)
async def test_error_inside_stream(driver, ollama_upstream, message, error):
    ollama_upstream.stream_error = message
    received = []
    with pytest.raises(error) as caught:
        async for chunk in driver.stream(ask(), spec()):
            received.append(chunk)
    assert [c.text() for c in received] == ["Hello "]
    assert caught.value.message == message and caught.value.provider == "ollama"


async def test_early_close_cancels_upstream(driver, ollama_upstream):
    ollama_upstream.reply_text = "token " * 2000
    ollama_upstream.stream_pace = 0.002
    stream = driver.stream(ask(), spec())
    first = await anext(stream)
    assert first.text() == "token "
    await stream.aclose()
    await asyncio.wait_for(ollama_upstream.cancelled.wait(), timeout=5)


async def test_cancelled_consumer_cancels_upstream(driver, ollama_upstream):
    ollama_upstream.reply_text = "token " * 2000
    ollama_upstream.stream_pace = 0.002
    got_one = asyncio.Event()

    async def consume() -> None:
        async for _ in driver.stream(ask(), spec()):
            got_one.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(got_one.wait(), timeout=5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(ollama_upstream.cancelled.wait(), timeout=5)


# -- the fake's other faces -------------------------------------------------------------------------
async def test_fake_serves_openai_models_and_ollama_errors(ollama_upstream):
    async with httpx.AsyncClient(base_url=ollama_upstream.url) as client:
        listed = (await client.get("/v1/models")).json()
        missing = await client.post("/api/chat", json={"model": "ghost", "messages": []})
        loaded = await client.post("/api/chat", json={"model": LLAMA, "messages": []})
    assert listed["object"] == "list" and {m["id"] for m in listed["data"]} == set(ollama_upstream.models)
    assert missing.status_code == 404
    assert missing.json() == {"error": 'model "ghost" not found, try pulling it first'}
    assert loaded.json()["done_reason"] == "load" and LLAMA in ollama_upstream.loaded


async def test_a_server_error_is_ollamas_message_in_words(driver, ollama_upstream):
    ollama_upstream.fault = Fault(kind="status", status=500, message="llama runner process has terminated")
    for call in (lambda: driver.chat(ask(), spec()), lambda: _drain(driver.stream(ask(), spec()))):
        with pytest.raises(UpstreamUnavailableError) as caught:
            await call()
        assert caught.value.message == "llama runner process has terminated (HTTP 500 from provider ollama)"
        ollama_upstream.fault = Fault(kind="status", status=500, message="llama runner process has terminated")


async def _drain(stream) -> None:
    async for _ in stream:
        pass
