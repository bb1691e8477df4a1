"""Paged context: every view fits the window; turns stay whole; relevant old turns come back."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.kernel.agents.context import fit, pinned_count, turns
from app.kernel.canonical import ModelSpec
from app.kernel.errors import ContextWindowExceededError
from app.kernel.tokens import REPLY_PRIMING, count_message_tokens

SPEC = ModelSpec(id="local/tiny", name="tiny", provider="local", context_window=1024)


def tool_round(i: int, text: str) -> list[dict]:
    call = {"id": f"c{i}", "type": "function", "function": {"name": "memory_search",
                                                          "arguments": json.dumps({"query": f"q{i}"})}}
    return [{"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": f"c{i}", "content": text}]


def conversation(rounds: int, filler: str = "lorem ipsum dolor sit amet " * 8) -> list[dict]:
    messages = [{"role": "system", "content": "Do the task."}, {"role": "user", "content": "the task"}]
    for i in range(rounds):
        messages += tool_round(i, f"step {i}: {filler}")
    return messages


def size(messages: list[dict]) -> int:
    return sum(count_message_tokens(SPEC, m) for m in messages) + REPLY_PRIMING


def test_a_conversation_that_fits_is_sent_as_it_is():
    messages = conversation(2)
    fitted = fit(messages, SPEC, reserve_output=128)
    assert fitted.messages == messages and not fitted.paged_out


def test_hundreds_of_steps_stay_inside_the_window_with_the_task_and_the_newest_steps():
    messages = conversation(300)
    fitted = fit(messages, SPEC, reserve_output=256)
    assert size(fitted.messages) <= SPEC.context_window - 256
    assert fitted.messages[:2] == messages[:2]  # the instructions and the task are pinned
    assert fitted.messages[-2:] == messages[-2:]  # the newest step is there
    assert "paged out" in fitted.messages[2]["content"]
    assert len(fitted.paged_out) > 250


def test_a_tool_result_never_travels_without_its_call():
    fitted = fit(conversation(120), SPEC, reserve_output=200)
    body = fitted.messages
    for i, m in enumerate(body):
        if m["role"] == "tool":
            assert body[i - 1]["role"] in ("assistant", "tool")
            calls = {c["id"] for j in range(i - 1, -1, -1) if body[j]["role"] == "assistant"
                     for c in body[j].get("tool_calls") or []}
            assert m["tool_call_id"] in calls


def test_an_old_step_relevant_to_the_latest_is_paged_back_in():
    messages = conversation(1)
    messages += tool_round(1, "the vault code is 4711 and the vault is in Lisbon")
    for i in range(2, 80):
        messages += tool_round(i, f"step {i}: nothing useful here " * 6)
    messages += tool_round(99, "where is the vault code? the vault in Lisbon")
    fitted = fit(messages, SPEC, reserve_output=200)
    texts = [m.get("content") or "" for m in fitted.messages]
    assert any("4711" in t for t in texts)  # paged back in
    assert 1 in {turn for turn in fitted.paged_in}
    assert size(fitted.messages) <= SPEC.context_window - 200


def test_a_latest_step_larger_than_the_window_is_a_clear_error():
    messages = conversation(1) + tool_round(5, "x " * 5000)
    with pytest.raises(ContextWindowExceededError, match="window of 1024 tokens"):
        fit(messages, SPEC, reserve_output=100)


def test_pinned_and_turns():
    messages = conversation(2)
    assert pinned_count(messages) == 2
    assert turns(messages, 2) == [[2, 3], [4, 5]]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=60), min_size=1, max_size=60), st.integers(64, 400))
def test_any_conversation_is_fitted_inside_the_window(lengths, reserve):
    messages = [{"role": "system", "content": "Do it."}, {"role": "user", "content": "task"}]
    for i, n in enumerate(lengths):
        messages += tool_round(i, "word " * n)
    try:
        fitted = fit(messages, SPEC, reserve_output=reserve)
    except ContextWindowExceededError:
        return  # only when the newest step alone does not fit
    assert size(fitted.messages) <= SPEC.context_window - reserve
    assert fitted.messages[-2:] == messages[-2:]
