"""Canonical ⇄ Anthropic Messages translation: unit tests, property tests, and the official
`anthropic` SDK as the judge of what we emit for Anthropic clients."""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Awaitable, Callable
from typing import Any

import anthropic
import pytest
import pytest_asyncio
from aiohttp import web
from anthropic.types import Message, RawMessageStreamEvent
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from app.kernel.canonical import (
    ChatChunk,
    ChatMessage,
    ChatRequest,
    ChatResponse,
    Choice,
    ChunkChoice,
    Delta,
    FunctionCall,
    ModelSpec,
    ToolCall,
    Usage,
)
from app.kernel.compat.anthropic import (
    DEFAULT_MAX_TOKENS,
    AnthropicStreamDecoder,
    AnthropicStreamEncoder,
    anthropic_error,
    error_from_anthropic,
    from_anthropic_request,
    from_anthropic_response,
    to_anthropic_request,
    to_anthropic_response,
)
from app.kernel.errors import (
    AuthenticationError,
    BadRequestError,
    ConfigError,
    ContextWindowExceededError,
    NotFoundError,
    NotSupportedError,
    OverloadedError,
    PermissionDeniedError,
    RateLimitError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)

STREAM_EVENT = TypeAdapter(RawMessageStreamEvent)
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()


def req(*messages: dict[str, Any], **kw: Any) -> ChatRequest:
    return ChatRequest(model="alias", messages=[ChatMessage(**m) for m in messages], **kw)


def weather_tool() -> dict[str, Any]:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    return {
        "type": "function",
        "function": {"name": "get_weather", "description": "Weather now", "parameters": schema},
    }


def parse_sse(raw: bytes) -> list[tuple[str, str]]:
    """(event, data) pairs of an SSE byte stream, as a client would split it."""
    events = []
    for block in raw.decode().split("\n\n"):
        if not block.strip():
            continue
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        events.append((fields["event"], fields["data"]))
    return events


# ==========================================================================================
# canonical → Anthropic requests
# ==========================================================================================


def test_system_and_developer_messages_are_joined_into_the_top_level_system() -> None:
    body = to_anthropic_request(
        req(
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "developer", "content": "Answer in French."},
        ),
        model="claude-x",
    )
    assert body["system"] == "Be brief.\n\nAnswer in French."
    assert body["messages"] == [{"role": "user", "content": "Hi"}]
    assert body["model"] == "claude-x"


def test_one_system_message_made_of_text_parts_becomes_text_blocks() -> None:
    parts = [{"type": "text", "text": "Rule one."}, {"type": "text", "text": "Rule two."}]
    body = to_anthropic_request(req({"role": "system", "content": parts}, {"role": "user", "content": "Hi"}))
    assert body["system"] == [{"type": "text", "text": "Rule one."}, {"type": "text", "text": "Rule two."}]
    assert "system" not in to_anthropic_request(req({"role": "user", "content": "Hi"}))


def test_images_become_base64_or_url_sources() -> None:
    content = [
        {"type": "text", "text": "Compare"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "high"}},
        {"type": "image_url", "image_url": "https://example.com/cat.jpg"},
    ]
    body = to_anthropic_request(req({"role": "user", "content": content}))
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "Compare"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("ftp://example.com/cat.png", BadRequestError),
        ("data:image/png,notbase64", BadRequestError),
        (f"data:image/bmp;base64,{PNG}", NotSupportedError),
        ("", BadRequestError),
    ],
)
def test_images_anthropic_cannot_take_are_refused_clearly(url: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        to_anthropic_request(
            req({"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]})
        )


def test_tool_calls_become_tool_use_and_consecutive_tool_results_share_one_user_turn() -> None:
    calls = [
        ToolCall(id="call_1", function=FunctionCall(name="get_weather", arguments='{"city": "Oslo"}')),
        ToolCall(id="call_2", function=FunctionCall(name="get_weather", arguments="")),
    ]
    body = to_anthropic_request(
        req(
            {"role": "user", "content": "Weather in Oslo and Rome?"},
            {"role": "assistant", "content": "Checking.", "tool_calls": calls},
            {"role": "tool", "tool_call_id": "call_1", "content": "12°C"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "24°C"}]},
            {"role": "user", "content": "Thanks"},
        ),
        spec=ModelSpec(id="p/c", name="claude-x", provider="p"),
    )
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user", "user"]
    assert body["messages"][1]["content"] == [
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Oslo"}},
        {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {}},
    ]
    assert body["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "call_1", "content": "12°C"},
        {"type": "tool_result", "tool_use_id": "call_2", "content": [{"type": "text", "text": "24°C"}]},
    ]
    assert body["model"] == "claude-x"


@pytest.mark.parametrize("arguments", ["{not json", "[1, 2]"])
def test_tool_call_arguments_must_be_a_json_object(arguments: str) -> None:
    call = ToolCall(id="c", function=FunctionCall(name="f", arguments=arguments))
    with pytest.raises(BadRequestError, match="arguments"):
        to_anthropic_request(
            req({"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [call]})
        )


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"type": "auto"}),
        ("none", {"type": "none"}),
        ("required", {"type": "any"}),
        ({"type": "function", "function": {"name": "get_weather"}}, {"type": "tool", "name": "get_weather"}),
    ],
)
def test_tools_and_tool_choice(choice: Any, expected: dict[str, Any]) -> None:
    body = to_anthropic_request(
        req({"role": "user", "content": "x"}, tools=[weather_tool()], tool_choice=choice)
    )
    assert body["tools"] == [
        {
            "name": "get_weather",
            "description": "Weather now",
            "input_schema": weather_tool()["function"]["parameters"],
        }
    ]
    assert body["tool_choice"] == expected


def test_parallel_tool_calls_false_disables_parallel_tool_use_and_tool_choice_needs_tools() -> None:
    body = to_anthropic_request(
        req({"role": "user", "content": "x"}, tools=[weather_tool()], parallel_tool_calls=False)
    )
    assert body["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    assert "tool_choice" not in to_anthropic_request(
        req({"role": "user", "content": "x"}, tool_choice="auto")
    )
    with pytest.raises(BadRequestError):
        to_anthropic_request(
            req({"role": "user", "content": "x"}, tools=[weather_tool()], tool_choice="sometimes")
        )


def test_max_tokens_comes_from_the_request_then_the_spec_then_a_default() -> None:
    spec = ModelSpec(id="p/c", name="c", provider="p", max_output_tokens=8192)
    user = {"role": "user", "content": "x"}
    assert to_anthropic_request(req(user, max_tokens=100), spec=spec)["max_tokens"] == 100
    assert to_anthropic_request(req(user, max_completion_tokens=50), spec=spec)["max_tokens"] == 50
    assert to_anthropic_request(req(user), spec=spec)["max_tokens"] == 8192
    assert to_anthropic_request(req(user))["max_tokens"] == DEFAULT_MAX_TOKENS


def test_sampling_stop_and_user_options() -> None:
    body = to_anthropic_request(
        req({"role": "user", "content": "x"}, stop="END", temperature=1.7, top_p=0.9, user="u-1", stream=True)
    )
    assert body["stop_sequences"] == ["END"]
    assert body["temperature"] == 1.0  # OpenAI allows up to 2; Anthropic's ceiling is 1
    assert body["top_p"] == 0.9
    assert body["metadata"] == {"user_id": "u-1"}
    assert body["stream"] is True
    assert "stream" not in to_anthropic_request(
        req({"role": "user", "content": "x"}, stream=True), stream=False
    )


@pytest.mark.parametrize(
    ("request_", "error"),
    [
        (req({"role": "user", "content": "x"}, n=2), NotSupportedError),
        (req({"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}), NotSupportedError),
        (req({"role": "function", "name": "f", "content": "x"}), BadRequestError),
        (req({"role": "tool", "content": "x"}), BadRequestError),
        (req({"role": "user", "content": "x"}, tools=[{"type": "web_search"}]), NotSupportedError),
    ],
)
def test_requests_anthropic_cannot_express_raise_typed_errors(
    request_: ChatRequest, error: type[Exception]
) -> None:
    with pytest.raises(error):
        to_anthropic_request(request_)


# ==========================================================================================
# Anthropic → canonical requests (the gateway)
# ==========================================================================================


def test_an_anthropic_request_becomes_canonical() -> None:
    body = {
        "model": "claude-x",
        "max_tokens": 300,
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Look"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": PNG}},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "s"},
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "12°C"},
                    {"type": "text", "text": "And tomorrow?"},
                ],
            },
        ],
        "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "stop_sequences": ["END"],
        "temperature": 0.3,
        "top_k": 5,
        "metadata": {"user_id": "u-1"},
        "stream": True,
    }
    request = from_anthropic_request(body)
    assert [m.role for m in request.messages] == ["system", "user", "assistant", "tool", "user"]
    assert request.messages[0].content == [{"type": "text", "text": "Be brief."}]
    assert request.messages[1].content[1] == {
        "type": "image_url",
        "image_url": {"url": f"data:image/jpeg;base64,{PNG}"},
    }
    assistant = request.messages[2]
    assert assistant.content == "Checking."
    assert assistant.tool_calls[0].id == "toolu_1"
    assert json.loads(assistant.tool_calls[0].function.arguments) == {"city": "Oslo"}
    assert request.messages[3].tool_call_id == "toolu_1" and request.messages[3].content == "12°C"
    assert request.messages[4].content == [{"type": "text", "text": "And tomorrow?"}]
    assert request.tools == [
        {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    ]
    assert request.tool_choice == "required" and request.parallel_tool_calls is False
    assert (request.stop, request.temperature, request.user, request.stream) == (["END"], 0.3, "u-1", True)
    assert request.max_tokens == 300
    assert "top_k" not in request.wire_dict()  # OpenAI backends refuse it


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ({"model": "m", "messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
        ({"model": "m", "max_tokens": 10, "messages": [{"role": "system", "content": "x"}]}, "system"),
        ({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": 5}]}, "content"),
        ({"max_tokens": 10, "messages": []}, "model"),
        ({"model": "m", "max_tokens": 10}, "messages"),
        ({"model": "m", "max_tokens": 10, "messages": [], "stop_sequences": "END"}, "stop_sequences"),
        ({"model": "m", "max_tokens": 10, "messages": [], "tool_choice": {"type": "maybe"}}, "tool_choice"),
        ({"model": "m", "max_tokens": 10, "messages": [], "temperature": "hot"}, "temperature"),
        ([1, 2], "object"),
    ],
)
def test_invalid_anthropic_requests_are_bad_requests(body: Any, match: str) -> None:
    with pytest.raises(BadRequestError, match=match):
        from_anthropic_request(body)


def test_server_tools_and_documents_are_not_supported() -> None:
    base = {"model": "m", "max_tokens": 10}
    with pytest.raises(NotSupportedError):
        from_anthropic_request(
            {**base, "messages": [], "tools": [{"type": "web_search_20250305", "name": "web"}]}
        )
    with pytest.raises(NotSupportedError):
        from_anthropic_request({**base, "messages": [{"role": "user", "content": [{"type": "document"}]}]})


# ==========================================================================================
# Responses
# ==========================================================================================


def anthropic_message(
    content: list[dict[str, Any]], stop_reason: str = "end_turn", **usage: int
) -> dict[str, Any]:
    return {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 5, **usage},
    }


def test_an_anthropic_message_becomes_a_chat_response() -> None:
    response = from_anthropic_response(
        anthropic_message(
            [
                {"type": "thinking", "thinking": "Let me think.", "signature": "sig"},
                {"type": "text", "text": "Hello "},
                {"type": "text", "text": "there."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}},
            ],
            "tool_use",
            cache_read_input_tokens=4,
        )
    )
    assert response.id == "msg_01" and response.model == "claude-x"
    assert response.message.content == "Hello there."
    assert response.message.reasoning_content == "Let me think."
    assert response.message.tool_calls[0].id == "toolu_1"
    assert json.loads(response.message.tool_calls[0].function.arguments) == {"city": "Oslo"}
    assert response.finish_reason == "tool_calls"
    assert (response.usage.prompt_tokens, response.usage.completion_tokens, response.usage.total_tokens) == (
        14,
        5,
        19,
    )


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
    ],
)
def test_stop_reasons_map_to_finish_reasons(stop_reason: str, finish: str) -> None:
    assert from_anthropic_response(anthropic_message([], stop_reason)).finish_reason == finish


def test_a_malformed_anthropic_message_is_an_upstream_error() -> None:
    with pytest.raises(UpstreamUnavailableError):
        from_anthropic_response({"type": "message", "content": "not a list"})


def test_a_chat_response_becomes_a_message_the_sdk_accepts() -> None:
    calls = [
        ToolCall(id="call_1", function=FunctionCall(name="f", arguments='{"a": 1}')),
        ToolCall(id=None, function=FunctionCall(name="g", arguments="{broken")),
    ]
    response = ChatResponse(
        model="gpt-x",
        choices=[
            Choice(
                message=ChatMessage(role="assistant", content="Sure.", tool_calls=calls),
                finish_reason="tool_calls",
            )
        ],
        usage=Usage.of(7, 3),
    )
    body = to_anthropic_response(response)
    message = Message.model_validate(body)
    assert message.id.startswith("msg_")
    assert message.stop_reason == "tool_use"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (7, 3)
    assert [b.type for b in message.content] == ["text", "tool_use", "tool_use"]
    assert message.content[1].input == {"a": 1}
    assert message.content[2].id.startswith("toolu_")
    assert message.content[2].input == {"_raw_arguments": "{broken"}  # kept, not dropped or fatal


# ==========================================================================================
# Stream decoding (Anthropic events → canonical chunks)
# ==========================================================================================

REAL_STREAM = [
    (
        "message_start",
        {
            "type": "message_start",
            "message": {**anthropic_message([], None), "usage": {"input_tokens": 25, "output_tokens": 1}},
        },
    ),
    (
        "content_block_start",
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    ),
    ("ping", {"type": "ping"}),
    (
        "content_block_delta",
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Okay"}},
    ),
    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
    (
        "content_block_start",
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {"type": "tool_use", "id": "toolu_9", "name": "get_weather", "input": {}},
        },
    ),
    (
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": ""},
        },
    ),
    (
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": '{"city": "Os'},
        },
    ),
    (
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": 'lo"}'},
        },
    ),
    ("content_block_stop", {"type": "content_block_stop", "index": 1}),
    ("brand_new_event", {"type": "brand_new_event"}),
    (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use", "stop_sequence": None},
            "usage": {"output_tokens": 89},
        },
    ),
    ("message_stop", {"type": "message_stop"}),
]


def decode(events: list[tuple[str, Any]]) -> tuple[AnthropicStreamDecoder, list[ChatChunk]]:
    decoder = AnthropicStreamDecoder(model="claude-x", provider="anthropic")
    chunks = []
    for name, data in events:
        chunks += decoder.feed(name, data if isinstance(data, str) else json.dumps(data))
    return decoder, chunks


def assemble(chunks: list[ChatChunk]) -> dict[str, Any]:
    """What a client builds from a chunk stream: text, tool calls, finish reason, usage."""
    text, calls, finish, usage = "", {}, None, None
    for chunk in chunks:
        usage = chunk.usage or usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
            for call in choice.delta.tool_calls or []:
                slot = calls.setdefault(call.index, {"id": None, "name": None, "arguments": ""})
                slot["id"] = call.id or slot["id"]
                slot["name"] = call.function.name or slot["name"]
                slot["arguments"] += call.function.arguments
    return {"text": text, "calls": [calls[i] for i in sorted(calls)], "finish": finish, "usage": usage}


def test_a_real_event_sequence_decodes_into_chunks() -> None:
    decoder, chunks = decode(REAL_STREAM)
    assert decoder.done
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.id == "msg_01" for c in chunks)
    result = assemble(chunks)
    assert result["text"] == "Okay"
    assert result["calls"] == [{"id": "toolu_9", "name": "get_weather", "arguments": '{"city": "Oslo"}'}]
    assert result["finish"] == "tool_calls"
    assert (result["usage"].prompt_tokens, result["usage"].completion_tokens) == (25, 89)
    assert chunks[-1].usage is not None and chunks[-1].choices[0].finish_reason == "tool_calls"
    tool_start = next(c for c in chunks if c.choices[0].delta.tool_calls)
    assert tool_start.choices[0].delta.tool_calls[0].index == 0  # tool-call index, not block index


def test_thinking_deltas_become_reasoning_content() -> None:
    events = [
        REAL_STREAM[0],
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "thinking", "thinking": ""},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "thinking_delta", "thinking": "Hmm."},
            },
        ),
    ]
    _, chunks = decode(events)
    assert chunks[-1].choices[0].delta.reasoning_content == "Hmm."


@pytest.mark.parametrize(
    ("error_type", "expected", "retryable"),
    [
        ("overloaded_error", UpstreamUnavailableError, True),
        ("rate_limit_error", RateLimitError, True),
        ("api_error", UpstreamUnavailableError, True),
        ("invalid_request_error", BadRequestError, False),
    ],
)
def test_a_mid_stream_error_event_raises_the_typed_error(
    error_type: str, expected: type, retryable: bool
) -> None:
    error = ("error", {"type": "error", "error": {"type": error_type, "message": "Overloaded"}})
    with pytest.raises(expected) as info:
        decode([REAL_STREAM[0], error])
    assert info.value.retryable is retryable
    assert info.value.provider == "anthropic"


def test_a_broken_event_is_an_upstream_error() -> None:
    with pytest.raises(UpstreamUnavailableError, match="broken"):
        decode([("message_start", "{not json")])


# ==========================================================================================
# Stream encoding (canonical chunks → Anthropic events), judged by the SDK
# ==========================================================================================


def chunk(delta: Delta | None = None, finish: str | None = None, usage: Usage | None = None) -> ChatChunk:
    choices = [ChunkChoice(delta=delta or Delta(), finish_reason=finish)] if delta or finish else []
    return ChatChunk(id="chatcmpl-1", model="gpt-x", choices=choices, usage=usage)


def openai_like_chunks() -> list[ChatChunk]:
    """What an OpenAI backend streams for "text, then a tool call", usage in a final chunk."""
    return [
        chunk(Delta(role="assistant", content="")),
        chunk(Delta(content="Let me ")),
        chunk(Delta(content="check.")),
        chunk(
            Delta(
                tool_calls=[
                    ToolCall(index=0, id="call_1", function=FunctionCall(name="get_weather", arguments=""))
                ]
            )
        ),
        chunk(Delta(tool_calls=[ToolCall(index=0, function=FunctionCall(arguments='{"city":'))])),
        chunk(Delta(tool_calls=[ToolCall(index=0, function=FunctionCall(arguments=' "Oslo"}'))])),
        chunk(finish="tool_calls"),
        chunk(usage=Usage.of(11, 22)),
    ]


def encode(chunks: list[ChatChunk]) -> bytes:
    encoder = AnthropicStreamEncoder(model="claude-compat")
    return b"".join(encoder.feed(c) for c in chunks) + encoder.finish()


def test_encoded_events_are_the_exact_anthropic_sequence() -> None:
    events = parse_sse(encode(openai_like_chunks()))
    assert [name for name, _ in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    for name, data in events:
        assert STREAM_EVENT.validate_python(json.loads(data)).type == name
    delta = json.loads(events[-2][1])
    assert delta["delta"]["stop_reason"] == "tool_use"
    assert delta["usage"] == {"input_tokens": 11, "output_tokens": 22}


def test_an_empty_stream_still_forms_a_complete_message() -> None:
    encoder = AnthropicStreamEncoder(model="m")
    events = parse_sse(encoder.finish() + encoder.finish())  # finishing twice sends nothing more
    assert [n for n, _ in events] == ["message_start", "message_delta", "message_stop"]


@pytest_asyncio.fixture
async def sdk_server():
    """A loopback server answering /v1/messages with whatever the test sets, and an SDK client for it."""
    state: dict[str, Callable[[web.Request], Awaitable[web.StreamResponse]]] = {}

    async def messages(request: web.Request) -> web.StreamResponse:
        return await state["handler"](request)

    app = web.Application()
    app.router.add_post("/v1/messages", messages)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    client = anthropic.AsyncAnthropic(api_key="test", base_url=f"http://127.0.0.1:{port}", max_retries=0)
    try:
        yield state, client
    finally:
        await client.close()
        await runner.cleanup()


def serve_sse(payload: bytes) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(payload)
        await response.write_eof()
        return response

    return handler


SDK_ARGS = {
    "model": "claude-compat",
    "max_tokens": 100,
    "messages": [{"role": "user", "content": "Weather?"}],
}


async def test_the_official_sdk_consumes_the_encoded_stream(sdk_server) -> None:
    state, client = sdk_server
    state["handler"] = serve_sse(encode(openai_like_chunks()))
    async with client.messages.stream(**SDK_ARGS) as stream:
        texts = [t async for t in stream.text_stream]
        final = await stream.get_final_message()
    assert "".join(texts) == "Let me check."
    assert final.stop_reason == "tool_use"
    assert final.content[0].text == "Let me check."
    assert (final.content[1].id, final.content[1].name, final.content[1].input) == (
        "call_1",
        "get_weather",
        {"city": "Oslo"},
    )
    assert (final.usage.input_tokens, final.usage.output_tokens) == (11, 22)


async def test_the_official_sdk_sees_a_mid_stream_error_event(sdk_server) -> None:
    state, client = sdk_server
    encoder = AnthropicStreamEncoder(model="m")
    payload = encoder.feed(chunk(Delta(content="Hi"))) + encoder.error(
        UpstreamUnavailableError("backend went away")
    )
    state["handler"] = serve_sse(payload)
    with pytest.raises(anthropic.APIStatusError) as info:
        async with client.messages.stream(**SDK_ARGS) as stream:
            async for _ in stream:
                pass
    assert info.value.body["error"] == {"type": "api_error", "message": "backend went away"}


async def test_the_official_sdk_accepts_a_translated_message_and_error(sdk_server) -> None:
    state, client = sdk_server
    response = ChatResponse(
        model="gpt-x",
        choices=[Choice(message=ChatMessage(role="assistant", content="Hi!"), finish_reason="length")],
        usage=Usage.of(3, 1),
    )

    async def ok(request: web.Request) -> web.Response:
        return web.json_response(to_anthropic_response(response, model="claude-compat"))

    state["handler"] = ok
    message = await client.messages.create(**SDK_ARGS)
    assert (message.content[0].text, message.stop_reason, message.model) == (
        "Hi!",
        "max_tokens",
        "claude-compat",
    )

    async def limited(request: web.Request) -> web.Response:
        reply = anthropic_error(RateLimitError("slow down", retry_after=7))
        return web.json_response(reply.body, status=reply.status, headers=reply.headers)

    state["handler"] = limited
    with pytest.raises(anthropic.RateLimitError) as info:
        await client.messages.create(**SDK_ARGS)
    assert info.value.response.headers["retry-after"] == "7"
    assert info.value.body["error"]["type"] == "rate_limit_error"


# ==========================================================================================
# Errors
# ==========================================================================================


@pytest.mark.parametrize(
    ("error", "status", "kind"),
    [
        (BadRequestError("bad"), 400, "invalid_request_error"),
        (ContextWindowExceededError("too long"), 400, "invalid_request_error"),
        (NotSupportedError("no"), 400, "invalid_request_error"),
        (ConfigError("no"), 400, "invalid_request_error"),
        (AuthenticationError("who"), 401, "authentication_error"),
        (PermissionDeniedError("no"), 403, "permission_error"),
        (NotFoundError("gone"), 404, "not_found_error"),
        (RateLimitError("slow"), 429, "rate_limit_error"),
        (OverloadedError("busy"), 529, "overloaded_error"),
        (UpstreamUnavailableError("down"), 502, "api_error"),
        (UpstreamTimeoutError("slow"), 504, "api_error"),
    ],
)
def test_typed_errors_become_anthropic_error_json(error: Exception, status: int, kind: str) -> None:
    reply = anthropic_error(error)
    assert reply.status == status
    assert reply.body == {"type": "error", "error": {"type": kind, "message": error.message}}


def test_a_stray_exception_becomes_a_500_without_leaking_details() -> None:
    reply = anthropic_error(KeyError("secret internals"))
    assert reply.status == 500
    assert "secret" not in json.dumps(reply.body)


@pytest.mark.parametrize(
    ("status", "kind", "message", "expected", "retryable"),
    [
        (
            400,
            "invalid_request_error",
            "prompt is too long: 210000 tokens > 200000 maximum",
            ContextWindowExceededError,
            False,
        ),
        (400, "invalid_request_error", "max_tokens: Field required", BadRequestError, False),
        (401, "authentication_error", "invalid x-api-key", AuthenticationError, False),
        (403, "permission_error", "no", PermissionDeniedError, False),
        (404, "not_found_error", "model: claude-nope", NotFoundError, False),
        (429, "rate_limit_error", "slow down", RateLimitError, True),
        (500, "api_error", "oops", UpstreamUnavailableError, True),
        (529, "overloaded_error", "Overloaded", UpstreamUnavailableError, True),
        (None, "overloaded_error", "Overloaded", UpstreamUnavailableError, True),
        (None, "not_found_error", "gone", NotFoundError, False),
    ],
)
def test_anthropic_errors_become_typed_errors(status, kind, message, expected, retryable) -> None:
    body = json.dumps({"type": "error", "error": {"type": kind, "message": message}}).encode()
    error = error_from_anthropic(
        status, body, provider="anthropic", retry_after=3.0 if status == 429 else None
    )
    assert type(error) is expected
    assert error.retryable is retryable
    assert message in error.message
    if status == 429:
        assert error.retry_after == 3.0


def test_a_non_json_error_body_still_gives_a_typed_error() -> None:
    error = error_from_anthropic(502, b"<html>Bad Gateway</html>")
    assert isinstance(error, UpstreamUnavailableError) and "Bad Gateway" in error.message


# ==========================================================================================
# Property tests
# ==========================================================================================

names = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,12}", fullmatch=True)
ids = st.from_regex(r"[a-zA-Z0-9]{1,10}", fullmatch=True).map(lambda s: f"call_{s}")
texts = st.text(min_size=1, max_size=20)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
json_objects = st.dictionaries(st.text(max_size=6), json_values, max_size=3)
image_urls = st.one_of(
    st.tuples(
        st.sampled_from(["image/png", "image/jpeg", "image/gif", "image/webp"]),
        st.binary(min_size=1, max_size=12),
    ).map(lambda t: f"data:{t[0]};base64,{base64.b64encode(t[1]).decode()}"),
    st.from_regex(r"[a-z0-9/]{1,12}", fullmatch=True).map(lambda p: f"https://example.com/{p}"),
)
parts = st.lists(
    st.one_of(
        texts.map(lambda t: {"type": "text", "text": t}),
        image_urls.map(lambda u: {"type": "image_url", "image_url": {"url": u}}),
    ),
    min_size=1,
    max_size=3,
)
tool_calls = st.lists(
    st.builds(
        lambda i, n, a: ToolCall(id=i, function=FunctionCall(name=n, arguments=json.dumps(a))),
        ids,
        names,
        json_objects,
    ),
    min_size=1,
    max_size=2,
)
turns = st.one_of(
    st.builds(lambda c: ChatMessage(role="user", content=c), st.one_of(texts, parts)),
    st.builds(lambda c: ChatMessage(role="assistant", content=c), texts),
    st.builds(
        lambda c, t: ChatMessage(role="assistant", content=c, tool_calls=t), st.none() | texts, tool_calls
    ),
    st.builds(lambda i, c: ChatMessage(role="tool", tool_call_id=i, content=c), ids, texts),
)
systems = st.lists(
    st.builds(lambda r, c: ChatMessage(role=r, content=c), st.sampled_from(["system", "developer"]), texts),
    max_size=2,
)
tools = st.lists(
    st.builds(
        lambda n, d: {
            "type": "function",
            "function": {
                "name": n,
                "description": d,
                "parameters": {"type": "object", "properties": {"x": {"type": "string"}}},
            },
        },
        names,
        texts,
    ),
    max_size=2,
)


def content_meaning(content: Any) -> list[tuple[str, Any]]:
    """Content as a list of (kind, value), adjacent texts merged: the shape-independent meaning."""
    items: list[tuple[str, Any]] = []
    raw = [{"type": "text", "text": content}] if isinstance(content, str) else (content or [])
    for part in raw:
        if part["type"] == "text":
            if not part["text"]:
                continue
            if items and items[-1][0] == "text":
                items[-1] = ("text", items[-1][1] + part["text"])
            else:
                items.append(("text", part["text"]))
        else:
            url = part["image_url"]
            items.append(("image", url["url"] if isinstance(url, dict) else url))
    return items


def request_meaning(request: ChatRequest) -> dict[str, Any]:
    system = "\n\n".join(m.text() for m in request.messages if m.role in ("system", "developer"))
    messages = [
        (
            m.role,
            content_meaning(m.content),
            [(c.id, c.function.name, json.loads(c.function.arguments)) for c in m.tool_calls or []],
            m.tool_call_id,
        )
        for m in request.messages
        if m.role not in ("system", "developer")
    ]
    tool_choice = request.tool_choice if request.tools else None
    return {
        "system": system,
        "messages": messages,
        "tools": request.tools or None,
        "tool_choice": tool_choice,
        "stop": [request.stop] if isinstance(request.stop, str) else request.stop,
        "max_tokens": request.output_limit(),
        "temperature": request.temperature,
        "top_p": request.top_p,
        "user": request.user,
    }


@settings(max_examples=100)
@given(
    systems,
    st.lists(turns, min_size=1, max_size=6),
    tools,
    st.sampled_from([None, "auto", "none", "required"]),
    st.none() | texts | st.lists(texts, min_size=1, max_size=2),
    st.integers(1, 10_000),
    st.none() | st.floats(0, 1),
    st.none() | texts,
)
def test_canonical_requests_survive_a_trip_through_anthropic(
    system, conversation, tools_, choice, stop, limit, temperature, user
) -> None:
    original = ChatRequest(
        model="m",
        messages=system + conversation,
        tools=tools_ or None,
        tool_choice=choice,
        stop=stop,
        max_tokens=limit,
        temperature=temperature,
        user=user,
    )
    wire = to_anthropic_request(original)
    assert all(m["role"] in ("user", "assistant") for m in wire["messages"])
    back = from_anthropic_request(json.loads(json.dumps(wire)))
    assert request_meaning(back) == request_meaning(original)


text_blocks = texts.map(lambda t: {"type": "text", "text": t})
tool_use_blocks = st.builds(
    lambda i, n, a: {"type": "tool_use", "id": i, "name": n, "input": a},
    st.from_regex(r"toolu_[a-zA-Z0-9]{1,10}", fullmatch=True),
    names,
    json_objects,
)
anthropic_messages = st.builds(
    lambda text, calls, stop, usage: anthropic_message(
        text + calls, stop, input_tokens=usage[0], output_tokens=usage[1]
    ),
    st.lists(text_blocks, max_size=3),
    st.lists(tool_use_blocks, max_size=2),
    st.sampled_from(["end_turn", "max_tokens", "tool_use", "stop_sequence", "refusal"]),
    st.tuples(st.integers(0, 10**6), st.integers(0, 10**6)),
)
SAME_STOP = {"stop_sequence": "end_turn"}  # which stop sequence matched is not canonical


def message_meaning(message: dict[str, Any]) -> dict[str, Any]:
    return {
        "text": "".join(b["text"] for b in message["content"] if b["type"] == "text"),
        "tools": [(b["id"], b["name"], b["input"]) for b in message["content"] if b["type"] == "tool_use"],
        "stop": SAME_STOP.get(message["stop_reason"], message["stop_reason"]),
        "usage": (message["usage"]["input_tokens"], message["usage"]["output_tokens"]),
    }


@settings(max_examples=100)
@given(anthropic_messages)
def test_anthropic_responses_survive_a_trip_through_canonical(message: dict[str, Any]) -> None:
    back = to_anthropic_response(from_anthropic_response(message))
    Message.model_validate(back)
    assert message_meaning(back) == message_meaning(message)
    assert back["id"] == message["id"]


def split(text: str, cuts: list[int]) -> list[str]:
    points = sorted({c % (len(text) + 1) for c in cuts} | {0, len(text)})
    return [text[a:b] for a, b in itertools.pairwise(points) if text[a:b]]


@st.composite
def canonical_streams(draw: st.DrawFn) -> tuple[list[ChatChunk], dict[str, Any]]:
    pieces = draw(st.lists(texts, max_size=4))
    calls = draw(
        st.lists(
            st.tuples(ids, names, json_objects, st.lists(st.integers(0, 200), max_size=3)),
            max_size=2,
            unique_by=lambda c: c[0],
        )
    )
    finish = draw(st.sampled_from(["stop", "length", "tool_calls"]))
    usage = Usage.of(draw(st.integers(0, 10**6)), draw(st.integers(0, 10**6)))
    chunks = [chunk(Delta(role="assistant", content=""))] + [chunk(Delta(content=p)) for p in pieces]
    expected_calls = []
    for index, (call_id, name, args, cuts) in enumerate(calls):
        arguments = json.dumps(args)
        chunks.append(
            chunk(
                Delta(
                    tool_calls=[
                        ToolCall(index=index, id=call_id, function=FunctionCall(name=name, arguments=""))
                    ]
                )
            )
        )
        chunks += [
            chunk(Delta(tool_calls=[ToolCall(index=index, function=FunctionCall(arguments=p))]))
            for p in split(arguments, cuts)
        ]
        expected_calls.append({"id": call_id, "name": name, "arguments": arguments})
    chunks += [chunk(finish=finish), chunk(usage=usage)]
    return chunks, {"text": "".join(pieces), "calls": expected_calls, "finish": finish, "usage": usage}


@settings(max_examples=100)
@given(canonical_streams())
def test_streams_survive_encoding_to_anthropic_and_decoding_back(
    stream: tuple[list[ChatChunk], dict[str, Any]],
) -> None:
    chunks, expected = stream
    events = parse_sse(encode(chunks))
    for name, data in events:
        assert STREAM_EVENT.validate_python(json.loads(data)).type == name
    decoder, decoded = decode(events)
    assert decoder.done
    result = assemble(decoded)
    assert result["text"] == expected["text"]
    assert result["calls"] == expected["calls"]
    assert result["finish"] == expected["finish"]
    assert result["usage"] == expected["usage"]
