"""The OpenAI-compatible API driven by the official OpenAI SDK over loopback, against a fake upstream."""

from __future__ import annotations

import asyncio
import json

import httpx
import openai
import pytest

from app.kernel import sse
from app.kernel.errors import ConfigError
from app.kernel.gateway.server import AlreadyRunningError, GatewayServer
from tests.fakes.upstream import Fault

HI = [{"role": "user", "content": "hi"}]


async def test_models_lists_aliases_and_registry(client):
    ids = [m.id async for m in client.models.list()]
    assert ids == ["default", "fake/gpt-fake-large", "fake/gpt-fake-mini"]


async def test_one_model_by_id_with_a_slash(client):
    model = await client.models.retrieve("fake/gpt-fake-mini")
    assert model.id == "fake/gpt-fake-mini" and model.owned_by == "fake"


async def test_unknown_model_by_id_is_404(client):
    with pytest.raises(openai.NotFoundError) as e:
        await client.models.retrieve("nope/nothing")
    assert "fake/gpt-fake-mini" in e.value.body["message"]


async def test_chat_with_the_sdk(client, openai_upstream):
    r = await client.chat.completions.create(model="default", messages=HI)
    assert r.choices[0].message.content == openai_upstream.reply_text
    assert r.usage.completion_tokens > 0


async def test_chat_passes_vendor_options_through_untouched(client, openai_upstream):
    await client.chat.completions.create(
        model="fake/gpt-fake-mini", messages=HI, n=2, seed=7, extra_body={"my_vendor_option": {"x": 1}}
    )
    sent = openai_upstream.requests[-1].body
    assert sent["model"] == "gpt-fake-mini" and sent["n"] == 2 and sent["my_vendor_option"] == {"x": 1}


async def test_stream_with_the_sdk_and_usage(client, openai_upstream):
    stream = await client.chat.completions.create(
        model="fake/gpt-fake-mini",
        messages=HI,
        stream=True,
        stream_options={"include_usage": True},
    )
    text, finish, usage = "", None, None
    async for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
        usage = chunk.usage or usage
    assert text == openai_upstream.reply_text
    assert finish == "stop" and usage is not None and usage.completion_tokens > 0


async def test_stream_without_usage_asked_meters_but_hides_the_usage_chunk(
    client, kernel_with_openai, openai_upstream
):
    stream = await client.chat.completions.create(model="fake/gpt-fake-mini", messages=HI, stream=True)
    chunks = [c async for c in stream]
    assert all(c.choices for c in chunks)  # no usage-only chunk the client did not ask for
    assert openai_upstream.requests[-1].body["stream_options"] == {"include_usage": True}
    await kernel_with_openai.accounting.settle()
    rows = await kernel_with_openai.accounting.audit.recent(limit=1)
    assert rows[0]["completion_tokens"] > 0 and rows[0]["app"] == "test-app" and rows[0]["stream"]


async def test_a_stream_reaches_its_client_whole_before_the_upstream_ends_its_body(
    http, kernel_with_openai, openai_upstream
):
    # Many servers send a stream's terminating chunk after `[DONE]`, in a packet of its own:
    # the client must not wait for it, and the request is recorded as served all the same.
    openai_upstream.hold_tail = asyncio.Event()
    body = {"model": "fake/gpt-fake-mini", "messages": HI, "stream": True}
    r = await asyncio.wait_for(http.post("/v1/chat/completions", json=body), 10)
    assert r.status_code == 200 and r.text.endswith("data: [DONE]\n\n")
    assert openai_upstream.reply_text.split()[0] in r.text
    await kernel_with_openai.accounting.settle()
    rows = await kernel_with_openai.accounting.audit.recent(limit=1)
    assert rows[0]["outcome"] == "ok" and rows[0]["completion_tokens"] > 0
    assert not openai_upstream.hold_tail.is_set()  # all of this while the upstream held its tail
    openai_upstream.hold_tail.set()


async def test_a_client_that_leaves_after_done_was_served(gateway, app_token, kernel_with_openai, openai_upstream):
    openai_upstream.hold_tail = asyncio.Event()
    body = {"model": "fake/gpt-fake-mini", "messages": HI, "stream": True}
    async with httpx.AsyncClient(base_url=gateway.url, trust_env=False) as c:
        r = await asyncio.wait_for(
            c.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {app_token}"}), 10
        )
        assert r.text.endswith("data: [DONE]\n\n")
    # the connection is closed while the gateway still reads the upstream's tail
    await kernel_with_openai.accounting.settle()
    rows = await kernel_with_openai.accounting.audit.recent(limit=1)
    assert rows[0]["outcome"] == "ok"
    openai_upstream.hold_tail.set()


async def test_an_upstream_that_never_ends_its_body_does_not_hold_the_next_request(
    http, openai_upstream, monkeypatch
):
    monkeypatch.setattr(sse, "TAIL_TIMEOUT_S", 0.05)
    openai_upstream.hold_tail = asyncio.Event()  # never set: the body after [DONE] never ends
    body = {"model": "fake/gpt-fake-mini", "messages": HI, "stream": True}
    first = await asyncio.wait_for(http.post("/v1/chat/completions", json=body), 10)
    assert first.text.endswith("data: [DONE]\n\n")
    # the same keep-alive connection: answered once the tail's wait gives up, not after a read timeout
    second = await asyncio.wait_for(http.post("/v1/chat/completions", json={**body, "stream": False}), 10)
    assert second.status_code == 200
    openai_upstream.hold_tail.set()


async def test_tools_and_tool_calls(client, openai_upstream):
    openai_upstream.tool_call = {"name": "get_weather", "arguments": {"city": "Oslo"}}
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    r = await client.chat.completions.create(model="default", messages=HI, tools=tools, tool_choice="auto")
    call = r.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Oslo"}
    assert r.choices[0].finish_reason == "tool_calls"
    stream = await client.chat.completions.create(model="default", messages=HI, tools=tools, stream=True)
    args = ""
    async for chunk in stream:
        for c in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            args += c.function.arguments or ""
    assert json.loads(args) == {"city": "Oslo"}


async def test_response_format_json(client):
    r = await client.chat.completions.create(
        model="default", messages=HI, response_format={"type": "json_object"}
    )
    assert json.loads(r.choices[0].message.content)["reply"]


async def test_legacy_completions_stream_and_not(client, openai_upstream):
    r = await client.completions.create(model="fake/gpt-fake-mini", prompt="Once upon")
    assert r.choices[0].text == openai_upstream.reply_text
    stream = await client.completions.create(model="fake/gpt-fake-mini", prompt="Once upon", stream=True)
    assert "".join([c.choices[0].text async for c in stream]) == openai_upstream.reply_text
    assert openai_upstream.requests[-1].path == "/v1/completions"


async def test_embeddings_float_and_base64(client, openai_upstream, kernel_with_openai):
    kernel_with_openai.registry.add_model("fake", "text-embed-fake")
    r = await client.embeddings.create(model="fake/text-embed-fake", input=["a", "b"])  # SDK asks for base64
    assert [round(x, 5) for x in r.data[1].embedding] == [round(x, 5) for x in openai_upstream.vector("b")]
    r = await client.embeddings.create(model="fake/text-embed-fake", input="a", encoding_format="float")
    assert len(r.data[0].embedding) == openai_upstream.embedding_dim


async def test_unknown_model_is_404_listing_what_exists(client):
    with pytest.raises(openai.NotFoundError) as e:
        await client.chat.completions.create(model="nope", messages=HI)
    assert "fake/gpt-fake-mini" in e.value.body["message"]
    assert e.value.body["param"] == "model"


@pytest.mark.parametrize(
    "body,expected",
    [
        (b"{oops", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b"", "empty"),
        (b'{"model": "default"}', "messages: Field required"),
        (b'{"messages": [{"role": "user", "content": "x"}]}', "model: Field required"),
        (b'{"model": 5, "messages": [{"role": "user", "content": "x"}]}', "model: Input should be"),
        (b'{"model": "default", "messages": [{"role": "wizard", "content": "x"}]}', "messages.0.role"),
        (b'{"model": "default", "messages": [{"role": "user", "content": 5}]}', "messages.0.content"),
        (b'{"model": "default", "messages": []}', "at least one message"),
        (
            b'{"model": "default", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}',
            "temperature",
        ),
        (b'{"model": "default", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}', "stream"),
        (
            b'{"model": "default", "messages": [{"role": "user", "content": "x"}], "max_tokens": 1.5}',
            "max_tokens",
        ),
        # Found by the fuzzer: served (passed to the backend as they were).
        (
            b'{"model": "default", "messages": [{"role": "tool", "content": "x", "tool_call_id": []}]}',
            "tool_call_id",
        ),
        (
            b'{"model": "default", "messages": [{"role": "user", "content": "x", "name": 5}]}',
            "messages.0.name",
        ),
    ],
)
async def test_bad_input_is_400_in_openai_format(http, body, expected):
    r = await http.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400
    err = r.json()["error"]
    assert expected in err["message"]
    assert err["type"] == "invalid_request_error"


async def test_upstream_failure_maps_to_502(client, openai_upstream):
    openai_upstream.fault = Fault(kind="status", status=500, message="boom")
    with pytest.raises(openai.InternalServerError) as e:
        await client.chat.completions.create(model="default", messages=HI)
    assert e.value.status_code == 502
    assert "boom" in e.value.body["message"]


async def test_upstream_rate_limit_keeps_retry_after(http, openai_upstream):
    openai_upstream.fault = Fault(kind="status", status=429, headers={"Retry-After": "7"})
    r = await http.post("/v1/chat/completions", json={"model": "default", "messages": HI})
    assert r.status_code == 429
    assert r.headers["retry-after"] == "7"


async def test_error_mid_stream_reaches_the_sdk_as_an_error(client, openai_upstream):
    openai_upstream.fault = Fault(kind="disconnect", after_chunks=2)
    stream = await client.chat.completions.create(model="default", messages=HI, stream=True)
    with pytest.raises(openai.APIError, match="connection dropped"):
        async for _ in stream:
            pass


async def test_unknown_route_is_json_404(http):
    r = await http.get("/v1/nothing-here")
    assert r.status_code == 404
    assert "error" in r.json()


async def test_health_needs_no_token(anon):
    r = await anon.get("/api/health")
    assert r.status_code == 200 and r.json()["status"] == "ok" and r.json()["service"] == "byenatos"


async def test_a_second_gateway_on_the_port_says_one_is_running(gateway, kernel_with_openai):
    with pytest.raises(AlreadyRunningError, match="already running") as e:
        await GatewayServer(kernel_with_openai, host="127.0.0.1", port=gateway.port).start()
    assert e.value.url == gateway.url


async def test_port_taken_by_another_program_is_a_readable_error(openai_upstream, kernel_with_openai):
    with pytest.raises(ConfigError, match="already in use by another program"):
        await GatewayServer(kernel_with_openai, host="127.0.0.1", port=openai_upstream.port).start()


async def test_concurrent_streams_and_answers_stay_apart(client, openai_upstream):
    """Many requests at once over pooled upstream connections: every client gets its own whole answer."""
    openai_upstream.latency = 0.01

    async def streamed() -> str:
        stream = await client.chat.completions.create(model="fake/gpt-fake-mini", messages=HI, stream=True)
        return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    async def plain() -> str:
        r = await client.chat.completions.create(model="fake/gpt-fake-mini", messages=HI)
        return r.choices[0].message.content

    for _ in range(3):
        answers = await asyncio.gather(*[streamed() for _ in range(16)], *[plain() for _ in range(16)])
        assert answers == [openai_upstream.reply_text] * 32


async def test_legacy_completions_on_a_chat_only_backend_are_served_through_chat(
    client, kernel_with_openai, anthropic_upstream
):
    await kernel_with_openai.add_provider("claude", "anthropic", base_url=anthropic_upstream.url)
    kernel_with_openai.registry.add_model("claude", "claude-fake")
    anthropic_upstream.reply_text = "Claude answers."

    r = await client.completions.create(model="claude/claude-fake", prompt="Once upon", max_tokens=20)
    stream = await client.completions.create(model="claude/claude-fake", prompt="Once upon", stream=True)
    text = "".join([c.choices[0].text async for c in stream if c.choices])

    assert r.object == "text_completion" and r.choices[0].text == "Claude answers."
    assert text == "Claude answers."
    sent = anthropic_upstream.requests[-1].body
    assert sent["messages"] == [{"role": "user", "content": "Once upon"}]


async def test_legacy_completions_fail_over_like_chat(client, kernel_with_openai, openai_upstream, anthropic_upstream):
    await kernel_with_openai.add_provider("claude", "anthropic", base_url=anthropic_upstream.url)
    kernel_with_openai.registry.add_model("claude", "claude-fake")
    kernel_with_openai.socket.configure("default", fallbacks=["claude/claude-fake"])
    await kernel_with_openai.socket.swap("default", "fake/gpt-fake-mini")
    anthropic_upstream.reply_text = "Claude answers."
    await openai_upstream.refuse()  # the primary is down

    r = await client.completions.create(model="default", prompt="Once upon")

    assert r.choices[0].text == "Claude answers."  # served by the fallback, in completions shape


async def test_legacy_completions_with_several_prompts_on_a_chat_backend_is_a_400(client, kernel_with_openai,
                                                                                anthropic_upstream):
    await kernel_with_openai.add_provider("claude", "anthropic", base_url=anthropic_upstream.url)
    kernel_with_openai.registry.add_model("claude", "claude-fake")

    with pytest.raises(openai.BadRequestError) as e:
        await client.completions.create(model="claude/claude-fake", prompt=["one", "two"])
    assert "one text prompt" in e.value.body["message"]


# -- answers with nothing in them, and whole answers to streaming requests (issue 19) ------------
async def _last_row(kernel):
    await kernel.accounting.settle()
    return (await kernel.accounting.audit.recent(limit=1))[0]


@pytest.mark.parametrize("usage", [True, False], ids=["usage", "no-usage"])
async def test_a_whole_json_answer_to_a_stream_is_served_as_a_one_chunk_stream(
    client, kernel_with_openai, openai_upstream, usage
):
    openai_upstream.json_for_stream = True  # the server ignores `stream` and sends plain JSON
    options = {"stream_options": {"include_usage": True}} if usage else {}
    stream = await client.chat.completions.create(model="default", messages=HI, stream=True, **options)
    chunks = [c async for c in stream]

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == openai_upstream.reply_text
    assert [c.choices[0].finish_reason for c in chunks if c.choices] == ["stop"]
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert (chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0) is usage
    assert all(c.choices for c in chunks) is not usage  # the usage chunk only when asked for
    row = await _last_row(kernel_with_openai)
    assert row["outcome"] == "ok" and row["completion_tokens"] > 0 and row["stream"]


async def test_a_whole_json_answer_to_a_legacy_completions_stream_is_served_as_a_stream(client, openai_upstream):
    openai_upstream.json_for_stream = True
    stream = await client.completions.create(model="fake/gpt-fake-mini", prompt="Once upon", stream=True)
    text = "".join([c.choices[0].text async for c in stream if c.choices])
    assert text == openai_upstream.reply_text


async def test_an_error_object_sent_as_json_to_a_stream_is_an_error_with_its_message(client, openai_upstream):
    openai_upstream.fault = Fault(kind="body", status=200,
                                  message='{"error": {"message": "model overloaded", "type": "overloaded_error"}}')
    with pytest.raises(openai.APIStatusError) as e:
        await client.chat.completions.create(model="fake/gpt-fake-mini", messages=HI, stream=True)
    assert e.value.status_code == 502 and "model overloaded" in e.value.body["message"]


async def test_a_stream_with_no_event_is_an_error_and_never_logged_ok(client, kernel_with_openai, openai_upstream):
    openai_upstream.empty_streams = True  # 200, text/event-stream, and not one event
    with pytest.raises(openai.APIStatusError) as e:
        await client.chat.completions.create(model="default", messages=HI, stream=True)
    assert e.value.status_code == 502 and e.value.body["code"] == "empty_answer"
    asked = [r for r in openai_upstream.requests if r.path == "/v1/chat/completions"]
    assert len(asked) == 3  # retried like any 502 before giving up
    assert (await _last_row(kernel_with_openai))["outcome"] == "empty_answer"


async def test_a_stream_whose_events_hold_nothing_is_logged_empty_answer(client, kernel_with_openai, openai_upstream):
    openai_upstream.reply_text = ""  # the role chunk, a finish reason, 0 completion tokens: nothing to show
    stream = await client.chat.completions.create(model="default", messages=HI, stream=True)
    assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices]) == ""
    row = await _last_row(kernel_with_openai)
    assert row["outcome"] == "empty_answer" and row["completion_tokens"] == 0


async def test_a_whole_answer_with_nothing_in_it_is_logged_empty_answer(client, kernel_with_openai, openai_upstream):
    openai_upstream.fault = Fault(kind="body", status=200, message=json.dumps({
        "id": "x", "object": "chat.completion", "model": "m", "usage": {"prompt_tokens": 3, "completion_tokens": 0},
        "choices": [{"index": 0, "message": {"role": "assistant", "content": ""}, "finish_reason": "stop"}]}))
    r = await client.chat.completions.create(model="default", messages=HI)
    assert r.choices[0].message.content == ""  # what the server sent, passed on
    assert (await _last_row(kernel_with_openai))["outcome"] == "empty_answer"
