from __future__ import annotations

import pytest

from app.kernel import sse
from app.kernel.canonical import ChatMessage, ChatRequest, ModelSpec
from app.kernel.errors import ModelNotFoundError, UpstreamUnavailableError
from app.kernel.events import RequestFinished
from tests.fakes.upstream import Fault


def ask(model: str = "default", text: str = "hi", **kw) -> ChatRequest:
    return ChatRequest(model=model, messages=[ChatMessage(role="user", content=text)], **kw)


async def test_refresh_lists_the_providers_models(kernel_with_openai, openai_upstream):
    ids = [m.id for m in kernel_with_openai.list_models()]
    assert ids == ["fake/gpt-fake-large", "fake/gpt-fake-mini"]


async def test_chat_goes_to_the_default_model_and_publishes_an_event(kernel_with_openai, openai_upstream):
    kernel = kernel_with_openai
    sub = kernel.events.subscribe()
    answer = await kernel.chat(ask(), app="tester")
    assert answer.message.content == openai_upstream.reply_text
    assert openai_upstream.requests[-1].body["model"] == "gpt-fake-large"  # first by id, no local models
    event = await sub.queue.get()
    assert isinstance(event, RequestFinished)
    assert (event.app, event.outcome, event.stream) == ("tester", "ok", False)
    assert event.completion_tokens > 0


async def test_stream_yields_chunks_and_records_usage(kernel_with_openai, openai_upstream):
    kernel = kernel_with_openai
    sub = kernel.events.subscribe()
    text = "".join([c.text() async for c in await kernel.stream(ask("gpt-fake-mini", stream=True))])
    assert text == openai_upstream.reply_text
    event = await sub.queue.get()
    assert event.stream and event.outcome == "ok" and event.prompt_tokens > 0


async def test_upstream_failure_is_typed_and_recorded(kernel_with_openai, openai_upstream):
    kernel = kernel_with_openai
    sub = kernel.events.subscribe()
    openai_upstream.fault = Fault(kind="status", status=503)
    with pytest.raises(UpstreamUnavailableError):
        await kernel.chat(ask())
    finished = [e for e in _drain(sub) if isinstance(e, RequestFinished)]
    assert [e.outcome for e in finished] == ["upstream_unavailable"]


def _drain(sub):
    while not sub.queue.empty():
        yield sub.queue.get_nowait()


async def test_default_model_prefers_local_then_setting_wins(kernel):
    reg = kernel.registry
    reg.add_provider("cloud", "openai", base_url="https://api.example.com/v1")
    reg.upsert_models("cloud", [ModelSpec(id="cloud/aaa", name="aaa", provider="cloud")])
    reg.add_provider("local", "llamacpp", origin="discovered")
    reg.upsert_models("local", [ModelSpec(id="local/tiny", name="tiny", provider="local", local=True)])
    assert kernel.default_model().id == "local/tiny"
    await kernel.set_default_model("aaa")
    assert kernel.default_model().id == "cloud/aaa"
    assert [a.config.model for a in kernel.socket.aliases()] == ["cloud/aaa"]


async def test_no_models_is_a_helpful_error(kernel):
    with pytest.raises(ModelNotFoundError, match="models scan"):
        await kernel.chat(ask())


async def test_raw_pass_through_keeps_upstream_json(kernel_with_openai, openai_upstream):
    body = {"model": "gpt-fake-mini", "messages": [{"role": "user", "content": "hi"}], "x_vendor_flag": 1}
    data = await kernel_with_openai.chat_raw(body)
    assert data["choices"][0]["message"]["content"] == openai_upstream.reply_text
    sent = openai_upstream.requests[-1].body
    assert sent["model"] == "gpt-fake-mini" and sent["x_vendor_flag"] == 1


async def test_raw_stream_ends_with_done(kernel_with_openai, openai_upstream):
    events = [e async for e in await kernel_with_openai.stream_raw(
        {"model": "default", "messages": [{"role": "user", "content": "hi"}]})]
    assert sse.ends_with_done(events[-1])  # a batch may hold several events (app.kernel.sse)
    assert sse.events(b"".join(events))[-1].strip() == b"data: [DONE]"
    assert b"".join(events).count(b"data: ") >= 3


def test_usage_is_read_from_the_event_that_carries_it_in_a_coalesced_batch():
    from app.kernel.streams import sse_usage

    chunk = b'data: {"choices":[{"delta":{"content":"the \\\\"usage\\\\" word"}}],"usage":null}\n\n'
    final = b'data: {"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}\r\n\r\n'
    usage = sse_usage(chunk * 3 + final + b"data: [DONE]\n\n")
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (5, 7)
    assert sse_usage(chunk * 3 + b"data: [DONE]\n\n") is None
    assert sse_usage(b'data: {"usage": {"prompt_tokens": 1, "completion_tokens": 2}}\n\n').completion_tokens == 2


@pytest.mark.parametrize("primary_refuses_option", [True, False])
async def test_metering_a_raw_stream_is_decided_by_the_backend_that_serves_it(kernel, primary_refuses_option):
    """`meter` asks for the usage chunk per attempt: after a failover, the backend that serves
    the stream decides whether `stream_options` may be sent (`stream_usage: false` says no)."""
    from app.kernel.canonical import ModelSpec
    from tests.fakes.openai_upstream import FakeOpenAI

    primary, fallback = await FakeOpenAI().start(), await FakeOpenAI().start()
    try:
        refuses = {"stream_usage": False}
        kernel.registry.add_provider("a", "openai", base_url=primary.api_base,
                                     options=refuses if primary_refuses_option else None)
        kernel.registry.add_provider("b", "openai", base_url=fallback.api_base,
                                     options=None if primary_refuses_option else refuses)
        for name in "ab":
            kernel.registry.upsert_models(name, [ModelSpec(id=f"{name}/m", name="m", provider=name)])
        await kernel.set_default_model("a/m")
        kernel.socket.configure("default", fallbacks=["b/m"])
        await primary.refuse()  # the stream fails over to b
        events = await kernel.stream_raw({"model": "default", "messages": [{"role": "user", "content": "hi"}]},
                                         meter=True)
        body = b"".join([e async for e in events])
        sent = fallback.requests[-1].body
        if primary_refuses_option:  # b accepts the option: metered
            assert sent["stream_options"] == {"include_usage": True} and b'"usage":{' in body.replace(b" ", b"")
        else:  # b refuses it: not sent, even though the primary would have accepted it
            assert "stream_options" not in sent
    finally:
        await primary.stop()
        await fallback.stop()


# -- answers with nothing in them, and whole answers to streaming requests (issue 19) ------------
def _finished(sub) -> list[RequestFinished]:
    return [e for e in _drain(sub) if isinstance(e, RequestFinished)]


async def test_stream_from_a_server_that_answers_plain_json_yields_the_answer(kernel_with_openai, openai_upstream):
    openai_upstream.json_for_stream = True  # `byenatos chat` and /v1/messages read this path
    sub = kernel_with_openai.events.subscribe()
    chunks = [c async for c in await kernel_with_openai.stream(ask(stream=True))]
    assert "".join(c.text() for c in chunks) == openai_upstream.reply_text
    assert [c.choices[0].finish_reason for c in chunks if c.choices] == ["stop"]
    [event] = _finished(sub)
    assert event.outcome == "ok" and event.completion_tokens > 0


async def test_a_stream_with_nothing_in_it_is_an_error_and_recorded_empty_answer(kernel_with_openai, openai_upstream):
    from app.kernel.errors import EmptyAnswerError

    openai_upstream.reply_text = ""  # a role chunk and a finish reason, no text, 0 tokens
    sub = kernel_with_openai.events.subscribe()
    with pytest.raises(EmptyAnswerError):
        async for _ in await kernel_with_openai.stream(ask(stream=True)):
            pass
    assert [e.outcome for e in _finished(sub)] == ["empty_answer"]


async def test_a_stream_with_no_chunk_fails_over_and_is_recorded_empty_answer(kernel_with_openai, openai_upstream):
    from app.kernel.errors import EmptyAnswerError

    openai_upstream.empty_streams = True
    sub = kernel_with_openai.events.subscribe()
    with pytest.raises(EmptyAnswerError):
        await kernel_with_openai.stream(ask(stream=True))
    assert [e.outcome for e in _finished(sub)] == ["empty_answer"]


def test_answers_with_and_without_output():
    from app.kernel.streams import answer_has_output, sse_has_output

    role = b'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null}}]}\n\n'
    text = b'data: {"choices":[{"index":0,"delta": {"content": "Hi"}}]}\n\n'
    call = b'data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"name":"f"}}]}}]}\n\n'
    usage = b'data: {"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":0}}\n\n'
    legacy = b'data: {"object":"text_completion","choices":[{"text":"Once","index":0}]}\n\n'
    assert [sse_has_output(b) for b in (role, text, call, usage, legacy, b"data: [DONE]\n\n")] == [
        False, True, True, False, True, False]
    message = {"choices": [{"message": {"role": "assistant", "content": ""}}]}
    assert not answer_has_output(message)
    assert answer_has_output({**message, "usage": {"completion_tokens": 4}})
    assert answer_has_output({"choices": [{"message": {"role": "assistant", "content": None,
                                                       "tool_calls": [{"id": "c"}]}}]})
