"""The agent's loop: ask the model, run every tool call it asked for, repeat until it answers.

This is the orchestration of a durable run, so it must be deterministic: everything that
varies (the model's answer, a tool's result, the user's next message, the time it took)
comes back from a *step*, which the durable engine records once and replays after a restart.
The loop's own state (the conversation, the usage, the last message read) is rebuilt from
those recorded results, so a resumed run goes on from the step where it stopped.

Side effects that need no replay (the process state shown to the user, the log) are the
host's; `Steps` and `Host` are protocols, so the loop can be driven without the engine in tests.

The tool calls of one answer all run. Calls of tools that only read run concurrently; a call
of a tool that writes (or whose risk is not known) waits for every call before it and holds
back every call after it, so the answer's order is kept wherever it could matter. Results
join the conversation in the answer's order either way. Concurrency does not break replay:
each call's step is *started* in the answer's order, and the engine numbers a step when it is
started (DBOS's `snapshot_step_ctx` runs at the call, before the first await), so a replayed
run gives every call the same step number whatever order the calls finished in.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from app.kernel.agents.process import ProcessState, Quotas, Usage


class Steps(Protocol):
    """Recorded steps (app.kernel.agents.workflows binds them to the durable engine)."""

    async def model(self, pid: int, step: int, messages: list[dict[str, Any]], inbox_after: int) -> dict[str, Any]:
        """One LLM call. Reads the messages sent to the agent after `inbox_after` first and
        puts them at the end of the conversation. Returns {"message": the assistant message,
        "inbox": [{"seq", "content"}…] read, "usage": {...}, "elapsed": s, "model": id}."""
        ...

    def tool(self, pid: int, step: int, index: int, call: dict[str, Any]) -> Awaitable[dict[str, Any]]:
        """One tool call of the model's answer: {"content": text for the model, "ok": bool, "elapsed": s}.
        (An `async def` does; the engine's binding starts the step at the call itself.)"""
        ...

    # Optional: async def tool_risk(self, pid: int, name: str) -> str | None — the tool's
    # `Risk` value ("read", "write"…), None when unknown. Not recorded: it only decides which
    # calls may run together. Without it every call runs one after another.

    async def next_message(self, pid: int, after: int) -> int | None:
        """Wait (durably, for a while) for a message with a sequence number above `after`; its
        number, or None when the wait timed out."""
        ...


class Host(Protocol):
    """What the loop tells the outside world (not replayed: state, usage, the final answer)."""

    def quotas(self, pid: int) -> Quotas: ...
    def set_state(self, pid: int, state: ProcessState, reason: str = "") -> None: ...
    def record_usage(self, pid: int, usage: Usage) -> None: ...
    async def suspend_self(self, pid: int, reason: str) -> None:
        """Suspend the agent and end this execution of its run (raises a cancellation)."""
        ...


@dataclass(slots=True)
class Conversation:
    """The loop's state, rebuilt deterministically on replay."""

    messages: list[dict[str, Any]]
    usage: Usage = field(default_factory=Usage)
    inbox_seq: int = 0
    step: int = 0


def opening(instructions: str, task: str) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [{"role": "system", "content": instructions}]
    if task:
        messages.append({"role": "user", "content": task})
    return messages


def tool_result_text(result: Any) -> str:
    """A tool's result as the text the model reads."""
    if isinstance(result, str):
        return result
    return orjson.dumps(result, option=orjson.OPT_NON_STR_KEYS).decode()


async def run(pid: int, *, instructions: str, task: str, conversation: bool, steps: Steps, host: Host) -> str:
    """Run the agent to its final answer (a conversation agent: until it is killed)."""
    state = Conversation(opening(instructions, task))
    usage = state.usage
    while True:
        await _within_quotas(pid, usage, steps, host, before="model")
        out = await steps.model(pid, state.step, state.messages, state.inbox_seq)
        for message in out.get("inbox", ()):
            state.messages.append({"role": "user", "content": message["content"]})
            state.inbox_seq = max(state.inbox_seq, int(message["seq"]))
        answer = out["message"]
        state.messages.append(answer)
        spent = out.get("usage") or {}
        usage.prompt_tokens += int(spent.get("prompt_tokens") or 0)
        usage.completion_tokens += int(spent.get("completion_tokens") or 0)
        usage.cost += float(out.get("cost") or 0.0)
        usage.calls += 1
        usage.steps += 1
        usage.wall_s += float(out.get("elapsed") or 0.0)
        calls = answer.get("tool_calls") or []
        if calls:
            await _run_calls(pid, state, calls, steps, host)
        host.record_usage(pid, usage)
        state.step += 1
        if calls:
            continue
        if not conversation:
            return str(answer.get("content") or "")
        host.set_state(pid, ProcessState.WAITING_INPUT)
        while True:  # a stale wake-up (a message already read) is waited past
            seq = await steps.next_message(pid, state.inbox_seq)
            if seq is not None and seq > state.inbox_seq:
                break
        host.set_state(pid, ProcessState.RUNNING)


READ = "read"  # app.kernel.tools.base.Risk.READ (the loop does not import the tools)


async def _run_calls(pid: int, state: Conversation, calls: list[dict[str, Any]], steps: Steps, host: Host) -> None:
    """Every tool call of one answer (see the module docstring): runs of read-only calls
    together, the others one at a time, results appended in the answer's order."""
    risk_of = getattr(steps, "tool_risk", None)
    reads: list[bool] = []
    for call in calls:
        name = str((call.get("function") or {}).get("name") or "")
        risk = await risk_of(pid, name) if risk_of is not None and name else None
        reads.append(risk == READ)
    usage = state.usage
    index = 0
    while index < len(calls):
        end = index + 1
        if reads[index]:
            while end < len(calls) and reads[end]:
                end += 1
        started: list[Awaitable[dict[str, Any]]] = []
        reason: str | None = None
        for i in range(index, end):  # each call's step started in order (see the docstring)
            # the quota as it will stand once the calls already started here have run
            ahead = dataclasses.replace(usage, tool_calls=usage.tool_calls + len(started))
            reason = host.quotas(pid).exceeded(ahead, before="tool")
            if reason is not None:
                break
            started.append(steps.tool(pid, state.step, i, calls[i]))
        results = await _together(started)
        for offset, result in enumerate(results):
            i = index + offset
            usage.tool_calls += 1
            state.messages.append({"role": "tool", "tool_call_id": calls[i].get("id") or f"call_{i}",
                                   "content": result["content"]})
        # calls that ran together took as long as the slowest of them
        usage.wall_s += max((float(r.get("elapsed") or 0.0) for r in results), default=0.0)
        if reason is not None:
            await _within_quotas(pid, usage, steps, host, before="tool")
        index = end


async def _together(started: list[Awaitable[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The results of calls running concurrently, in their order. When one fails (or this is
    cancelled: a suspend, a kill), the others are cancelled and waited for before the failure
    goes on, so no call outlives the execution that started it."""
    if len(started) <= 1:
        return [await s for s in started]
    tasks = [asyncio.ensure_future(s) for s in started]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    except asyncio.CancelledError:
        await _cancel(tasks)
        raise
    failed = [t for t in tasks if t.done() and (t.cancelled() or t.exception() is not None)]
    if failed:
        await _cancel(tasks)
        failed[0].result()  # raises the first failure (a cancellation raises CancelledError)
    return [t.result() for t in tasks]


async def _cancel(tasks: list[asyncio.Future[Any]]) -> None:
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _within_quotas(pid: int, usage: Usage, steps: Steps, host: Host, *, before: str) -> None:
    """Suspend the run while a quota is reached; once the user raises it and resumes, the run
    is replayed up to here (the recorded steps are not made again) and goes on."""
    reason = host.quotas(pid).exceeded(usage, before=before)
    if reason is not None:
        host.record_usage(pid, usage)
        await host.suspend_self(pid, reason)  # raises: this execution of the run ends here
        raise RuntimeError("a suspended run went on")
