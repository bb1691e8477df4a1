"""Tool calls on the in-process llama.cpp driver.

Random weights decide nothing worth asserting, so the translation is tested on fixed inputs
(the request llama-cpp-python gets, its answers as its chat handlers shape them), and a real
run with `chatml-function-calling` checks only the plumbing: the call reaches the handler and
what comes back is a well-formed answer."""

from __future__ import annotations

import json

import pytest

from app.kernel.canonical import ChatMessage, ChatRequest, ModelSpec
from app.kernel.drivers.base import ProviderConfig
from app.kernel.drivers.llamacpp import LlamaCppDriver, _call_kwargs, _chunk, _response

pytest.importorskip("llama_cpp")

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {
    "type": "object", "properties": {"tz": {"type": "string"}}}}}
MODEL = ModelSpec(id="local/tiny-chat", name="tiny-chat", provider="local", local=True)


def history() -> list[ChatMessage]:
    return [ChatMessage(role="user", content="Weather and time in Oslo?"),
            ChatMessage(role="assistant", content=None, tool_calls=[
                {"id": "c1", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}},
                {"id": "c2", "function": {"name": "get_time", "arguments": '{"tz": "CET"}'}}]),
            ChatMessage(role="tool", tool_call_id="c1", content="snow"),
            ChatMessage(role="tool", tool_call_id="c2", content="14:05")]


def test_tools_without_a_tool_choice_let_the_model_choose():
    # llama-cpp-python's handlers read no tool_choice as "no tools" (chatml-function-calling
    # then renders none at all): OpenAI's default with tools is "auto"
    kwargs = _call_kwargs(ChatRequest(model="m", messages=history()[:1], tools=[WEATHER, TIME]), MODEL,
                          "chatml-function-calling")
    assert kwargs["tools"] == [WEATHER, TIME] and kwargs["tool_choice"] == "auto"
    # "required" of several tools has no spelling there (it asserts "auto"); of one tool, it is named
    several = _call_kwargs(ChatRequest(model="m", messages=history()[:1], tools=[WEATHER, TIME],
                                       tool_choice="required"), MODEL, "chatml-function-calling")
    assert several["tool_choice"] == "auto"
    one = _call_kwargs(ChatRequest(model="m", messages=history()[:1], tools=[WEATHER], tool_choice="required"),
                       MODEL, "chatml-function-calling")
    assert one["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}


def test_tool_results_reach_a_chatml_function_calling_prompt_as_user_turns():
    kwargs = _call_kwargs(ChatRequest(model="m", messages=history(), tools=[WEATHER, TIME]), MODEL,
                          "chatml-function-calling")
    sent = kwargs["messages"]
    # its template renders system, user and assistant turns only: a `tool` turn would vanish
    assert [m["role"] for m in sent] == ["user", "assistant", "user", "user"]
    assert sent[2]["content"] == "functions.get_weather returned:\nsnow"
    assert sent[3]["content"] == "functions.get_time returned:\n14:05"
    assert [c["function"]["name"] for c in sent[1]["tool_calls"]] == ["get_weather", "get_time"]
    # templates that know the tool role keep it
    functionary = _call_kwargs(ChatRequest(model="m", messages=history(), tools=[WEATHER]), MODEL, "functionary-v2")
    assert [m["role"] for m in functionary["messages"]] == ["user", "assistant", "tool", "tool"]
    assert functionary["messages"][2]["tool_call_id"] == "c1"


def test_several_calls_from_the_handler_become_canonical_tool_calls():
    raw = {  # chatml-function-calling's answer with two calls (its id scheme, its extra keys)
        "id": "chatcmpl-abc", "object": "chat.completion", "created": 7, "model": "tiny-chat",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "logprobs": None, "message": {
            "role": "assistant", "content": None, "tool_calls": [
                {"id": "call__0_get_weather_cmpl-1", "type": "function",
                 "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}},
                {"id": "call__1_get_time_cmpl-2", "type": "function",
                 "function": {"name": "get_time", "arguments": '{"tz": "CET"}'}}]}}],
        "usage": {"prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42}}
    answer = _response(raw, MODEL)
    assert answer.finish_reason == "tool_calls"
    assert [(c.id, c.function.name, json.loads(c.function.arguments)) for c in answer.message.tool_calls] == [
        ("call__0_get_weather_cmpl-1", "get_weather", {"city": "Oslo"}),
        ("call__1_get_time_cmpl-2", "get_time", {"tz": "CET"})]
    assert answer.usage.total_tokens == 42


def test_streamed_call_deltas_keep_their_index():
    def raw(delta, finish=None):
        return {"id": "chatcmpl-s", "created": 1, "model": "tiny-chat",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}, MODEL

    chunks = [_chunk(*raw({"role": "assistant", "content": None, "tool_calls": [
                  {"index": 0, "id": "call_0", "type": "function", "function": {"name": "get_weather",
                                                                                "arguments": '{"city": '}}]})),
              _chunk(*raw({"tool_calls": [{"index": 0, "function": {"arguments": '"Oslo"}'}}]})),
              _chunk(*raw({"tool_calls": [{"index": 1, "id": "call_1", "type": "function",
                                          "function": {"name": "get_time", "arguments": "{}"}}]})),
              _chunk(*raw({}, "tool_calls")), _chunk(*raw({}))]
    assert chunks[-1] is None  # llama-cpp-python's empty chunks are dropped
    deltas = [d for c in chunks if c for d in c.choices[0].delta.tool_calls or []]
    assert [(d.index, d.function.name, d.function.arguments) for d in deltas] == [
        (0, "get_weather", '{"city": '), (0, None, '"Oslo"}'), (1, "get_time", "{}")]
    assert chunks[3].choices[0].finish_reason == "tool_calls"


@pytest.mark.llama
async def test_a_tool_capable_chat_format_runs_tools_natively_and_others_are_prompted(tiny_gguf):
    native = LlamaCppDriver(ProviderConfig(id="local", kind="llamacpp", options={
        "models": [{"path": str(tiny_gguf), "chat_format": "chatml-function-calling"}]}))
    plain = LlamaCppDriver(ProviderConfig(id="local", kind="llamacpp", options={"models": [str(tiny_gguf)]}))
    try:
        (spec,) = await native.list_models()
        (plain_spec,) = await plain.list_models()
        assert spec.capabilities.tools and not spec.capabilities.prompted_tools
        assert plain_spec.capabilities.prompted_tools and not plain_spec.capabilities.tools
        request = ChatRequest(model=spec.id, messages=history(), tools=[WEATHER, TIME], max_tokens=8, temperature=0)
        answer = await native.chat(request, spec)
        # noise weights: either a message or calls, but the calls name offered tools only
        assert answer.finish_reason in ("tool_calls", "stop", "length")
        for call in answer.message.tool_calls or []:
            assert call.function.name in ("get_weather", "get_time") and call.id
    finally:
        await native.aclose()
        await plain.aclose()
