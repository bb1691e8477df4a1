"""Several tool calls in one answer, over each wire protocol: the drivers against a scripted
upstream on loopback that answers with the vendors' own payloads (as their API references
show them), both ways: the calls coming back, and the calls and results sent in the history."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from aiohttp import web

from app.kernel.canonical import ChatChunk, ChatMessage, ChatRequest, ModelSpec
from app.kernel.drivers.anthropic import AnthropicDriver
from app.kernel.drivers.base import ProviderConfig
from app.kernel.drivers.ollama import OllamaDriver
from app.kernel.drivers.openai_compat import OpenAICompatDriver
from app.kernel.errors import ConfigError
from tests.fakes.upstream import FakeUpstream

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather now.",
                                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                           "required": ["city"]}}}
TIME = {"type": "function", "function": {"name": "get_time", "description": "Time now.",
                                         "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}}}}
ASKED = [("get_weather", {"city": "Oslo"}), ("get_time", {"tz": "Europe/Oslo"})]


class Scripted(FakeUpstream):
    """Answers each path with what the test put in `answers[path]`: a JSON body, or a list of
    events written one by one (SSE for OpenAI and Anthropic, NDJSON for Ollama)."""

    def __init__(self) -> None:
        super().__init__()
        self.answers: dict[str, Any] = {}

    def routes(self) -> list[web.RouteDef]:
        return [*(web.post(p, self._answer) for p in ("/v1/chat/completions", "/v1/messages", "/api/chat")),
                web.get("/v1/models", self._answer)]

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        answer = self.answers[request.path]
        if not isinstance(answer, list):
            return web.json_response(answer)
        ndjson = request.path == "/api/chat"
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson" if ndjson
                                               else "text/event-stream"})
        await response.prepare(request)
        for event in answer:
            if ndjson:
                await response.write(json.dumps(event).encode() + b"\n")
            elif isinstance(event, tuple):  # Anthropic: (event name, data)
                await response.write(f"event: {event[0]}\ndata: {json.dumps(event[1])}\n\n".encode())
            else:
                await response.write(b"data: " + (event if isinstance(event, bytes) else
                                                  json.dumps(event).encode()) + b"\n\n")
        await response.write_eof()
        return response

    def body(self, n: int = -1) -> dict[str, Any]:
        return self.requests[n].body


@pytest.fixture
async def upstream():
    fake = await Scripted().start()
    yield fake
    await fake.stop()


def spec(provider: str, name: str) -> ModelSpec:
    return ModelSpec(id=f"{provider}/{name}", name=name, provider=provider)


def calls_of(message: ChatMessage) -> list[tuple[str, dict]]:
    return [(c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls or []]


def assemble(chunks: list[ChatChunk]) -> list[dict[str, Any]]:
    """What a client makes of streamed tool-call deltas: one call per index, arguments joined."""
    calls: dict[int, dict[str, Any]] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            for delta in choice.delta.tool_calls or []:
                assert delta.index is not None, "every streamed tool-call delta names its call's index"
                call = calls.setdefault(delta.index, {"id": None, "name": None, "arguments": ""})
                call["id"] = delta.id or call["id"]
                call["name"] = delta.function.name or call["name"]
                call["arguments"] += delta.function.arguments or ""
    return [calls[i] for i in sorted(calls)]


def history() -> list[ChatMessage]:
    """A conversation in which the model asked for two calls and both were answered."""
    return [
        ChatMessage(role="system", content="Be brief."),
        ChatMessage(role="user", content="Weather and time in Oslo?"),
        ChatMessage(role="assistant", content="Checking both.", tool_calls=[
            {"id": "call_w", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}},
            {"id": "call_t", "type": "function", "function": {"name": "get_time", "arguments": '{"tz":"Europe/Oslo"}'}},
        ]),
        ChatMessage(role="tool", tool_call_id="call_w", content="-3 C, snow"),
        ChatMessage(role="tool", tool_call_id="call_t", content="14:05"),
    ]


# -- OpenAI-compatible ---------------------------------------------------------------------------


@pytest.fixture
async def openai(upstream):
    driver = OpenAICompatDriver(ProviderConfig(id="oa", kind="openai", base_url=f"{upstream.url}/v1"))
    yield driver
    await driver.aclose()


def openai_completion(calls: list[tuple[str, dict]]) -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o",
            "choices": [{"index": 0, "logprobs": None, "finish_reason": "tool_calls",
                         "message": {"role": "assistant", "content": None, "refusal": None, "tool_calls": [
                             {"id": f"call_{i}", "type": "function",
                              "function": {"name": n, "arguments": json.dumps(a)}} for i, (n, a) in enumerate(calls)]}}],
            "usage": {"prompt_tokens": 80, "completion_tokens": 40, "total_tokens": 120}}


def openai_stream(calls: list[tuple[str, dict]], *, interleaved: bool) -> list[Any]:
    """OpenAI streams each call's head (index, id, name) and then its arguments in pieces, one call
    after another; some servers (vLLM, llama.cpp's) interleave the calls' pieces."""
    head = {"id": "chatcmpl-2", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o"}

    def chunk(delta, finish=None):
        return {**head, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}

    starts = [chunk({"tool_calls": [{"index": i, "id": f"call_{i}", "type": "function",
                                     "function": {"name": n, "arguments": ""}}]}) for i, (n, _) in enumerate(calls)]
    pieces = [[chunk({"tool_calls": [{"index": i, "function": {"arguments": text[j:j + 5]}}]})
               for j in range(0, len(text), 5)] for i, text in enumerate(json.dumps(a) for _, a in calls)]
    events: list[Any] = [chunk({"role": "assistant", "content": None})]
    if interleaved:
        events += starts
        events += [p for group in itertools.zip_longest(*pieces) for p in group if p is not None]
    else:
        for start, own in zip(starts, pieces, strict=True):
            events += [start, *own]
    events.append(chunk({}, "tool_calls"))
    events.append({**head, "choices": [], "usage": {"prompt_tokens": 80, "completion_tokens": 40,
                                                      "total_tokens": 120}})
    return [*events, b"[DONE]"]


async def test_openai_several_calls_come_back_whole(openai, upstream):
    upstream.answers["/v1/chat/completions"] = openai_completion(ASKED)
    answer = await openai.chat(ChatRequest(model="x", messages=history()[:2], tools=[WEATHER, TIME],
                                           parallel_tool_calls=True), spec("oa", "gpt-4o"))
    assert calls_of(answer.message) == ASKED and answer.finish_reason == "tool_calls"
    assert [c.id for c in answer.message.tool_calls] == ["call_0", "call_1"]
    sent = upstream.body()
    assert sent["tools"] == [WEATHER, TIME] and sent["parallel_tool_calls"] is True


@pytest.mark.parametrize("interleaved", [False, True])
async def test_openai_streamed_deltas_of_several_calls_assemble(openai, upstream, interleaved):
    upstream.answers["/v1/chat/completions"] = openai_stream(ASKED, interleaved=interleaved)
    chunks = [c async for c in openai.stream(ChatRequest(model="x", messages=history()[:2], tools=[WEATHER, TIME],
                                                         stream=True), spec("oa", "gpt-4o"))]
    assembled = assemble(chunks)
    assert [(c["name"], json.loads(c["arguments"])) for c in assembled] == ASKED
    assert [c["id"] for c in assembled] == ["call_0", "call_1"]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


async def test_openai_history_with_calls_and_results_goes_out_as_it_came(openai, upstream):
    upstream.answers["/v1/chat/completions"] = openai_completion([])
    await openai.chat(ChatRequest(model="x", messages=history(), tools=[WEATHER, TIME]), spec("oa", "gpt-4o"))
    sent = upstream.body()["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "tool", "tool"]
    assert [c["id"] for c in sent[2]["tool_calls"]] == ["call_w", "call_t"]
    assert [(m["tool_call_id"], m["content"]) for m in sent[3:]] == [("call_w", "-3 C, snow"), ("call_t", "14:05")]


# -- Anthropic -----------------------------------------------------------------------------------


@pytest.fixture
async def anthropic(upstream):
    driver = AnthropicDriver(ProviderConfig(id="an", kind="anthropic", base_url=upstream.url, api_key="k"))
    yield driver
    await driver.aclose()


async def test_anthropic_several_tool_use_blocks_become_tool_calls(anthropic, upstream):
    upstream.answers["/v1/messages"] = {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
        "content": [{"type": "text", "text": "Checking both."},
                    {"type": "tool_use", "id": "toolu_w", "name": "get_weather", "input": {"city": "Oslo"}},
                    {"type": "tool_use", "id": "toolu_t", "name": "get_time", "input": {"tz": "Europe/Oslo"}}],
        "stop_reason": "tool_use", "stop_sequence": None, "usage": {"input_tokens": 50, "output_tokens": 30}}
    answer = await anthropic.chat(ChatRequest(model="x", messages=history()[:2], tools=[WEATHER, TIME],
                                              parallel_tool_calls=False, tool_choice="auto"), spec("an", "claude-x"))
    assert calls_of(answer.message) == ASKED and answer.finish_reason == "tool_calls"
    assert [c.id for c in answer.message.tool_calls] == ["toolu_w", "toolu_t"]
    assert answer.message.content == "Checking both."
    sent = upstream.body()
    assert [t["name"] for t in sent["tools"]] == ["get_weather", "get_time"]
    assert sent["tools"][0]["input_schema"] == WEATHER["function"]["parameters"]
    assert sent["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}


async def test_anthropic_history_sends_tool_use_and_one_turn_of_tool_results(anthropic, upstream):
    upstream.answers["/v1/messages"] = {
        "id": "msg_2", "type": "message", "role": "assistant", "model": "claude-x",
        "content": [{"type": "text", "text": "Snowy, 14:05."}], "stop_reason": "end_turn",
        "stop_sequence": None, "usage": {"input_tokens": 90, "output_tokens": 8}}
    answer = await anthropic.chat(ChatRequest(model="x", messages=history(), tools=[WEATHER, TIME]),
                                  spec("an", "claude-x"))
    assert answer.message.content == "Snowy, 14:05."
    sent = upstream.body()
    assert sent["system"] == "Be brief."
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]
    assert sent["messages"][1]["content"] == [
        {"type": "text", "text": "Checking both."},
        {"type": "tool_use", "id": "call_w", "name": "get_weather", "input": {"city": "Oslo"}},
        {"type": "tool_use", "id": "call_t", "name": "get_time", "input": {"tz": "Europe/Oslo"}}]
    assert sent["messages"][2]["content"] == [  # both results in the one user turn that follows
        {"type": "tool_result", "tool_use_id": "call_w", "content": "-3 C, snow"},
        {"type": "tool_result", "tool_use_id": "call_t", "content": "14:05"}]


async def test_anthropic_streamed_tool_use_blocks_assemble(anthropic, upstream):
    def block_events(index, block_id, name, args):
        text = json.dumps(args)
        return [("content_block_start", {"type": "content_block_start", "index": index, "content_block": {
                    "type": "tool_use", "id": block_id, "name": name, "input": {}}}),
                *(("content_block_delta", {"type": "content_block_delta", "index": index, "delta": {
                    "type": "input_json_delta", "partial_json": text[j:j + 6]}}) for j in range(0, len(text), 6)),
                ("content_block_stop", {"type": "content_block_stop", "index": index})]

    upstream.answers["/v1/messages"] = [
        ("message_start", {"type": "message_start", "message": {
            "id": "msg_3", "type": "message", "role": "assistant", "model": "claude-x", "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 50, "output_tokens": 1}}}),
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {"type": "text", "text": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "text_delta", "text": "Checking both."}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        *block_events(1, "toolu_w", "get_weather", {"city": "Oslo"}),
        *block_events(2, "toolu_t", "get_time", {"tz": "Europe/Oslo"}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                           "usage": {"output_tokens": 30}}),
        ("message_stop", {"type": "message_stop"}),
    ]
    chunks = [c async for c in anthropic.stream(ChatRequest(model="x", messages=history()[:2],
                                                            tools=[WEATHER, TIME], stream=True), spec("an", "claude-x"))]
    assembled = assemble(chunks)
    assert [(c["name"], json.loads(c["arguments"])) for c in assembled] == ASKED
    assert [c["id"] for c in assembled] == ["toolu_w", "toolu_t"]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert "".join(c.text() for c in chunks) == "Checking both."


# -- Ollama --------------------------------------------------------------------------------------


@pytest.fixture
async def ollama(upstream):
    driver = OllamaDriver(ProviderConfig(id="ol", kind="ollama", base_url=upstream.url))
    yield driver
    await driver.aclose()


def ollama_message(calls: list[dict[str, Any]], *, done: bool = True) -> dict[str, Any]:
    return {"model": "qwen3", "created_at": "2025-01-01T00:00:00Z",
            "message": {"role": "assistant", "content": "", "tool_calls": calls},
            "done": done, **({"done_reason": "stop", "prompt_eval_count": 40, "eval_count": 20} if done else {})}


async def test_ollama_several_calls_with_arguments_as_objects_or_as_strings(ollama, upstream):
    # Ollama sends objects; servers that copy OpenAI's shape (and older builds) send strings
    upstream.answers["/api/chat"] = ollama_message([
        {"function": {"name": "get_weather", "arguments": {"city": "Oslo"}}},
        {"function": {"index": 1, "name": "get_time", "arguments": json.dumps({"tz": "Europe/Oslo"})}}])
    answer = await ollama.chat(ChatRequest(model="x", messages=history()[:2], tools=[WEATHER, TIME]),
                               spec("ol", "qwen3"))
    assert calls_of(answer.message) == ASKED and answer.finish_reason == "tool_calls"
    ids = [c.id for c in answer.message.tool_calls]
    assert len(set(ids)) == 2 and all(ids)
    assert upstream.body()["tools"] == [WEATHER, TIME]


async def test_ollama_streamed_calls_keep_counting_their_index(ollama, upstream):
    upstream.answers["/api/chat"] = [  # one call per object, as Ollama streams them
        ollama_message([{"function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}], done=False),
        ollama_message([{"function": {"name": "get_time", "arguments": {"tz": "Europe/Oslo"}}}], done=False),
        {**ollama_message([]), "message": {"role": "assistant", "content": ""}},
    ]
    chunks = [c async for c in ollama.stream(ChatRequest(model="x", messages=history()[:2], tools=[WEATHER, TIME],
                                                         stream=True), spec("ol", "qwen3"))]
    assembled = assemble(chunks)
    assert [(c["name"], json.loads(c["arguments"])) for c in assembled] == ASKED
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


async def test_ollama_history_sends_arguments_as_objects_and_results_by_tool_name(ollama, upstream):
    upstream.answers["/api/chat"] = {**ollama_message([]), "message": {"role": "assistant", "content": "Snowy."}}
    await ollama.chat(ChatRequest(model="x", messages=history(), tools=[WEATHER, TIME]), spec("ol", "qwen3"))
    sent = upstream.body()["messages"]
    assert sent[2]["tool_calls"] == [{"function": {"name": "get_weather", "arguments": {"city": "Oslo"}}},
                                     {"function": {"name": "get_time", "arguments": {"tz": "Europe/Oslo"}}}]
    assert sent[3:] == [{"role": "tool", "content": "-3 C, snow", "tool_name": "get_weather"},
                        {"role": "tool", "content": "14:05", "tool_name": "get_time"}]


# -- which models get the prompt-based fallback ---------------------------------------------------


def test_ollama_models_without_tools_in_their_capabilities_are_prompted():
    driver = OllamaDriver(ProviderConfig(id="ol", kind="ollama"))
    tag = {"name": "gemma:2b", "details": {"family": "gemma"}}
    plain = driver.spec_for(tag, {"capabilities": ["completion"]})
    tooled = driver.spec_for(tag, {"capabilities": ["completion", "tools"]})
    unknown = driver.spec_for(tag, None)  # /api/show failed: nothing known, tools are tried
    assert (plain.capabilities.prompted_tools, tooled.capabilities.prompted_tools,
            unknown.capabilities.prompted_tools) == (True, False, False)
    forced = OllamaDriver(ProviderConfig(id="ol", kind="ollama", options={"tool_calls": "native"}))
    assert forced.spec_for(tag, {"capabilities": ["completion"]}).capabilities.prompted_tools is False


async def test_a_provider_can_be_told_to_prompt_for_tools_and_a_wrong_mode_is_refused(upstream):
    upstream.answers["/v1/models"] = {"object": "list", "data": [{"id": "tiny", "object": "model"}]}

    async def prompted(**options) -> bool:
        driver = OpenAICompatDriver(ProviderConfig(id="oa", kind="openai", base_url=f"{upstream.url}/v1",
                                                   options=options))
        try:
            (model,) = await driver.list_models()
            return model.capabilities.prompted_tools
        finally:
            await driver.aclose()

    assert await prompted() is False  # an OpenAI-compatible server is asked with `tools`
    assert await prompted(tool_calls="prompted") is True
    with pytest.raises(ConfigError, match=r"tool_calls 'yes'.*auto, native, prompted"):
        await prompted(tool_calls="yes")
