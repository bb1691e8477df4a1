"""The agent loop on its own: deterministic orchestration over recorded steps."""

from __future__ import annotations

import asyncio

import pytest

from app.kernel.agents import loop
from app.kernel.agents.process import ProcessState, Quotas, Usage


class FakeSteps:
    def __init__(self, answers: list[dict], inbox: list[list[dict]] | None = None) -> None:
        self.answers = list(answers)
        self.inbox = list(inbox or [])
        self.models: list[list[dict]] = []
        self.tools: list[tuple[int, int, str]] = []
        self.waits: list[int] = []

    async def model(self, pid, step, messages, inbox_after):
        self.models.append([dict(m) for m in messages])
        arrived = self.inbox.pop(0) if self.inbox else []
        return {"message": self.answers.pop(0), "inbox": arrived, "usage": {"prompt_tokens": 10,
                "completion_tokens": 5}, "elapsed": 0.5, "cost": 0.01}

    async def tool(self, pid, step, index, call):
        self.tools.append((step, index, call["function"]["name"]))
        return {"content": f"result of {call['function']['name']}", "ok": True, "elapsed": 0.25}

    wakes: list = []  # what successive waits return; an exception is raised

    async def next_message(self, pid, after):
        self.waits.append(after)
        wake = self.wakes.pop(0)
        if isinstance(wake, BaseException):
            raise wake  # the test's way of killing a conversation agent
        return wake


class FakeHost:
    def __init__(self, quotas: Quotas | None = None) -> None:
        self.q = quotas or Quotas()
        self.states: list[ProcessState] = []
        self.usage: Usage | None = None
        self.suspended: str | None = None

    def quotas(self, pid):
        return self.q

    def set_state(self, pid, state, reason=""):
        self.states.append(state)

    def record_usage(self, pid, usage):
        self.usage = Usage.from_dict(usage.to_dict())

    async def suspend_self(self, pid, reason):
        self.suspended = reason
        raise asyncio.CancelledError


def calls(*names: str) -> dict:
    return {"role": "assistant", "content": None,
            "tool_calls": [{"id": f"c{i}", "type": "function", "function": {"name": n, "arguments": "{}"}}
                           for i, n in enumerate(names)]}


def final(text: str) -> dict:
    return {"role": "assistant", "content": text}


async def test_every_tool_call_of_an_answer_runs_in_order_then_the_answer_ends_the_run():
    steps, host = FakeSteps([calls("a", "b", "c"), calls("d"), final("done")]), FakeHost()
    result = await loop.run(1, instructions="I", task="T", conversation=False, steps=steps, host=host)
    assert result == "done"
    assert steps.tools == [(0, 0, "a"), (0, 1, "b"), (0, 2, "c"), (1, 0, "d")]
    sent = steps.models[1]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "tool", "tool", "tool"]
    assert [m["tool_call_id"] for m in sent[3:]] == ["c0", "c1", "c2"]
    assert (host.usage.calls, host.usage.tool_calls, host.usage.tokens) == (3, 4, 45)
    assert host.usage.wall_s == pytest.approx(3 * 0.5 + 4 * 0.25)


async def test_messages_that_arrived_join_the_conversation_before_the_answer():
    steps = FakeSteps([calls("a"), final("ok")], inbox=[[{"seq": 1, "content": "also do X"}]])
    await loop.run(1, instructions="I", task="T", conversation=False, steps=steps, host=FakeHost())
    assert steps.models[1][2] == {"role": "user", "content": "also do X"}
    assert steps.models[1][3]["role"] == "assistant"


async def test_a_tool_quota_stops_before_the_call_that_would_pass_it():
    steps, host = FakeSteps([calls("a", "b", "c")]), FakeHost(Quotas(tool_calls=2))
    with pytest.raises(asyncio.CancelledError):
        await loop.run(1, instructions="I", task="T", conversation=False, steps=steps, host=host)
    assert [t[2] for t in steps.tools] == ["a", "b"]
    assert host.suspended == "quota reached: 2 of 2 tool calls" and host.usage.tool_calls == 2


async def test_a_conversation_agent_waits_between_answers_and_skips_stale_wake_ups():
    steps = FakeSteps([final("one"), final("two"), final("three"), final("four")],
                      inbox=[[], [{"seq": 1, "content": "more"}], [{"seq": 2, "content": "more"}]])
    # a stale wake-up (seq 0: read already), a message, a timed-out wait, a message, the end
    steps.wakes = [0, 1, None, 2, asyncio.CancelledError()]
    host = FakeHost()
    with pytest.raises(asyncio.CancelledError):
        await loop.run(1, instructions="I", task="T", conversation=True, steps=steps, host=host)
    assert len(steps.models) == 3
    assert steps.waits == [0, 0, 1, 1, 2]  # each wait asks for a message after the last one read
    assert host.states.count(ProcessState.WAITING_INPUT) == 3
