"""/v1/responses through the real gateway with the official openai SDK, over the fake OpenAI upstream."""

from __future__ import annotations

import json

import openai
import pytest
from pydantic import BaseModel

MODEL = "fake/gpt-fake-mini"


async def test_create_answers_with_a_message_and_usage(client, openai_upstream):
    openai_upstream.reply_text = "Hello from the socket."
    r = await client.responses.create(model=MODEL, input="Say hello.", instructions="Be brief.",
                                      max_output_tokens=32, temperature=0.2, metadata={"k": "v"})
    assert r.status == "completed"
    assert r.output_text == "Hello from the socket."
    assert r.output[0].type == "message" and r.output[0].role == "assistant"
    assert r.usage.output_tokens > 0 and r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    assert r.metadata == {"k": "v"} and r.instructions == "Be brief." and r.store is True
    sent = openai_upstream.requests[-1].body
    assert sent["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello."}]
    assert sent["max_tokens"] == 32 and sent["temperature"] == 0.2


async def test_stream_sends_the_typed_events_in_order(client, openai_upstream):
    openai_upstream.reply_text = "one two three"
    kinds, deltas = [], []
    async with client.responses.stream(model=MODEL, input="Count.") as stream:
        async for event in stream:
            kinds.append(event.type)
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
        final = await stream.get_final_response()
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]
    assert "".join(deltas) == "one two three" and final.output_text == "one two three"
    assert final.usage is not None and final.usage.output_tokens == 3
    stored = await client.responses.retrieve(final.id)  # stored before response.completed went out
    assert stored.output_text == "one two three"


async def test_previous_response_id_continues_the_chain(client, openai_upstream):
    first = await client.responses.create(model=MODEL, input="My name is Ada.", instructions="Only here.")
    second = await client.responses.create(model=MODEL, input="What is my name?", previous_response_id=first.id)
    assert second.previous_response_id == first.id
    sent = openai_upstream.requests[-1].body["messages"]
    # the chain's messages, without the first response's instructions (OpenAI does not carry them along)
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert sent[0]["content"] == "My name is Ada." and sent[2]["content"] == "What is my name?"
    async with client.responses.stream(model=MODEL, input="And again?", previous_response_id=second.id) as s:
        third = await s.get_final_response()
    await client.responses.create(model=MODEL, input="last", previous_response_id=third.id)
    assert len(openai_upstream.requests[-1].body["messages"]) == 7


async def test_function_tool_round_trip(client, openai_upstream):
    openai_upstream.tool_call = {"name": "get_weather", "arguments": {"city": "Oslo"}}
    tools = [{"type": "function", "name": "get_weather", "description": "Weather in a city",
              "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
    r = await client.responses.create(model=MODEL, input="Weather in Oslo?", tools=tools, tool_choice="auto")
    call = r.output[0]
    assert call.type == "function_call" and call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Oslo"}
    sent = openai_upstream.requests[-1].body
    assert sent["tools"][0] == {"type": "function", "function": {
        "name": "get_weather", "description": "Weather in a city", "parameters": tools[0]["parameters"]}}
    openai_upstream.tool_call = None
    openai_upstream.reply_text = "It is sunny in Oslo."
    done = await client.responses.create(
        model=MODEL, previous_response_id=r.id, tools=tools,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": '{"sky": "sunny"}'}])
    assert done.output_text == "It is sunny in Oslo."
    messages = openai_upstream.requests[-1].body["messages"]
    assert messages[-2]["tool_calls"][0]["id"] == call.call_id
    assert messages[-1] == {"role": "tool", "tool_call_id": call.call_id, "content": '{"sky": "sunny"}'}


async def test_streamed_function_call_arguments(client, openai_upstream):
    openai_upstream.tool_call = {"name": "lookup", "arguments": {"query": "a fairly long query"}}
    tools = [{"type": "function", "name": "lookup", "parameters": {"type": "object", "properties": {}}}]
    kinds, pieces = [], []
    async with client.responses.stream(model=MODEL, input="Look it up.", tools=tools) as stream:
        async for event in stream:
            kinds.append(event.type)
            if event.type == "response.function_call_arguments.delta":
                pieces.append(event.delta)
            if event.type == "response.function_call_arguments.done":
                assert json.loads(event.arguments) == {"query": "a fairly long query"}
        final = await stream.get_final_response()
    assert len(pieces) > 1 and json.loads("".join(pieces)) == {"query": "a fairly long query"}
    assert kinds.count("response.function_call_arguments.done") == 1
    assert final.output[0].type == "function_call" and final.output[0].name == "lookup"


async def test_client_managed_history_with_parallel_calls(client, openai_upstream):
    """The whole history sent back as items (store off), as agent frameworks do."""
    items = [
        {"role": "user", "content": "Weather in Oslo and Rome?"},
        {"type": "function_call", "call_id": "c1", "name": "w", "arguments": '{"city":"Oslo"}'},
        {"type": "function_call", "call_id": "c2", "name": "w", "arguments": '{"city":"Rome"}'},
        {"type": "function_call_output", "call_id": "c1", "output": "rain"},
        {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "sun"}]},
    ]
    r = await client.responses.create(model=MODEL, input=items, store=False)
    messages = openai_upstream.requests[-1].body["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "tool"]
    assert [c["id"] for c in messages[1]["tool_calls"]] == ["c1", "c2"] and messages[3]["content"] == "sun"
    with pytest.raises(openai.NotFoundError):  # store: false keeps nothing
        await client.responses.retrieve(r.id)


async def test_text_format_json_schema(client, openai_upstream):
    class Reply(BaseModel):
        reply: str

    r = await client.responses.parse(model=MODEL, input="JSON please", text_format=Reply)
    assert r.output_parsed == Reply(reply=openai_upstream.reply_text)
    fmt = openai_upstream.requests[-1].body["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["name"] == "Reply"
    assert fmt["json_schema"]["schema"]["properties"]["reply"]["type"] == "string"


async def test_images_reach_the_backend_as_image_parts(client, openai_upstream):
    url = "data:image/png;base64,iVBORw0KGgo="
    await client.responses.create(model=MODEL, input=[{"role": "user", "content": [
        {"type": "input_text", "text": "What is this?"}, {"type": "input_image", "image_url": url, "detail": "low"}]}])
    content = openai_upstream.requests[-1].body["messages"][0]["content"]
    assert content == [{"type": "text", "text": "What is this?"},
                       {"type": "image_url", "image_url": {"url": url, "detail": "low"}}]


async def test_get_delete_and_input_items_pagination(client):
    items = [{"role": "user", "content": f"part {i}"} for i in range(5)]
    r = await client.responses.create(model=MODEL, input=items)
    page = await client.responses.input_items.list(r.id, limit=2, order="asc")
    assert [i.content[0].text for i in page.data] == ["part 0", "part 1"] and page.has_more
    every = [i.content[0].text async for i in client.responses.input_items.list(r.id, limit=2, order="asc")]
    assert every == [f"part {i}" for i in range(5)]
    newest = await client.responses.input_items.list(r.id)  # default order: newest first
    assert newest.data[0].content[0].text == "part 4" and not newest.has_more
    assert (await client.responses.retrieve(r.id)).id == r.id
    await client.responses.delete(r.id)
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(r.id)
    with pytest.raises(openai.NotFoundError):
        await client.responses.delete(r.id)


async def test_another_apps_response_is_not_found(client, gateway, kernel_with_openai):
    r = await client.responses.create(model=MODEL, input="mine")
    _, token = kernel_with_openai.apps.register("other-app", ["chat"])
    other = openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key=token, max_retries=0)
    try:
        with pytest.raises(openai.NotFoundError) as e:
            await other.responses.create(model=MODEL, input="yours?", previous_response_id=r.id)
        assert e.value.body["param"] == "previous_response_id"
        assert e.value.body["code"] == "previous_response_not_found"
        for call in (other.responses.retrieve(r.id), other.responses.delete(r.id),
                     other.responses.input_items.list(r.id)):
            with pytest.raises(openai.NotFoundError):
                await call
    finally:
        await other.close()
    assert (await client.responses.retrieve(r.id)).id == r.id  # still there for its own app


@pytest.mark.parametrize(("body", "param"), [
    ({"input": [{"type": "computer_call_output", "call_id": "x"}]}, "input[0].type"),
    ({"input": [{"role": "user", "content": "hi"}, {"type": "function_call_output", "call_id": "nope",
                                                    "output": "x"}]}, "input[1].call_id"),
    ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]}, "input[0].content[0].type"),
    ({"input": "hi", "tools": [{"type": "web_search"}]}, "tools[0].type"),
    ({"input": "hi", "text": {"format": {"type": "json_schema", "schema": {}}}}, "text.format.name"),
    ({"input": "hi", "max_output_tokens": 0}, "max_output_tokens"),
    ({"input": 3}, "input"),
    ({"input": "hi", "tool_choice": "sometimes"}, "tool_choice"),
])
async def test_bad_input_is_a_400_naming_the_field(http, body, param):
    r = await http.post("/v1/responses", json={"model": MODEL, **body})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"
    assert param.split(".")[0].split("[")[0] in error["message"]


async def test_unknown_previous_response_is_a_404_in_openais_format(http):
    r = await http.post("/v1/responses", json={"model": MODEL, "input": "hi", "previous_response_id": "resp_nope"})
    assert r.status_code == 404
    assert r.json()["error"]["param"] == "previous_response_id"
    assert r.json()["error"]["type"] == "invalid_request_error"


async def test_a_stream_failing_midway_ends_with_response_failed(client, openai_upstream):
    openai_upstream.stream_error = {"message": "the GPU caught fire", "type": "server_error"}
    openai_upstream.reply_text = "a b c d e f"
    kinds = []
    stream = await client.responses.create(model=MODEL, input="go", stream=True)
    async for event in stream:
        kinds.append(event.type)
        if event.type == "response.failed":
            assert event.response.status == "failed" and "fire" in event.response.error.message
    assert kinds[0] == "response.created" and kinds[-2:] == ["error", "response.failed"]


async def test_responses_continue_across_a_swap(client, kernel_with_openai, openai_upstream):
    kernel = kernel_with_openai
    await kernel.socket.swap("default", "fake/gpt-fake-mini")
    first = await client.responses.create(model="default", input="Remember 42.")
    await kernel.socket.swap("default", "fake/gpt-fake-large")
    second = await client.responses.create(model="default", input="What number?", previous_response_id=first.id)
    sent = openai_upstream.requests[-1].body
    assert sent["model"] == "gpt-fake-large" and sent["messages"][0]["content"] == "Remember 42."
    assert second.status == "completed"


async def test_the_psp_applies_as_for_chat_and_is_not_stored_in_the_chain(gateway, kernel_with_openai,
                                                                           openai_upstream):
    kernel = kernel_with_openai
    await kernel.personal.ready()
    _, token = kernel.apps.register("codex", ["chat", "hinata:write", "psp:read"])
    headers = {"Authorization": f"Bearer {token}"}
    import httpx

    async with httpx.AsyncClient(base_url=gateway.url, trust_env=False, headers=headers) as http:
        r = await http.post("/api/hinata", json=[{"id": "p1", "highlight": "The user writes Rust on weekends"}])
        assert r.status_code == 201, r.text
        assert (await http.put("/api/psp/apps/codex", json={"inject": True})).status_code == 200
    sdk = openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key=token, max_retries=0)
    try:
        raw = await sdk.responses.with_raw_response.create(model=MODEL, input="Which language on weekends?",
                                                           instructions="Answer briefly.")
        assert raw.headers.get("X-ByenatOS-PSP-Version", "").startswith("psp-")
        sent = openai_upstream.requests[-1].body["messages"]
        assert sent[0]["content"].startswith("Answer briefly.\n\n# Personal System Prompt")
        assert "Rust on weekends" in sent[0]["content"]
        first = raw.parse()
        await sdk.responses.create(model=MODEL, input="And then?", previous_response_id=first.id)
        sent = openai_upstream.requests[-1].body["messages"]
        assert sent[0]["content"].startswith("# Personal System Prompt")  # this turn's, built afresh
        assert sum("# Personal System Prompt" in str(m["content"]) for m in sent) == 1
    finally:
        await sdk.close()


async def test_truncation_auto_fits_a_long_chain_to_a_small_window(client, kernel_with_openai, openai_upstream):
    openai_upstream.models = ["gpt-fake-mini", {"id": "tiny", "context_length": 600}]
    await kernel_with_openai.refresh_provider("fake")
    previous = None
    for i in range(6):
        r = await client.responses.create(model="fake/gpt-fake-mini", input=f"turn {i} " + "word " * 150,
                                          previous_response_id=previous)
        previous = r.id
    await client.responses.create(model="fake/tiny", input="last", previous_response_id=previous)
    assert len(openai_upstream.requests[-1].body["messages"]) == 13  # truncation disabled (the default): all
    r = await client.responses.create(model="fake/tiny", input="last", previous_response_id=previous,
                                      truncation="auto", max_output_tokens=100)
    assert r.status == "completed" and r.truncation == "auto"
    sent = openai_upstream.requests[-1].body["messages"]
    assert sent[-1]["content"] == "last" and sent[0]["role"] == "user" and len(sent) < 13
