"""Canonical ⇄ Ollama /api/chat translation: units for each mapping, and round-trip properties."""

from __future__ import annotations

import base64
import itertools
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.kernel.canonical import (
    ChatChunk,
    ChatMessage,
    ChatRequest,
    ChatResponse,
    Choice,
    ChunkChoice,
    Delta,
    FunctionCall,
    ToolCall,
    Usage,
)
from app.kernel.compat.ollama import (
    OllamaStreamReader,
    OllamaStreamWriter,
    error_from_ollama,
    from_ollama_messages,
    from_ollama_request,
    from_ollama_response,
    ollama_error_body,
    synth_tool_call_id,
    to_ollama_messages,
    to_ollama_request,
    to_ollama_response,
)
from app.kernel.errors import (
    BadRequestError,
    ContextWindowExceededError,
    ModelNotFoundError,
    NotFoundError,
    NotSupportedError,
    RateLimitError,
    UpstreamUnavailableError,
)

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 24
PNG_B64 = base64.b64encode(PNG).decode()
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def request(**kw: Any) -> ChatRequest:
    kw.setdefault("messages", [{"role": "user", "content": "hi"}])
    return ChatRequest(model="llama3.2", **kw)


# -- canonical → Ollama request ----------------------------------------------------------------
def test_options_map_into_ollama_options():
    body = to_ollama_request(
        request(temperature=0.2, top_p=0.9, seed=7, stop="END", max_tokens=64),
        stream=False,
        num_ctx=8192,
        keep_alive="10m",
    )
    assert body["options"] == {
        "temperature": 0.2,
        "top_p": 0.9,
        "seed": 7,
        "stop": ["END"],
        "num_predict": 64,
        "num_ctx": 8192,
    }
    assert body["stream"] is False
    assert body["keep_alive"] == "10m"
    assert body["model"] == "llama3.2"
    assert "format" not in body and "tools" not in body


def test_max_completion_tokens_wins_and_caller_options_pass_through():
    req = request(max_tokens=10, max_completion_tokens=20, options={"num_ctx": 2048, "mirostat": 1}, top_k=40)
    body = to_ollama_request(req, model="llama3.2:latest", stream=True, num_ctx=8192)
    # the caller's own num_ctx wins over the driver's; extra Ollama options ride along
    assert body["options"] == {"num_ctx": 2048, "mirostat": 1, "top_k": 40, "num_predict": 20}
    assert body["model"] == "llama3.2:latest"
    assert "keep_alive" not in body


def test_no_options_means_no_options_key():
    assert "options" not in to_ollama_request(request(), stream=True)


def test_request_keep_alive_wins_over_driver_default():
    body = to_ollama_request(request(keep_alive=0), stream=True, keep_alive="5m")
    assert body["keep_alive"] == 0


@pytest.mark.parametrize(
    ("response_format", "expected"),
    [
        ({"type": "json_object"}, "json"),
        (
            {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
            {"type": "object"},
        ),
        ({"type": "text"}, None),
    ],
)
def test_response_format_maps_to_format(response_format, expected):
    body = to_ollama_request(request(response_format=response_format), stream=False)
    assert body.get("format") == expected


def test_json_schema_without_schema_is_a_bad_request():
    with pytest.raises(BadRequestError, match="schema"):
        to_ollama_request(request(response_format={"type": "json_schema", "json_schema": {}}), stream=False)


def test_tools_pass_through_unless_tool_choice_none():
    assert to_ollama_request(request(tools=[WEATHER_TOOL]), stream=False)["tools"] == [WEATHER_TOOL]
    assert "tools" not in to_ollama_request(request(tools=[WEATHER_TOOL], tool_choice="none"), stream=False)


def test_more_than_one_choice_is_not_supported():
    with pytest.raises(NotSupportedError):
        to_ollama_request(request(n=2), stream=False)


def test_images_become_bare_base64_and_text_parts_join():
    msg = ChatMessage(
        role="user",
        content=[
            {"type": "text", "text": "what is "},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
            {"type": "text", "text": "this?"},
        ],
    )
    assert to_ollama_messages([msg]) == [{"role": "user", "content": "what is this?", "images": [PNG_B64]}]


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("https://example.com/cat.png", NotSupportedError),
        ("data:image/png,rawbytes", BadRequestError),
        ("data:image/png;base64,@@not-base64@@", BadRequestError),
        ("", BadRequestError),
    ],
)
def test_bad_images_are_typed_errors(url, error):
    msg = ChatMessage(role="user", content=[{"type": "image_url", "image_url": {"url": url}}])
    with pytest.raises(error):
        to_ollama_messages([msg])


def test_unsupported_content_parts_are_refused():
    msg = ChatMessage(role="user", content=[{"type": "input_audio", "input_audio": {"data": "x"}}])
    with pytest.raises(NotSupportedError, match="input_audio"):
        to_ollama_messages([msg])


def test_tool_calls_become_objects_and_results_get_tool_name():
    call = ToolCall(id="call_1", function=FunctionCall(name="get_weather", arguments='{"city": "Paris"}'))
    messages = [
        ChatMessage(role="developer", content="be brief"),
        ChatMessage(role="user", content="weather?"),
        ChatMessage(role="assistant", content=None, tool_calls=[call]),
        ChatMessage(role="tool", tool_call_id="call_1", content="sunny"),
    ]
    assert to_ollama_messages(messages) == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}],
        },
        {"role": "tool", "content": "sunny", "tool_name": "get_weather"},
    ]


@pytest.mark.parametrize("arguments", ['{"city": ', "[1, 2]", '"Paris"'])
def test_tool_call_arguments_must_be_a_json_object(arguments):
    call = ToolCall(id="c", function=FunctionCall(name="f", arguments=arguments))
    with pytest.raises(BadRequestError, match="'f'"):
        to_ollama_messages([ChatMessage(role="assistant", tool_calls=[call])])


def test_empty_arguments_are_an_empty_object():
    call = ToolCall(id="c", function=FunctionCall(name="now", arguments=""))
    (out,) = to_ollama_messages([ChatMessage(role="assistant", tool_calls=[call])])
    assert out["tool_calls"][0]["function"]["arguments"] == {}


# -- Ollama answers → canonical ---------------------------------------------------------------
def test_response_with_text_and_usage():
    data = {
        "model": "llama3.2",
        "created_at": "2023-12-12T14:13:43.416799Z",
        "message": {"role": "assistant", "content": "Hello!"},
        "done": True,
        "done_reason": "stop",
        "prompt_eval_count": 26,
        "eval_count": 298,
    }
    response = from_ollama_response(data)
    assert response.message.content == "Hello!"
    assert response.finish_reason == "stop"
    assert response.usage == Usage.of(26, 298)
    assert response.created == 1702390423
    assert response.model == "llama3.2"


def test_response_length_and_missing_counts():
    data = {
        "model": "m",
        "message": {"role": "assistant", "content": "cut"},
        "done": True,
        "done_reason": "length",
    }
    response = from_ollama_response(data)
    assert response.finish_reason == "length"
    assert response.usage == Usage.of(0, 0)


def test_response_tool_calls_get_string_arguments_and_stable_ids():
    data = {
        "model": "llama3.2",
        "message": {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
                {"function": {"name": "get_weather", "arguments": {"city": "Rome"}}},
            ],
        },
        "done": True,
        "done_reason": "stop",
    }
    response = from_ollama_response(data)
    calls = response.message.tool_calls
    assert response.finish_reason == "tool_calls"  # Ollama says "stop"; the calls say more
    assert response.message.content is None
    assert [json.loads(c.function.arguments) for c in calls] == [{"city": "Paris"}, {"city": "Rome"}]
    assert calls[0].id != calls[1].id and all(c.id.startswith("call_") for c in calls)
    assert calls[0].id == synth_tool_call_id(response.id, 0, "get_weather", {"city": "Paris"})


def test_upstream_tool_call_ids_are_kept():
    data = {
        "message": {
            "role": "assistant",
            "tool_calls": [{"id": "call_x", "function": {"name": "f", "arguments": {}}}],
        }
    }
    assert from_ollama_response(data, model="m").message.tool_calls[0].id == "call_x"


def test_synthesised_ids_are_deterministic():
    assert synth_tool_call_id("s", 0, "f", {"a": 1}) == synth_tool_call_id("s", 0, "f", {"a": 1})
    assert synth_tool_call_id("s", 0, "f", {"a": 1}) != synth_tool_call_id("s", 1, "f", {"a": 1})
    assert synth_tool_call_id("s", 0, "f", {"a": 1}) != synth_tool_call_id("t", 0, "f", {"a": 1})


def test_response_error_and_garbage_are_typed():
    with pytest.raises(ModelNotFoundError):
        from_ollama_response({"error": "model 'nope' not found"}, model="nope")
    with pytest.raises(UpstreamUnavailableError, match="no message"):
        from_ollama_response({"done": True})
    with pytest.raises(UpstreamUnavailableError):
        from_ollama_response(["not", "an", "object"])  # type: ignore[arg-type]


def test_thinking_becomes_reasoning_content():
    data = {"message": {"role": "assistant", "content": "4", "thinking": "2+2"}, "done": True}
    assert from_ollama_response(data, model="m").message.model_extra["reasoning_content"] == "2+2"


def test_stream_reader_turns_objects_into_chunks():
    reader = OllamaStreamReader(model="llama3.2")
    objects = [
        {"model": "llama3.2", "message": {"role": "assistant", "content": "Hel"}, "done": False},
        {"model": "llama3.2", "message": {"role": "assistant", "content": ""}, "done": False},
        {"model": "llama3.2", "message": {"role": "assistant", "content": "lo"}, "done": False},
        {"model": "llama3.2", "message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "length",
         "prompt_eval_count": 3, "eval_count": 2},
    ]  # fmt: skip
    chunks = [reader.read(o) for o in objects]
    assert chunks[1] is None  # nothing new in that object
    first, _, second, last = chunks
    assert first.choices[0].delta.role == "assistant" and first.text() == "Hel"
    assert second.choices[0].delta.role is None and second.text() == "lo"
    assert last.choices[0].finish_reason == "length"
    assert last.usage == Usage.of(3, 2)
    assert len({c.id for c in (first, second, last)}) == 1
    assert reader.done


def test_stream_reader_tool_calls_count_on_and_finish_as_tool_calls():
    reader = OllamaStreamReader(model="m")
    call = {"function": {"name": "f", "arguments": {"x": 1}}}
    a = reader.read({"message": {"role": "assistant", "content": "", "tool_calls": [call]}, "done": False})
    b = reader.read({"message": {"role": "assistant", "content": "", "tool_calls": [call]}, "done": False})
    end = reader.read({"message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "stop"})
    assert [a.choices[0].delta.tool_calls[0].index, b.choices[0].delta.tool_calls[0].index] == [0, 1]
    assert a.choices[0].delta.tool_calls[0].id != b.choices[0].delta.tool_calls[0].id
    assert json.loads(a.choices[0].delta.tool_calls[0].function.arguments) == {"x": 1}
    assert end.choices[0].finish_reason == "tool_calls"


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ("model 'ghost' not found", ModelNotFoundError),
        ("an error was encountered while running the model: unexpected EOF", UpstreamUnavailableError),
        ("input length exceeds the context length", ContextWindowExceededError),
    ],
)
def test_stream_reader_error_lines_are_typed(message, error):
    reader = OllamaStreamReader(model="m", provider="ollama")
    reader.read({"message": {"role": "assistant", "content": "a"}, "done": False})
    with pytest.raises(error) as caught:
        reader.read({"error": message})
    assert caught.value.provider == "ollama" and caught.value.model == "m"


def test_stream_reader_rejects_non_objects():
    with pytest.raises(UpstreamUnavailableError):
        OllamaStreamReader(model="m").read([1, 2])


@pytest.mark.parametrize(
    ("message", "status", "error"),
    [
        ('model "llama9" not found, try pulling it first', 404, ModelNotFoundError),
        ("model 'llama9' not found", 404, ModelNotFoundError),
        ("registry.ollama.ai/library/gemma:2b does not support tools", 400, NotSupportedError),
        ("something else missing", 404, NotFoundError),
        ("too many requests", 429, RateLimitError),
        ("llama runner process has terminated", 500, UpstreamUnavailableError),
        ("invalid options", 400, BadRequestError),
    ],
)
def test_error_from_ollama(message, status, error):
    exc = error_from_ollama(message, status=status, provider="ollama", model="x")
    assert type(exc) is error
    assert exc.message == message


def test_error_body_is_ollama_shaped():
    assert ollama_error_body(BadRequestError("nope")) == {"error": "nope"}
    assert ollama_error_body("plain") == {"error": "plain"}


# -- Ollama request → canonical (gateway) -------------------------------------------------------
def test_ollama_request_to_canonical():
    body = {
        "model": "llama3.2",
        "messages": [{"role": "user", "content": "hi", "images": [PNG_B64]}],
        "format": "json",
        "options": {"temperature": 0, "num_predict": 32, "stop": ["x"], "num_ctx": 4096, "top_k": 20},
        "keep_alive": "1h",
    }
    req = from_ollama_request(body)
    assert req.stream is True  # Ollama streams unless told not to
    assert req.temperature == 0 and req.max_tokens == 32 and req.stop == ["x"]
    assert req.response_format == {"type": "json_object"}
    assert req.messages[0].content == [
        {"type": "text", "text": "hi"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
    ]
    again = to_ollama_request(req, stream=False)
    assert again["options"] == {
        "num_ctx": 4096,
        "top_k": 20,
        "temperature": 0,
        "stop": ["x"],
        "num_predict": 32,
    }
    assert again["keep_alive"] == "1h" and again["format"] == "json"
    assert again["messages"] == body["messages"]


def test_unlimited_num_predict_is_no_max_tokens():
    assert (
        from_ollama_request({"model": "m", "messages": [], "options": {"num_predict": -1}}).max_tokens is None
    )


def test_jpeg_images_get_their_media_type():
    jpeg = base64.b64encode(b"\xff\xd8\xff\xe0" + b"\x00" * 16).decode()
    (msg,) = from_ollama_messages([{"role": "user", "content": "", "images": [jpeg]}])
    assert msg.content == [{"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{jpeg}"}}]


def test_tool_results_attach_to_the_call_with_their_name():
    messages = from_ollama_messages(
        [
            {"role": "user", "content": "two cities"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {"function": {"name": "weather", "arguments": {"city": "Paris"}}},
                    {"function": {"name": "time", "arguments": {"city": "Paris"}}},
                ],
            },
            {"role": "tool", "content": "10:00", "tool_name": "time"},
            {"role": "tool", "content": "sunny", "tool_name": "weather"},
        ]
    )
    weather, clock = messages[1].tool_calls
    assert messages[1].content is None
    assert messages[2].tool_call_id == clock.id and messages[2].name == "time"
    assert messages[3].tool_call_id == weather.id
    # the same history translated twice gives the same ids (a resent conversation stays linked)
    assert from_ollama_messages([m for m in to_ollama_messages(messages)])[1].tool_calls[0].id == weather.id


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"messages": []},
        {"model": "m", "messages": "hi"},
        {"model": "m", "messages": [{"content": "no role"}]},
        {"model": "m", "messages": [{"role": "user", "content": ["parts"]}]},
        {"model": "m", "messages": [], "format": "yaml"},
        {"model": "m", "messages": [], "options": "fast"},
        {"model": "m", "messages": [{"role": "user", "content": "", "images": [1]}]},
        {"model": "m", "messages": [], "options": {"temperature": "hot"}},
    ],
)
def test_bad_ollama_requests_are_bad_requests(body):
    with pytest.raises(BadRequestError):
        from_ollama_request(body)


# -- canonical → Ollama answers (gateway) --------------------------------------------------------
def test_canonical_response_to_ollama():
    response = ChatResponse(
        model="llama3.2",
        created=1702390423,
        choices=[Choice(message=ChatMessage(role="assistant", content="Hi"), finish_reason="length")],
        usage=Usage.of(5, 1),
    )
    assert to_ollama_response(response) == {
        "model": "llama3.2",
        "created_at": "2023-12-12T14:13:43Z",
        "message": {"role": "assistant", "content": "Hi"},
        "done": True,
        "done_reason": "length",
        "prompt_eval_count": 5,
        "eval_count": 1,
    }


def test_stream_writer_gathers_tool_call_fragments():
    writer = OllamaStreamWriter(model="m")

    def chunk(delta: Delta, finish=None, usage=None) -> ChatChunk:
        return ChatChunk(
            id="c", model="m", choices=[ChunkChoice(delta=delta, finish_reason=finish)], usage=usage
        )

    frag = [
        ToolCall(index=0, id="call_1", function=FunctionCall(name="get_weather", arguments='{"ci')),
        ToolCall(index=0, function=FunctionCall(arguments='ty": "Paris"}')),
    ]
    out = writer.write(chunk(Delta(role="assistant", content="Let me look.")))
    out += writer.write(chunk(Delta(tool_calls=[frag[0]])))
    out += writer.write(chunk(Delta(tool_calls=[frag[1]]), finish="tool_calls"))
    out += writer.write(ChatChunk(id="c", model="m", usage=Usage.of(9, 4)))  # usage after the finish
    out += writer.finish()
    assert [o["done"] for o in out] == [False, False, True]
    assert out[0]["message"] == {"role": "assistant", "content": "Let me look."}
    assert out[1]["message"]["tool_calls"] == [
        {"function": {"index": 0, "name": "get_weather", "arguments": {"city": "Paris"}}}
    ]
    assert out[2]["done_reason"] == "stop" and (out[2]["prompt_eval_count"], out[2]["eval_count"]) == (9, 4)


# -- round-trip properties ----------------------------------------------------------------------
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**9), 10**9),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
arguments = st.dictionaries(st.text(max_size=8), json_values, max_size=4)
names = st.from_regex(r"[a-z_][a-z0-9_]{0,15}", fullmatch=True)
texts = st.text(max_size=40)
images = st.lists(
    st.tuples(
        st.sampled_from([b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a"]), st.binary(max_size=24)
    ).map(lambda t: base64.b64encode(t[0] + t[1]).decode()),
    max_size=2,
)


@st.composite
def ollama_conversations(draw) -> list[dict[str, Any]]:
    """Well-formed Ollama histories: tool results name a tool the assistant called."""
    out: list[dict[str, Any]] = []
    if draw(st.booleans()):
        out.append({"role": "system", "content": draw(texts)})
    for _ in range(draw(st.integers(1, 4))):
        user: dict[str, Any] = {"role": "user", "content": draw(texts)}
        if pics := draw(images):
            user["images"] = pics
        out.append(user)
        assistant: dict[str, Any] = {"role": "assistant", "content": draw(texts)}
        if thinking := draw(st.text(max_size=10)):
            assistant["thinking"] = thinking
        calls = draw(st.lists(st.tuples(names, arguments), max_size=3))
        if calls:
            assistant["tool_calls"] = [{"function": {"name": n, "arguments": a}} for n, a in calls]
        out.append(assistant)
        for name, _ in calls:
            out.append({"role": "tool", "content": draw(texts), "tool_name": name})
    return out


@given(ollama_conversations())
@settings(max_examples=60, deadline=None)
def test_ollama_messages_round_trip(conversation):
    canonical = from_ollama_messages(conversation)
    assert to_ollama_messages(canonical) == conversation
    # every tool result points at a call of the same name in the latest assistant turn
    calls: dict[str, str] = {}
    for message in canonical:
        for call in message.tool_calls or []:
            calls[call.id] = call.function.name
        if message.role == "tool":
            assert calls[message.tool_call_id] == message.name


formats = st.sampled_from(
    [
        None,
        {"type": "json_object"},
        {"type": "json_schema", "json_schema": {"name": "response", "schema": {"type": "object"}}},
    ]
)


@given(
    temperature=st.none() | st.floats(0, 2),
    top_p=st.none() | st.floats(0, 1),
    seed=st.none() | st.integers(0, 2**31),
    stop=st.none() | st.lists(st.text(min_size=1, max_size=5), min_size=1, max_size=3),
    max_tokens=st.none() | st.integers(1, 10**6),
    response_format=formats,
    tools=st.none() | st.just([WEATHER_TOOL]),
    conversation=ollama_conversations(),
)
@settings(max_examples=50, deadline=None)
def test_canonical_request_round_trips_through_ollama(conversation, **fields):
    original = ChatRequest(
        model="llama3.2", messages=from_ollama_messages(conversation), stream=False, **fields
    )
    back = from_ollama_request(to_ollama_request(original, stream=False))
    assert back.model_dump(exclude_none=True) == original.model_dump(exclude_none=True)


@st.composite
def canonical_responses(draw) -> ChatResponse:
    calls = draw(st.lists(st.tuples(names, arguments), max_size=3))
    content = draw(texts)
    message = ChatMessage(
        role="assistant",
        content=content if content or not calls else None,
        tool_calls=[
            ToolCall(id=f"call_{i}", function=FunctionCall(name=n, arguments=json.dumps(a)))
            for i, (n, a) in enumerate(calls)
        ]
        or None,
    )
    finish = "tool_calls" if calls else draw(st.sampled_from(["stop", "length"]))
    usage = Usage.of(draw(st.integers(0, 10**6)), draw(st.integers(0, 10**6)))
    return ChatResponse(model="m", choices=[Choice(message=message, finish_reason=finish)], usage=usage)


def _calls(message_or_delta: Any) -> list[tuple[str | None, Any]]:
    return [(c.function.name, json.loads(c.function.arguments)) for c in message_or_delta.tool_calls or []]


@given(canonical_responses())
@settings(max_examples=80, deadline=None)
def test_canonical_response_round_trips_through_ollama(response):
    back = from_ollama_response(to_ollama_response(response))
    assert back.message.content == response.message.content
    assert _calls(back.message) == _calls(response.message)
    assert back.finish_reason == response.finish_reason
    assert back.usage == response.usage
    assert back.created == response.created and back.model == response.model


def _split(text: str, cuts: list[int]) -> list[str]:
    points = sorted({min(c, len(text)) for c in cuts} | {0, len(text)})
    return [text[a:b] for a, b in itertools.pairwise(points) if text[a:b]]


@given(canonical_responses(), st.lists(st.integers(0, 60), max_size=5), st.booleans())
@settings(max_examples=80, deadline=None)
def test_canonical_stream_round_trips_through_ollama(response, cuts, usage_last):
    """Chunks → Ollama NDJSON objects → chunks: same text, calls, finish reason and usage,
    whatever way the text and the calls' argument strings were cut into deltas."""
    chunks = [ChatChunk(id="c", model="m", choices=[ChunkChoice(delta=Delta(role="assistant"))])]
    for piece in _split(response.message.text(), cuts):
        chunks.append(ChatChunk(id="c", model="m", choices=[ChunkChoice(delta=Delta(content=piece))]))
    for index, call in enumerate(response.message.tool_calls or []):
        for n, piece in enumerate(_split(call.function.arguments, cuts)):
            fn = FunctionCall(name=call.function.name if n == 0 else None, arguments=piece)
            delta = Delta(tool_calls=[ToolCall(index=index, id=call.id if n == 0 else None, function=fn)])
            chunks.append(ChatChunk(id="c", model="m", choices=[ChunkChoice(delta=delta)]))
    finish = ChunkChoice(finish_reason=response.finish_reason)
    if usage_last:  # OpenAI's include_usage: a last chunk with usage and no choices
        chunks += [
            ChatChunk(id="c", model="m", choices=[finish]),
            ChatChunk(id="c", model="m", usage=response.usage),
        ]
    else:
        chunks.append(ChatChunk(id="c", model="m", choices=[finish], usage=response.usage))

    writer = OllamaStreamWriter(model="m")
    objects = [o for c in chunks for o in writer.write(c)] + writer.finish()
    objects = [json.loads(json.dumps(o)) for o in objects]  # through the wire
    reader = OllamaStreamReader(model="m")
    back = [c for c in (reader.read(o) for o in objects) if c is not None]

    assert "".join(c.text() for c in back) == response.message.text()
    assert [call for c in back for call in _calls(c.choices[0].delta)] == _calls(response.message)
    assert back[-1].choices[0].finish_reason == response.finish_reason
    assert back[-1].usage == response.usage
    assert reader.done and sum(o["done"] for o in objects) == 1
