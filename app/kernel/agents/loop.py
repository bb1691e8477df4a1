"""The agent's loop: ask the model, run every tool call it asked for, repeat until it answers.

This is the orchestration of a durable run, so it must be deterministic: everything that
varies (the model's answer, a tool's result, the user's next message, the time it took)
comes back from a *step*, which the durable engine records once and replays after a restart.
The loop's own state (the conversation, the usage, the last message read) is rebuilt from
those recorded results, so a resumed run goes on from the step where it stopped.

Side effects that need no replay (the process state shown to the user, the log) are the
host's; `Steps` and `Host` are protocols, so the loop can be driven without the engine in tests.
"""

from __future__ import annotations

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

    async def tool(self, pid: int, step: int, index: int, call: dict[str, Any]) -> dict[str, Any]:
        """One tool call of the model's answer: {"content": text for the model, "ok": bool, "elapsed": s}."""
        ...

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
        for index, call in enumerate(calls):  # every call of the answer, in order
            await _within_quotas(pid, usage, steps, host, before="tool")
            result = await steps.tool(pid, state.step, index, call)
            usage.tool_calls += 1
            usage.wall_s += float(result.get("elapsed") or 0.0)
            state.messages.append({"role": "tool", "tool_call_id": call.get("id") or f"call_{index}",
                                   "content": result["content"]})
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


async def _within_quotas(pid: int, usage: Usage, steps: Steps, host: Host, *, before: str) -> None:
    """Suspend the run while a quota is reached; once the user raises it and resumes, the run
    is replayed up to here (the recorded steps are not made again) and goes on."""
    reason = host.quotas(pid).exceeded(usage, before=before)
    if reason is not None:
        host.record_usage(pid, usage)
        await host.suspend_self(pid, reason)  # raises: this execution of the run ends here
        raise RuntimeError("a suspended run went on")
