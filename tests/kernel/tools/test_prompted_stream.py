"""The streamed side of the prompt-based fallback: text out early, calls parsed at the end."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from app.kernel.canonical import ChatChunk, ChunkChoice, Delta, Usage
from app.kernel.tools.prompted import parse
from app.kernel.tools.prompted_stream import PromptedText, calls_in_stream

KNOWN = {"search", "get_weather"}
ANSWERS = [
    "Plain text with no calls at all, over a few words.",
    'Sure.\n<tool_calls>\n[{"name": "search", "arguments": {"q": "Lisbon"}}]\n</tool_calls>',
    "```json\n{'name': 'get_weather', 'arguments': {'city': 'Oslo',},}\n```",
    'Checking. {"name": "search", "arguments": {"q": "notes"}} and {"name": "get_weather", "arguments": {"city": "Rome"}}',
    'The JSON you asked for: {"answer": 42} and some more text after it.',
    "Code:\n```python\nd = {'a': 1}\nprint(d)\n```\nDone.",
    '<tool_call>{"name": "search", "arguments": {"q": "cut off',
    "Use {braces} [1] and `ticks` freely < 3.",
]


def run(pieces: list[str]) -> tuple[list[str], str, list[tuple[str, object]]]:
    text = PromptedText(KNOWN)
    out = [text.feed(p) for p in pieces]
    rest, calls = text.finish()
    return out, "".join(out) + rest, [(c.function.name, json.loads(c.function.arguments)) for c in calls]


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(ANSWERS), st.lists(st.integers(min_value=0, max_value=200), max_size=12))
def test_any_split_of_an_answer_gives_the_whole_answers_calls(answer, cuts):
    bounds = sorted({c % (len(answer) + 1) for c in cuts})
    pieces = [answer[a:b] for a, b in zip([0, *bounds], [*bounds, len(answer)], strict=True)]
    _, text, calls = run(pieces)
    whole_text, whole_calls = parse(answer, KNOWN)
    assert calls == [(c.function.name, json.loads(c.function.arguments)) for c in whole_calls]
    if calls:
        assert text.split() == whole_text.split()  # the same words around the calls
    else:
        assert text == answer  # not a call: every character goes out, unchanged


def test_plain_text_goes_out_as_it_comes_and_only_a_possible_tag_waits():
    text = PromptedText(KNOWN)
    assert text.feed("Hello ") == "Hello "
    assert text.feed("there <tool") == "there "  # `<tool` may begin a call
    assert text.feed("box> ok") == "<toolbox> ok"
    assert text.feed(" [") == " "  # may become `[{`
    assert text.feed("1] done `") == "[1] done "
    assert text.feed("x`") == "`x"  # a last backtick may begin a fence
    assert text.feed(" end") == "` end"


def test_a_fence_of_another_language_streams_and_json_that_is_no_call_is_released_when_whole():
    text = PromptedText(KNOWN)
    assert text.feed("```python\nprint(1)\n") == "```python\nprint(1)\n"
    assert text.feed('x = {"a": ') == "x = "
    assert text.feed('1} and') == '{"a": 1} and'
    assert text.finish() == ("", [])


def test_text_before_a_call_goes_out_before_the_call_is_complete():
    text = PromptedText(KNOWN)
    assert text.feed("Let me search. <tool_") == "Let me search. "
    assert text.feed('calls>[{"name": "search", "arguments": {"q": "x"}}]</tool_calls>') == ""
    rest, calls = text.finish()
    assert rest == "" and [c.function.name for c in calls] == ["search"]


def chunk(content=None, finish=None, role=None, usage=None, choices=True):
    return ChatChunk(id="c1", model="m", usage=usage,
                     choices=[ChunkChoice(delta=Delta(role=role, content=content), finish_reason=finish)] if choices else [])


async def chunks_of(*items):
    for item in items:
        yield item


async def test_a_streamed_call_becomes_one_tool_call_delta_then_the_finish_with_the_usage():
    tools = [{"type": "function", "function": {"name": "search"}}]
    source = chunks_of(chunk("", role="assistant"), chunk("On it. <tool_calls>[{\"name\": \"search\", "),
                       chunk('"arguments": {"q": "Lisbon"}}]</tool_calls>'), chunk(finish="stop"),
                       chunk(usage=Usage(prompt_tokens=3, completion_tokens=5, total_tokens=8), choices=False))
    out = [c async for c in calls_in_stream(source, tools)]
    deltas = [(c.choices[0].delta.content, c.choices[0].delta.tool_calls, c.choices[0].finish_reason)
              if c.choices else ("usage", c.usage.total_tokens) for c in out]
    assert deltas[0] == (None, None, None) and out[0].choices[0].delta.role == "assistant"
    assert deltas[1] == ("On it. ", None, None)
    (call,) = deltas[2][1]
    assert (call.index, call.function.name, json.loads(call.function.arguments)) == (0, "search", {"q": "Lisbon"})
    assert call.id and deltas[2][2] is None
    assert deltas[3] == (None, None, "tool_calls")
    assert deltas[4] == ("usage", 8)


async def test_a_stream_without_a_finish_still_gives_what_was_held():
    source = chunks_of(chunk("Hi {not json"))
    out = [c async for c in calls_in_stream(source, [])]
    assert "".join(c.choices[0].delta.content or "" for c in out) == "Hi {not json"
