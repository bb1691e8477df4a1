"""The OpenAI-compatible driver against a fake OpenAI server on a real loopback socket."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from app.kernel import sse
from app.kernel.canonical import ChatChunk, ChatRequest, ModelSpec, Repository
from app.kernel.drivers import ProviderConfig, create_driver, openai_compat
from app.kernel.drivers.openai_compat import OpenAICompatDriver
from app.kernel.errors import (
    AuthenticationError,
    BadRequestError,
    ByenatosError,
    ConfigError,
    ContextWindowExceededError,
    NotFoundError,
    RateLimitError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.upstream import Fault

SPEC = ModelSpec(id="fake/gpt-fake-mini", name="gpt-fake-mini", provider="fake")
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def make_driver(fake: FakeOpenAI, **config: Any) -> OpenAICompatDriver:
    driver = create_driver(ProviderConfig(id="fake", kind="openai", base_url=fake.api_base, **config))
    assert isinstance(driver, OpenAICompatDriver)
    return driver


@pytest.fixture
async def driver(openai_upstream: FakeOpenAI) -> AsyncIterator[OpenAICompatDriver]:
    d = make_driver(openai_upstream)
    yield d
    await d.aclose()


def ask(text: str = "Say hello", **extra: Any) -> ChatRequest:
    # "default" is a socket alias: it must never reach the backend
    return ChatRequest(model="default", messages=[{"role": "user", "content": text}], **extra)


async def collect(stream: AsyncIterator[ChatChunk]) -> list[ChatChunk]:
    return [chunk async for chunk in stream]


def assemble_tool_calls(chunks: list[ChatChunk]) -> list[dict[str, Any]]:
    """Join streamed tool-call deltas by index, as a client would."""
    calls: dict[int, dict[str, Any]] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            for delta in choice.delta.tool_calls or []:
                call = calls.setdefault(delta.index or 0, {"id": None, "name": None, "arguments": ""})
                call["id"] = delta.id or call["id"]
                call["name"] = delta.function.name or call["name"]
                call["arguments"] += delta.function.arguments
    return [calls[i] for i in sorted(calls)]


# -- chat ------------------------------------------------------------------------------------
async def test_chat_returns_the_reply_with_usage(driver, openai_upstream):
    response = await driver.chat(ask("Say hello to me"), SPEC)

    assert response.message.role == "assistant"
    assert response.message.content == openai_upstream.reply_text
    assert response.finish_reason == "stop"
    assert response.usage is not None and response.usage.prompt_tokens == 4
    assert response.usage.total_tokens == response.usage.prompt_tokens + response.usage.completion_tokens


async def test_the_alias_never_reaches_upstream_and_extra_fields_pass_through(driver, openai_upstream):
    await driver.chat(ask(temperature=0.2, logit_bias={"42": -100}, vendor_knob={"x": 1}), SPEC)

    sent = openai_upstream.requests[-1]
    assert sent.path == "/v1/chat/completions"
    assert sent.body["model"] == "gpt-fake-mini"
    assert "default" not in json.dumps(sent.body)
    assert sent.body["temperature"] == 0.2
    assert sent.body["logit_bias"] == {"42": -100}
    assert sent.body["vendor_knob"] == {"x": 1}
    assert sent.body["stream"] is False and "stream_options" not in sent.body


async def test_api_key_and_extra_headers_are_sent(openai_upstream):
    openai_upstream.api_key = "sk-test"
    headers = {"HTTP-Referer": "https://byenatos.app", "X-Title": "ByenatOS"}
    driver = make_driver(openai_upstream, api_key="sk-test", options={"headers": headers})
    try:
        await driver.chat(ask(), SPEC)
    finally:
        await driver.aclose()

    seen = openai_upstream.requests[-1].headers
    assert seen["Authorization"] == "Bearer sk-test"
    assert seen["HTTP-Referer"] == "https://byenatos.app" and seen["X-Title"] == "ByenatOS"


async def test_no_authorization_header_without_a_key(driver, openai_upstream):
    await driver.chat(ask(), SPEC)
    assert "Authorization" not in openai_upstream.requests[-1].headers


async def test_json_mode_passes_response_format_and_returns_json(driver, openai_upstream):
    response = await driver.chat(ask(response_format={"type": "json_object"}), SPEC)

    assert openai_upstream.requests[-1].body["response_format"] == {"type": "json_object"}
    assert json.loads(response.message.text()) == {"reply": openai_upstream.reply_text}


async def test_tool_call_comes_back_whole(driver, openai_upstream):
    openai_upstream.tool_call = {"name": "get_weather", "arguments": {"city": "Oslo"}}

    response = await driver.chat(ask("Weather in Oslo?", tools=[WEATHER_TOOL], tool_choice="auto"), SPEC)

    assert openai_upstream.requests[-1].body["tools"] == [WEATHER_TOOL]
    assert response.finish_reason == "tool_calls"
    (call,) = response.message.tool_calls
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Oslo"}
    assert call.id


# -- streaming -------------------------------------------------------------------------------
async def test_stream_assembles_text_with_finish_reason_and_usage(driver, openai_upstream):
    chunks = await collect(driver.stream(ask("Say hello to me", stream=True), SPEC))

    assert "".join(c.text() for c in chunks) == openai_upstream.reply_text
    assert len([c for c in chunks if c.text()]) > 1  # really streamed, not one lump
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == 4
    sent = openai_upstream.requests[-1].body
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert sent["model"] == "gpt-fake-mini"


async def test_stream_usage_can_be_switched_off_for_servers_that_reject_it(openai_upstream):
    driver = make_driver(openai_upstream, options={"stream_usage": False})
    try:
        chunks = await collect(driver.stream(ask(stream=True, stream_options={"include_usage": True}), SPEC))
    finally:
        await driver.aclose()

    assert "stream_options" not in openai_upstream.requests[-1].body
    assert all(c.usage is None for c in chunks)
    assert "".join(c.text() for c in chunks) == openai_upstream.reply_text


async def test_streamed_tool_call_deltas_assemble_into_the_call(driver, openai_upstream):
    openai_upstream.tool_call = {"name": "get_weather", "arguments": {"city": "Oslo", "unit": "celsius"}}

    chunks = await collect(driver.stream(ask("Weather?", tools=[WEATHER_TOOL], stream=True), SPEC))

    assert (
        sum(1 for c in chunks if c.choices and c.choices[0].delta.tool_calls) > 2
    )  # arguments came in pieces
    (call,) = assemble_tool_calls(chunks)
    assert call["name"] == "get_weather" and call["id"]
    assert json.loads(call["arguments"]) == {"city": "Oslo", "unit": "celsius"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


async def test_a_stream_without_done_still_ends_cleanly_after_its_finish_reason(driver, openai_upstream):
    openai_upstream.send_done = False

    chunks = await collect(driver.stream(ask(stream=True), SPEC))

    assert "".join(c.text() for c in chunks) == openai_upstream.reply_text
    assert chunks[-1].usage is not None


async def test_closing_the_stream_early_stops_the_upstream(driver, openai_upstream):
    openai_upstream.reply_text = "word " * 200
    openai_upstream.chunk_delay = 0.005  # a slow model: plenty still to send when we leave

    stream = driver.stream(ask(stream=True), SPEC)
    first = await anext(stream)
    await stream.aclose()

    assert first.choices[0].delta.role == "assistant"
    await asyncio.wait_for(openai_upstream.cancelled.wait(), 5)
    assert openai_upstream.streams_finished == 0


async def test_cancelling_the_consumer_stops_the_upstream(driver, openai_upstream):
    openai_upstream.reply_text = "word " * 200
    openai_upstream.chunk_delay = 0.005
    got_text = asyncio.Event()

    async def consume() -> None:
        async for chunk in driver.stream(ask(stream=True), SPEC):
            if chunk.text():
                got_text.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(got_text.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    await asyncio.wait_for(openai_upstream.cancelled.wait(), 5)
    assert openai_upstream.streams_finished == 0


async def test_disconnect_mid_stream_after_first_chunks_is_unavailable(driver, openai_upstream):
    openai_upstream.fault = Fault(kind="disconnect", after_chunks=3)
    received: list[ChatChunk] = []

    with pytest.raises(UpstreamUnavailableError) as caught:
        async for chunk in driver.stream(ask(stream=True), SPEC):
            received.append(chunk)

    assert len(received) == 3 and "".join(c.text() for c in received)
    assert caught.value.retryable
    assert caught.value.provider == "fake" and caught.value.model == "gpt-fake-mini"


@pytest.mark.parametrize(
    ("error", "expected", "retryable"),
    [
        (
            {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"},
            RateLimitError,
            True,
        ),
        (
            {"message": "The server had an error", "type": "server_error", "code": None},
            UpstreamUnavailableError,
            True,
        ),
        (
            {"message": "too long", "type": "invalid_request_error", "code": "context_length_exceeded"},
            ContextWindowExceededError,
            False,
        ),
        (
            {"object": "error", "message": "bad stop value", "type": "BadRequestError", "code": 400},  # vLLM
            BadRequestError,
            False,
        ),
    ],
)
async def test_error_event_inside_the_stream_becomes_the_typed_error(
    driver, openai_upstream, error, expected, retryable
):
    openai_upstream.stream_error = error
    received: list[ChatChunk] = []

    with pytest.raises(expected) as caught:
        async for chunk in driver.stream(ask(stream=True), SPEC):
            received.append(chunk)

    assert received  # the error came after the first chunks
    assert type(caught.value) is expected and caught.value.retryable is retryable
    assert caught.value.message == f"{error['message']} (from provider fake)"  # the words, and whose


# -- errors ----------------------------------------------------------------------------------
STATUS_CASES = [
    (Fault(kind="status", status=401, message="Incorrect API key provided"), AuthenticationError, False),
    (Fault(kind="status", status=404, message="The model does not exist"), NotFoundError, False),
    (
        Fault(kind="status", status=429, message="Slow down", headers={"Retry-After": "7"}),
        RateLimitError,
        True,
    ),
    (
        Fault(kind="status", status=400, message="This model's maximum context length is 8192 tokens"),
        ContextWindowExceededError,
        False,
    ),
    (Fault(kind="status", status=500, message="The server had an error"), UpstreamUnavailableError, True),
]


@pytest.mark.parametrize("streaming", [False, True], ids=["chat", "stream"])
@pytest.mark.parametrize(
    ("fault", "expected", "retryable"), STATUS_CASES, ids=lambda v: getattr(v, "status", "")
)
async def test_http_errors_map_to_typed_errors(
    driver, openai_upstream, fault, expected, retryable, streaming
):
    openai_upstream.fault = fault

    with pytest.raises(ByenatosError) as caught:
        if streaming:
            await collect(driver.stream(ask(stream=True), SPEC))
        else:
            await driver.chat(ask(), SPEC)

    error = caught.value
    assert type(error) is expected
    assert error.retryable is retryable
    assert fault.message in error.message
    if expected is RateLimitError:
        assert error.retry_after == 7.0


async def test_wrong_key_is_an_authentication_error(openai_upstream):
    openai_upstream.api_key = "sk-right"
    driver = make_driver(openai_upstream, api_key="sk-wrong")
    try:
        with pytest.raises(AuthenticationError, match="Incorrect API key"):
            await driver.chat(ask(), SPEC)
    finally:
        await driver.aclose()


async def test_unknown_model_on_a_strict_server_is_not_found(driver, openai_upstream):
    openai_upstream.strict_models = True
    missing = SPEC.model_copy(update={"name": "no-such-model"})

    with pytest.raises(NotFoundError, match="no-such-model"):
        await driver.chat(ask(), missing)


async def test_refused_connection_is_unavailable_and_retryable(driver, openai_upstream):
    await openai_upstream.refuse()

    with pytest.raises(UpstreamUnavailableError) as caught:
        await driver.chat(ask(), SPEC)
    assert caught.value.retryable

    with pytest.raises(UpstreamUnavailableError):
        await collect(driver.stream(ask(stream=True), SPEC))


async def test_a_hanging_upstream_times_out(openai_upstream):
    openai_upstream.fault = Fault(kind="hang")
    driver = make_driver(openai_upstream, timeout=0.2)
    try:
        with pytest.raises(UpstreamTimeoutError) as caught:
            await driver.chat(ask(), SPEC)
    finally:
        await driver.aclose()

    assert openai_upstream.hanging.is_set()
    assert caught.value.retryable
    await asyncio.wait_for(openai_upstream.cancelled.wait(), 5)  # the fake saw us give up


# -- embeddings, models, health ---------------------------------------------------------------
async def test_embed_returns_one_vector_per_text_in_order(driver, openai_upstream):
    texts = ["alpha", "beta gamma", "delta"]

    result = await driver.embed(texts, SPEC.model_copy(update={"name": "text-embedding-fake"}))

    assert result.vectors == [openai_upstream.vector(t) for t in texts]  # floats survive JSON exactly
    assert all(len(v) == 8 for v in result.vectors)
    assert result.usage.prompt_tokens == 4
    sent = openai_upstream.requests[-1]
    assert sent.path == "/v1/embeddings" and sent.body == {"model": "text-embedding-fake", "input": texts}


async def test_list_models_builds_local_specs_with_context_windows(driver, openai_upstream):
    openai_upstream.models = [
        "plain-model",
        {"id": "vllm-model", "max_model_len": 32768},
        {"id": "router-model", "context_length": 131072},
        {"id": "nomic-embed-text"},
    ]

    specs = {s.name: s for s in await driver.list_models()}

    assert set(specs) == {"plain-model", "vllm-model", "router-model", "nomic-embed-text"}
    assert specs["vllm-model"].id == "fake/vllm-model" and specs["vllm-model"].provider == "fake"
    assert specs["vllm-model"].context_window == 32768
    assert specs["router-model"].context_window == 131072
    assert specs["plain-model"].context_window == ModelSpec.model_fields["context_window"].default
    assert all(s.local and s.repository is Repository.LOCAL for s in specs.values())
    assert specs["nomic-embed-text"].capabilities.embeddings
    assert openai_upstream.requests[-1].method == "GET" and openai_upstream.requests[-1].path == "/v1/models"


def test_a_remote_server_yields_cloud_specs():
    driver = OpenAICompatDriver(
        ProviderConfig(id="openrouter", kind="openai", base_url="https://openrouter.ai/api/v1")
    )
    entry = {
        "id": "openai/gpt-4o",
        "context_length": 128000,
        "pricing": {"prompt": "0.0000025", "completion": "1e-5"},
    }

    spec = driver._spec(entry)

    assert spec.id == "openrouter/openai/gpt-4o" and spec.vendor == "openai"
    assert not spec.local and spec.repository is Repository.CLOUD
    assert spec.input_cost_per_token == pytest.approx(2.5e-6) and spec.output_cost_per_token == pytest.approx(
        1e-5
    )


async def test_health_ok_reports_latency(driver, openai_upstream):
    status = await driver.health()

    assert status.ok and status.latency_ms is not None and status.latency_ms >= 0
    assert openai_upstream.requests[-1].path == "/v1/models"


async def test_health_down_reports_without_raising(driver, openai_upstream):
    await openai_upstream.refuse()

    status = await driver.health()

    assert not status.ok and status.detail
    assert status.latency_ms is not None


async def test_health_of_a_hanging_server_gives_up_after_its_short_timeout(
    driver, openai_upstream, monkeypatch
):
    monkeypatch.setattr(openai_compat, "HEALTH_TIMEOUT", 0.2)  # 2 s in real life; the test need not wait
    openai_upstream.fault = Fault(kind="hang")

    status = await driver.health()  # the provider's 600 s request ceiling must not apply

    assert not status.ok and "timed out" in status.detail


# -- raw pass-through --------------------------------------------------------------------------
async def test_chat_raw_returns_the_upstream_json_as_is(driver, openai_upstream):
    body = {"model": "gpt-fake-mini", "messages": [{"role": "user", "content": "hi"}], "my_extra": True}

    data = await driver.chat_raw(body)

    assert data["object"] == "chat.completion" and data["system_fingerprint"] == "fp_fake"
    assert data["choices"][0]["message"]["content"] == openai_upstream.reply_text
    assert openai_upstream.requests[-1].body == body


async def test_chat_raw_errors_are_typed(driver, openai_upstream):
    openai_upstream.fault = Fault(kind="status", status=429, headers={"Retry-After": "3"})

    with pytest.raises(RateLimitError) as caught:
        await driver.chat_raw({"model": "gpt-fake-mini", "messages": []})
    assert caught.value.retry_after == 3.0


async def test_stream_raw_yields_the_upstream_sse_in_batches_of_whole_events(driver, openai_upstream):
    body = {"model": "gpt-fake-mini", "messages": [{"role": "user", "content": "hi"}], "stream": True}

    batches = [b async for b in driver.stream_raw(body)]

    assert all(b.endswith(b"\n\n") for b in batches)  # never an event cut in two
    events = [e for b in batches for e in sse.events(b)]

    assert all(e.startswith(b"data: ") and e.endswith(b"\n\n") for e in events)
    assert events[-1] == b"data: [DONE]\n\n"
    chunks = [json.loads(e[len(b"data: ") :]) for e in events[:-1]]
    assert (
        "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == openai_upstream.reply_text
    )
    assert openai_upstream.requests[-1].body == body


async def test_stream_raw_checks_the_status_first(driver, openai_upstream):
    openai_upstream.fault = Fault(kind="status", status=401, message="Incorrect API key provided")

    with pytest.raises(AuthenticationError):
        await anext(driver.stream_raw({"model": "gpt-fake-mini", "messages": [], "stream": True}))


async def test_stream_raw_dropped_connection_is_unavailable(driver, openai_upstream):
    openai_upstream.fault = Fault(kind="disconnect", after_chunks=2)
    events: list[bytes] = []

    with pytest.raises(UpstreamUnavailableError):
        async for batch in driver.stream_raw({"model": "gpt-fake-mini", "messages": [], "stream": True}):
            events.extend(sse.events(batch))
    assert len(events) == 2


# -- configuration -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "config",
    [
        {"base_url": None},
        {"base_url": "127.0.0.1:1234/v1"},
        {"base_url": "http://127.0.0.1:1234/v1", "options": {"headers": ["X-Title"]}},
    ],
)
def test_unusable_configuration_is_a_config_error(config):
    with pytest.raises(ConfigError):
        OpenAICompatDriver(ProviderConfig(id="bad", kind="openai", **config))


# -- the fake itself --------------------------------------------------------------------------
async def test_the_official_openai_sdk_understands_the_fake(openai_upstream):
    """Keeps the fake honest: the vendor's own client must parse everything it sends."""
    from openai import AsyncOpenAI

    openai_upstream.tool_call = {"name": "get_weather", "arguments": {"city": "Oslo"}}
    async with AsyncOpenAI(base_url=openai_upstream.api_base, api_key="sk-test", max_retries=0) as client:
        reply = await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
        stream = await client.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        called = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "weather?"}], tools=[WEATHER_TOOL]
        )
        embedding = await client.embeddings.create(model="e", input=["alpha"])  # base64 on the wire
        models = [m.id async for m in client.models.list()]

    assert reply.choices[0].message.content == text == openai_upstream.reply_text
    assert called.choices[0].message.tool_calls[0].function.name == "get_weather"
    assert embedding.data[0].embedding == pytest.approx(openai_upstream.vector("alpha"), rel=1e-6)
    assert (
        next(r for r in openai_upstream.requests if r.path == "/v1/embeddings").body["encoding_format"]
        == "base64"
    )
    assert models == ["gpt-fake-mini", "gpt-fake-large"]


# -- upstream errors in words (issue 19) ---------------------------------------------------------
@pytest.mark.parametrize("path", ["chat", "stream", "chat_raw", "stream_raw"])
@pytest.mark.parametrize(
    ("body", "words"),
    [
        ('{"error": {"message": "model overloaded", "type": "server_error"}}', "model overloaded"),
        ('{"error": "model overloaded"}', "model overloaded"),  # Ollama, llama.cpp's older server
        ('{"object": "error", "message": "model overloaded", "code": 503}', "model overloaded"),  # vLLM
        ('{"detail": [{"loc": ["body"], "msg": "model overloaded"}]}', "model overloaded"),  # FastAPI
        ('{"error": {"message": "{\\"error\\": {\\"message\\": \\"model overloaded\\"}}"}}', "model overloaded"),
        ("<html><head><title>503 Service Unavailable</title></head><body><h1>503</h1></body></html>",
         "503 Service Unavailable"),
    ],
    ids=["openai", "string", "vllm", "fastapi", "nested", "html"],
)
async def test_an_upstream_error_is_its_message_in_words(driver, openai_upstream, path, body, words):
    openai_upstream.fault = Fault(kind="body", status=503, message=body)
    with pytest.raises(UpstreamUnavailableError) as caught:
        if path == "chat":
            await driver.chat(ask(), SPEC)
        elif path == "stream":
            await collect(driver.stream(ask(stream=True), SPEC))
        elif path == "chat_raw":
            await driver.chat_raw({"model": SPEC.name, "messages": [{"role": "user", "content": "hi"}]})
        else:
            async for _ in driver.stream_raw({"model": SPEC.name, "messages": [{"role": "user", "content": "hi"}]}):
                pass
    assert caught.value.message == f"{words} (HTTP 503 from provider fake)"


async def test_an_answer_that_is_not_json_is_described_not_dumped(driver, openai_upstream):
    openai_upstream.fault = Fault(kind="body", status=200, message="<html><title>Captive portal</title></html>")
    with pytest.raises(UpstreamUnavailableError) as caught:
        await driver.chat(ask(), SPEC)
    assert caught.value.message == "the answer from provider fake is not JSON: Captive portal"
    assert "b'" not in str(caught.value)
