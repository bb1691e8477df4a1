"""Chat stream batches → the Responses API's typed events (app.kernel.responses.stream)."""

from __future__ import annotations

import json

import pytest

from app.kernel.errors import UpstreamUnavailableError
from app.kernel.responses import ResponseStream, shell


def chunk(delta: dict | None = None, finish: str | None = None, usage: dict | None = None) -> bytes:
    data: dict = {"id": "c", "object": "chat.completion.chunk", "choices": []}
    if delta is not None or finish:
        data["choices"] = [{"index": 0, "delta": delta or {}, "finish_reason": finish}]
    if usage:
        data["usage"] = usage
    return b"data: " + json.dumps(data).encode() + b"\n\n"


def parse(raw: bytes) -> list[dict]:
    out = []
    for block in raw.split(b"\n\n"):
        if block:
            name, data = block.split(b"\n", 1)
            event = json.loads(data.removeprefix(b"data: "))
            assert name == b"event: " + event["type"].encode()
            out.append(event)
    return out


def run(batches: list[bytes]) -> tuple[list[dict], dict, ResponseStream]:
    stream = ResponseStream(shell("resp_1", "m", {"tools": []}, previous=None, store=True))
    raw = stream.start() + b"".join(stream.feed(b) for b in batches)
    tail, message = stream.finish()
    return parse(raw + tail + stream.completed()), message, stream


def test_text_then_a_call_nest_as_openai_sends_them():
    events, message, _ = run([
        chunk({"role": "assistant", "content": ""}) + chunk({"content": "Let me "}),
        chunk({"content": "check."}),
        chunk({"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "f", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a":'}}]})
        + chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
        chunk(finish="tool_calls") + chunk(usage={"prompt_tokens": 4, "completion_tokens": 6, "total_tokens": 10})
        + b"data: [DONE]\n\n",
    ])
    assert [e["type"] for e in events] == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.delta", "response.function_call_arguments.done",
        "response.output_item.done", "response.completed"]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    final = events[-1]["response"]
    assert final["status"] == "completed"
    assert final["output"][0]["content"][0]["text"] == "Let me check."
    assert final["output"][1]["call_id"] == "call_1" and final["output"][1]["arguments"] == '{"a":1}'
    assert final["usage"]["input_tokens"] == 4 and final["usage"]["output_tokens"] == 6
    assert events[6]["output_index"] == 0 and events[10]["output_index"] == 1
    assert message == {"role": "assistant", "content": "Let me check.", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}]}


def test_parallel_calls_each_get_their_item():
    events, message, _ = run([
        chunk({"tool_calls": [{"index": 0, "id": "a", "function": {"name": "f", "arguments": "{}"}}]}),
        chunk({"tool_calls": [{"index": 1, "id": "b", "function": {"name": "g", "arguments": "{}"}}]}),
        chunk(finish="tool_calls"),
    ])
    done = [e for e in events if e["type"] == "response.output_item.done"]
    assert [(e["output_index"], e["item"]["name"]) for e in done] == [(0, "f"), (1, "g")]
    assert [c["id"] for c in message["tool_calls"]] == ["a", "b"]


def test_the_token_limit_makes_it_incomplete():
    events, _, _ = run([chunk({"content": "cut"}), chunk(finish="length")])
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}


def test_an_empty_answer_still_has_its_message():
    events, message, _ = run([chunk(finish="stop")])
    assert events[-1]["response"]["output"][0]["content"][0]["text"] == ""
    assert message == {"role": "assistant", "content": ""}


def test_an_error_event_from_the_backend_fails_the_response():
    stream = ResponseStream(shell("resp_1", "m", {}, previous=None, store=True))
    stream.start()
    with pytest.raises(UpstreamUnavailableError, match="melted"):
        stream.feed(chunk({"content": "a"}) + b'data: {"error": {"message": "melted"}}\n\n')
    events = parse(stream.failed("upstream_unavailable", "melted"))
    assert [e["type"] for e in events] == ["error", "response.failed"]
    assert events[1]["response"]["status"] == "failed" and events[1]["response"]["error"]["message"] == "melted"
