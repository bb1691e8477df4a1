"""Responses bodies → the canonical chat body (app.kernel.responses.request)."""

from __future__ import annotations

import pytest

from app.kernel.responses import InvalidFieldError, head, translate


def test_a_string_input_with_instructions():
    turn = translate({"model": "default", "input": "hi", "instructions": "Be kind."}, [])
    assert turn.chat == {"model": "default", "messages": [{"role": "system", "content": "Be kind."},
                                                          {"role": "user", "content": "hi"}]}
    assert turn.messages == [{"role": "user", "content": "hi"}]  # instructions are not carried along a chain
    assert turn.items[0]["type"] == "message" and turn.items[0]["content"] == [{"type": "input_text", "text": "hi"}]
    assert turn.items[0]["id"].startswith("msg_")


def test_history_comes_before_the_input_and_is_not_changed_by_later_edits():
    history = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    turn = translate({"model": "m", "input": "c"}, history)
    assert [m["content"] for m in turn.chat["messages"]] == ["a", "b", "c"]
    turn.chat["messages"][0]["content"] = "changed by the PSP"
    assert history[0]["content"] == "a"


def test_developer_becomes_system_and_assistant_text_parts_join():
    turn = translate({"model": "m", "input": [
        {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "rules"}]},
        {"role": "assistant", "content": [{"type": "output_text", "text": "x", "annotations": []},
                                          {"type": "output_text", "text": "y"}]},
        {"role": "user", "content": "go"}]}, [])
    assert turn.chat["messages"] == [{"role": "system", "content": "rules"}, {"role": "assistant", "content": "xy"},
                                     {"role": "user", "content": "go"}]


def test_an_assistant_message_and_the_calls_after_it_are_one_message():
    turn = translate({"model": "m", "input": [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "checking"},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "ok"},
        {"type": "reasoning", "id": "rs_1", "summary": []}]}, [])
    assert turn.chat["messages"][1] == {"role": "assistant", "content": "checking", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}
    assert turn.chat["messages"][2] == {"role": "tool", "tool_call_id": "c1", "content": "ok"}
    assert [i["type"] for i in turn.items] == ["message", "message", "function_call", "function_call_output"]


def test_an_output_may_answer_a_call_of_the_chain():
    history = [{"role": "user", "content": "q"},
               {"role": "assistant", "content": None, "tool_calls": [
                   {"id": "c9", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}]
    turn = translate({"model": "m", "input": [{"type": "function_call_output", "call_id": "c9", "output": "r"}]},
                     history)
    assert turn.chat["messages"][-1] == {"role": "tool", "tool_call_id": "c9", "content": "r"}


def test_tools_tool_choice_format_and_limits():
    turn = translate({
        "model": "m", "input": "x", "max_output_tokens": 5, "temperature": 0, "top_p": 0.5,
        "parallel_tool_calls": False, "tool_choice": {"type": "function", "name": "f"},
        "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": True}],
        "text": {"format": {"type": "json_schema", "name": "R", "schema": {"type": "object"}, "strict": True}},
    }, [])
    chat = turn.chat
    assert chat["tools"] == [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"},
                                                                "strict": True}}]
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "f"}}
    assert chat["parallel_tool_calls"] is False and chat["max_tokens"] == 5
    assert chat["temperature"] == 0 and chat["top_p"] == 0.5
    assert chat["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "R", "schema": {"type": "object"}, "strict": True}}
    assert turn.echo["tool_choice"] == {"type": "function", "name": "f"} and turn.echo["max_output_tokens"] == 5


def test_json_object_and_text_formats():
    assert translate({"model": "m", "input": "x", "text": {"format": {"type": "json_object"}}}, []
                     ).chat["response_format"] == {"type": "json_object"}
    assert "response_format" not in translate({"model": "m", "input": "x", "text": {"format": {"type": "text"}}},
                                              []).chat


@pytest.mark.parametrize(("body", "param"), [
    ({"input": [{"type": "file_search_call"}]}, "input[0].type"),
    ({"input": [{"type": "function_call_output", "call_id": "x", "output": "o"}]}, "input[0].call_id"),
    ({"input": [{"type": "function_call_output", "output": "o"}]}, "input[0].call_id"),
    ({"input": [{"type": "function_call", "call_id": "c", "arguments": "{}"}]}, "input[0].name"),
    ({"input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]}, "input[0].content[0].file_id"),
    ({"input": [{"role": "user", "content": [{"type": "input_audio"}]}]}, "input[0].content[0].type"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type"),
    ({"input": []}, "input"),
    ({"input": "x", "instructions": 3}, "instructions"),
    ({"input": "x", "tools": [{"type": "function"}]}, "tools[0].name"),
    ({"input": "x", "temperature": "hot"}, "temperature"),
    ({"input": "x", "metadata": {"k": 1}}, "metadata.k"),
    ({"input": "x", "truncation": "sometimes"}, "truncation"),
    ({"input": "x", "text": {"format": {"type": "xml"}}}, "text.format.type"),
])
def test_refusals_name_the_field(body, param):
    with pytest.raises(InvalidFieldError) as e:
        translate({"model": "m", **body}, [])
    assert e.value.param == param and e.value.status == 400


@pytest.mark.parametrize(("body", "param"), [
    ({"previous_response_id": 5}, "previous_response_id"),
    ({"store": "yes"}, "store"),
    ({"stream": 1}, "stream"),
    ({"background": True}, "background"),
    ({"conversation": "conv_1"}, "conversation"),
])
def test_head_refusals(body, param):
    with pytest.raises(InvalidFieldError) as e:
        head(body)
    assert e.value.param == param


def test_head_defaults_store_on():
    assert head({"input": "x"}) == (None, True, False)
