"""Tools through the gateway for a model without tool calls of its own (tools.prompted_stream).

The fake Ollama serves a model whose /api/show lists no `tools` (so its spec says
`prompted_tools`) and answers with calls written as text; the official SDKs talk to the real
gateway (lane on and off) and must get proper tool calls, whole and streamed.
"""

from __future__ import annotations

import json

import pytest

PLAIN = "gemma:2b"
MODEL = f"ollama/{PLAIN}"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city now",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}
TAGGED = '<tool_calls>\n[{"name": "get_weather", "arguments": {"city": "Oslo"}}, {"name": "get_time", "arguments": {}}]\n</tool_calls>'
# What small models write instead: chatter, a fence, single quotes, a trailing comma.
MALFORMED = "Let me look that up.\n```json\n{'name': 'get_weather', 'arguments': {'city': 'Oslo',},}\n```"
ASK = [{"role": "user", "content": "What is the weather in Oslo?"}]


@pytest.fixture
async def ollama(kernel_with_openai, ollama_upstream):
    """The fake Ollama as provider `ollama`, with a model that has no tool calls of its own."""
    ollama_upstream.models[PLAIN] = {
        "size": 1_678_447_520, "family": "gemma", "parameter_size": "2B", "quantization_level": "Q4_0",
        "context_length": 8192, "capabilities": ["completion"],
    }
    await kernel_with_openai.add_provider("ollama", "ollama", base_url=ollama_upstream.url)
    await kernel_with_openai.refresh_provider("ollama")
    assert kernel_with_openai.registry.find_model(MODEL).capabilities.prompted_tools
    return ollama_upstream


def sent_chats(fake) -> list[dict]:
    return [r.body for r in fake.requests if r.path in ("/api/chat", "/v1/chat/completions")]


def assert_prompted(fake) -> None:
    """The model was never sent the API's tools, and got them in its system message."""
    (body,) = sent_chats(fake)
    assert "tools" not in body
    assert body["messages"][0]["role"] == "system"
    assert "# Tools" in body["messages"][0]["content"] and "get_weather" in body["messages"][0]["content"]


async def test_the_openai_sdk_gets_tool_calls_from_a_model_that_writes_them_as_text(client, ollama):
    ollama.reply_text = TAGGED
    answer = await client.chat.completions.create(model=MODEL, messages=ASK, tools=[WEATHER, TIME])
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert [(c.function.name, json.loads(c.function.arguments)) for c in choice.message.tool_calls] == [
        ("get_weather", {"city": "Oslo"}), ("get_time", {})]
    assert all(c.id for c in choice.message.tool_calls) and not choice.message.content
    assert_prompted(ollama)


async def test_the_openai_sdk_gets_a_streamed_tool_call_from_malformed_json(client, ollama):
    ollama.reply_text = MALFORMED
    stream = await client.chat.completions.create(model=MODEL, messages=ASK, tools=[WEATHER], stream=True)
    text, calls, finish = "", {}, None
    async for chunk in stream:
        for choice in chunk.choices:
            text += choice.delta.content or ""
            for call in choice.delta.tool_calls or []:
                joined = calls.setdefault(call.index, {"id": None, "name": "", "arguments": ""})
                joined["id"] = joined["id"] or call.id
                joined["name"] += call.function.name or ""
                joined["arguments"] += call.function.arguments or ""
            finish = choice.finish_reason or finish
    assert finish == "tool_calls"
    assert text.strip() == "Let me look that up."
    (call,) = calls.values()
    assert call["name"] == "get_weather" and json.loads(call["arguments"]) == {"city": "Oslo"} and call["id"]
    assert_prompted(ollama)


async def test_a_plain_answer_still_streams_in_pieces(client, ollama):
    ollama.reply_text = "Oslo is cold today, about minus four degrees, with light snow in the evening."
    stream = await client.chat.completions.create(model=MODEL, messages=ASK, tools=[WEATHER], stream=True)
    pieces, finish = [], None
    async for chunk in stream:
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
            assert not choice.delta.tool_calls
            finish = choice.finish_reason or finish
    assert len(pieces) > 1  # not held back to the end
    assert "".join(pieces) == ollama.reply_text and finish == "stop"


async def test_the_anthropic_sdk_gets_tool_use_blocks(claude, ollama):
    ollama.reply_text = TAGGED
    tools = [{"name": "get_weather", "description": "The weather in a city now",
              "input_schema": WEATHER["function"]["parameters"]},
             {"name": "get_time", "input_schema": {"type": "object", "properties": {}}}]
    answer = await claude.messages.create(model=MODEL, max_tokens=256, messages=ASK, tools=tools)
    assert answer.stop_reason == "tool_use"
    assert [(b.name, b.input) for b in answer.content if b.type == "tool_use"] == [
        ("get_weather", {"city": "Oslo"}), ("get_time", {})]

    async with claude.messages.stream(model=MODEL, max_tokens=256, messages=ASK, tools=tools) as stream:
        final = await stream.get_final_message()
    assert final.stop_reason == "tool_use"
    assert [(b.name, b.input) for b in final.content if b.type == "tool_use"] == [
        ("get_weather", {"city": "Oslo"}), ("get_time", {})]
    assert all("tools" not in body for body in sent_chats(ollama))


async def test_the_history_of_calls_and_results_reaches_the_model_as_text(client, ollama):
    ollama.reply_text = "It is 3 °C in Oslo."
    history = [*ASK,
               {"role": "assistant", "content": None, "tool_calls": [
                   {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]},
               {"role": "tool", "tool_call_id": "call_1", "content": "3 °C"}]
    answer = await client.chat.completions.create(model=MODEL, messages=history, tools=[WEATHER])
    assert answer.choices[0].message.content == "It is 3 °C in Oslo." and not answer.choices[0].message.tool_calls
    (body,) = sent_chats(ollama)
    assert [m["role"] for m in body["messages"]] == ["system", "user", "assistant", "user"]
    assert "<tool_calls>" in body["messages"][2]["content"]
    assert body["messages"][3]["content"] == '<tool_result name="get_weather">\n3 °C\n</tool_result>'


async def test_an_openai_compatible_server_told_to_prompt_never_gets_raw_tools(kernel_with_openai, openai_upstream,
                                                                              client, gateway):
    """The pass-through lane (on in half the runs) must not relay `tools` to such a model."""
    await kernel_with_openai.add_provider("plain", "openai", base_url=openai_upstream.api_base,
                                          options={"tool_calls": "prompted"})
    await kernel_with_openai.refresh_provider("plain")
    openai_upstream.tool_call = {"name": "get_weather", "arguments": {"city": "Bergen"}}  # were tools sent
    openai_upstream.reply_text = TAGGED
    openai_upstream.requests.clear()
    answer = await client.chat.completions.create(model="plain/gpt-fake-mini", messages=ASK, tools=[WEATHER, TIME])
    assert [c.function.name for c in answer.choices[0].message.tool_calls] == ["get_weather", "get_time"]
    assert json.loads(answer.choices[0].message.tool_calls[0].function.arguments) == {"city": "Oslo"}
    stream = await client.chat.completions.create(model="plain/gpt-fake-mini", messages=ASK, tools=[WEATHER],
                                                  stream=True)
    finishes = [c.choices[0].finish_reason async for c in stream if c.choices]
    assert finishes[-1] == "tool_calls"
    assert len(sent_chats(openai_upstream)) == 2
    assert all("tools" not in body for body in sent_chats(openai_upstream))
    # Without tools the lane still serves the same model as before.
    plain = await client.chat.completions.create(model="plain/gpt-fake-mini", messages=ASK)
    assert plain.choices[0].message.content == TAGGED  # no tools offered: text is text


async def test_tool_choice_none_parses_nothing(client, ollama):
    ollama.reply_text = TAGGED
    answer = await client.chat.completions.create(model=MODEL, messages=ASK, tools=[WEATHER], tool_choice="none")
    assert answer.choices[0].message.content == TAGGED and not answer.choices[0].message.tool_calls
    (body,) = sent_chats(ollama)
    assert "tools" not in body and "# Tools" not in json.dumps(body["messages"])
