"""The agent loop on its own: deterministic orchestration over recorded steps."""

from __future__ import annotations

import asyncio

import pytest

from app.kernel.agents import loop
from app.kernel.agents.process import ProcessState, Quotas, Usage
from app.kernel.agents.spec import parse_agent
from app.kernel.kernel import Kernel
from app.kernel.tools.base import Risk, Tool


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


# -- several tool calls of one answer -------------------------------------------------------------


class GatedSteps(FakeSteps):
    """Tool calls that report when they start and finish, each held until its gate opens; the
    risk of each tool is its name's first letter: r(ead) or w(rite)."""

    def __init__(self, answers: list[dict]) -> None:
        super().__init__(answers)
        self.events: list[str] = []
        self.gates: dict[str, asyncio.Event] = {}
        self.started = asyncio.Condition()

    def gate(self, name: str) -> asyncio.Event:
        return self.gates.setdefault(name, asyncio.Event())

    async def tool_risk(self, pid, name):
        return {"r": "read", "w": "write"}.get(name[0])

    async def tool(self, pid, step, index, call):
        name = call["function"]["name"]
        async with self.started:
            self.events.append(f"start {name}")
            self.started.notify_all()
        await self.gate(name).wait()
        self.events.append(f"end {name}")
        return {"content": f"result of {name}", "ok": True, "elapsed": 1.0 + index}

    async def until_started(self, *names: str) -> None:
        async with self.started:
            await asyncio.wait_for(self.started.wait_for(lambda: all(f"start {n}" in self.events for n in names)), 10)


async def test_read_calls_of_one_answer_run_together_and_results_keep_the_answers_order():
    steps, host = GatedSteps([calls("r1", "r2", "r3"), final("done")]), FakeHost()
    run = asyncio.ensure_future(loop.run(1, instructions="I", task="T", conversation=False, steps=steps, host=host))
    await steps.until_started("r1", "r2", "r3")  # all three running at once: none waits for another
    for name in ("r3", "r1", "r2"):  # they finish out of order
        steps.gate(name).set()
    assert await asyncio.wait_for(run, 10) == "done"
    tool_turns = steps.models[1][3:]
    assert [(m["tool_call_id"], m["content"]) for m in tool_turns] == [
        ("c0", "result of r1"), ("c1", "result of r2"), ("c2", "result of r3")]
    assert host.usage.tool_calls == 3
    assert host.usage.wall_s == pytest.approx(2 * 0.5 + 3.0)  # the slowest of the three, not their sum


async def test_a_write_waits_for_the_calls_before_it_and_holds_back_the_calls_after_it():
    steps = GatedSteps([calls("r1", "r2", "w3", "r4", "r5"), final("done")])
    for name in ("w3", "r4", "r5"):
        steps.gate(name).set()
    run = asyncio.ensure_future(loop.run(1, instructions="I", task="T", conversation=False, steps=steps,
                                         host=FakeHost()))
    await steps.until_started("r1", "r2")
    assert "start w3" not in steps.events
    steps.gate("r2").set()
    await asyncio.sleep(0)  # let anything that (wrongly) would start now, start
    assert "start w3" not in steps.events  # r1 still runs
    steps.gate("r1").set()
    assert await asyncio.wait_for(run, 10) == "done"
    assert steps.events.index("start w3") > max(steps.events.index("end r1"), steps.events.index("end r2"))
    assert steps.events.index("end w3") < min(steps.events.index("start r4"), steps.events.index("start r5"))


async def test_calls_of_unknown_risk_run_one_after_another():
    steps = GatedSteps([calls("x1", "x2"), final("done")])
    steps.gate("x2").set()
    run = asyncio.ensure_future(loop.run(1, instructions="I", task="T", conversation=False, steps=steps,
                                         host=FakeHost()))
    await steps.until_started("x1")
    await asyncio.sleep(0)
    assert "start x2" not in steps.events
    steps.gate("x1").set()
    assert await asyncio.wait_for(run, 10) == "done"
    assert steps.events == ["start x1", "end x1", "start x2", "end x2"]


async def test_a_tool_quota_stops_inside_a_group_of_read_calls_after_those_within_it_ran():
    steps, host = GatedSteps([calls("r1", "r2", "r3")]), FakeHost(Quotas(tool_calls=2))
    for name in ("r1", "r2", "r3"):
        steps.gate(name).set()
    with pytest.raises(asyncio.CancelledError):
        await loop.run(1, instructions="I", task="T", conversation=False, steps=steps, host=host)
    assert [e for e in steps.events if e.startswith("start")] == ["start r1", "start r2"]
    assert host.suspended == "quota reached: 2 of 2 tool calls" and host.usage.tool_calls == 2


async def test_a_call_that_fails_cancels_the_calls_running_beside_it():
    class Failing(GatedSteps):
        async def tool(self, pid, step, index, call):
            if call["function"]["name"] == "r2":
                await self.until_started("r1", "r3")
                raise RuntimeError("the engine failed")
            return await super().tool(pid, step, index, call)

    steps = Failing([calls("r1", "r2", "r3")])
    with pytest.raises(RuntimeError, match="the engine failed"):
        await asyncio.wait_for(loop.run(1, instructions="I", task="T", conversation=False, steps=steps,
                                        host=FakeHost()), 10)
    assert not any(e.startswith("end") for e in steps.events)  # r1 and r3 were cancelled, not left running


# -- the same under the durable engine: real DBOS runs, a fake model over a socket -----------------

PROBES = [("probe", {"n": n}) for n in range(3)]
PROBE_AGENT = 'name = "prober"\ninstructions = "Probe three times."\ntools = ["probe"]\n'


def probe_tool(behaviour) -> Tool:
    async def call(ctx, args):
        return await behaviour(int(args["n"]))

    return Tool(name="probe", description="Probe a thing.", call=call, risk=Risk.READ,
                parameters={"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]})


def tool_turns(body: dict) -> list[tuple[str, str]]:
    return [(m["tool_call_id"], m["content"]) for m in body["messages"] if m.get("role") == "tool"]


async def test_under_the_engine_three_read_calls_run_at_once(agent_kernel, agent_upstream):
    started: list[int] = []
    everyone = asyncio.Event()

    async def probe(n):
        started.append(n)
        if len(started) == 3:
            everyone.set()
        await asyncio.wait_for(everyone.wait(), 10)  # run one after another, the first would time out
        return f"probe {n}"

    agent_kernel.tool_registry.add(probe_tool(probe))
    agent_upstream.plan = [PROBES]
    proc = await agent_kernel.agents.spawn(parse_agent(PROBE_AGENT), "probe")
    done = await agent_kernel.agents.wait(proc.pid, timeout=30)
    assert done.state is ProcessState.DONE, done.reason
    assert done.usage.tool_calls == 3
    last = agent_upstream.chat_bodies[-1]
    assert [c for _, c in tool_turns(last)] == ["probe 0", "probe 1", "probe 2"]


async def test_a_restart_in_the_middle_of_concurrent_calls_repeats_none_that_finished(home, agent_kernel,
                                                                                      agent_upstream):
    first_ran: list[int] = []
    two_done, zero_done = asyncio.Event(), asyncio.Event()

    async def probe(n):
        first_ran.append(n)
        if n == 1:
            await asyncio.Event().wait()  # still running when the kernel stops
        if n == 0:
            await two_done.wait()  # finishes after 2: not in the answer's order
        (two_done if n == 2 else zero_done).set()
        return f"probe {n} (first run)"

    agent_kernel.tool_registry.add(probe_tool(probe))
    agent_upstream.plan = [PROBES]
    pid = (await agent_kernel.agents.spawn(parse_agent(PROBE_AGENT), "probe")).pid
    await asyncio.wait_for(zero_done.wait(), 30)
    assert sorted(first_ran) == [0, 1, 2]
    await agent_kernel.stop()  # as a crash would leave it: call 1 unfinished, 0 and 2 done

    again_ran: list[int] = []

    async def probe_again(n):
        again_ran.append(n)
        return f"probe {n} (second run)"

    again = Kernel()
    again.tool_registry.add(probe_tool(probe_again))
    await again.start()
    try:
        done = await again.agents.wait(pid, timeout=30)
        assert done.state is ProcessState.DONE, done.reason
        assert again_ran == [1]  # only the call that had not finished ran again
        assert [c for _, c in tool_turns(agent_upstream.chat_bodies[-1])] == [
            "probe 0 (first run)", "probe 1 (second run)", "probe 2 (first run)"]
        assert done.usage.tool_calls == 3
    finally:
        await again.stop()
