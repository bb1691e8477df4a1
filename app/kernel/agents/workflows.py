"""The agent run as a DBOS workflow, and its steps.

Imported only when the first agent runs (it imports DBOS, ~0.3 s). DBOS registers decorated
functions by name when this module is imported; `engine.DurableEngine` launches it after that
and sets `HOST`, the runtime the steps call back into. The workflow is `loop.run` with these
steps bound; each step's result is checkpointed in DBOS's system database.

A step that must not be recorded (the run was suspended or killed while it ran, or the model
failed in a way worth retrying after a resume) raises `RunInterrupted`, an asyncio
CancelledError: DBOS records exceptions but not cancellations, so a resumed run makes that
step again instead of replaying its failure.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, Protocol

from dbos import DBOS

from app.kernel.agents import loop
from app.kernel.errors import ByenatosError
from app.kernel.tools.base import ToolError, ToolRegistry


class RunHost(Protocol):
    """What the steps need of the agent runtime (app.kernel.agents.runtime.AgentRuntime)."""

    def run_started(self, pid: int, task: asyncio.Task[Any] | None) -> dict[str, Any]: ...
    def run_ended(self, pid: int, result: str | None, error: BaseException | None) -> None: ...
    async def model_step(self, pid: int, step: int, messages: list[dict[str, Any]], inbox_after: int
                         ) -> dict[str, Any]: ...
    async def tool_step(self, pid: int, step: int, index: int, call: dict[str, Any]) -> dict[str, Any]: ...
    def loop_host(self) -> loop.Host: ...

    @property
    def tools(self) -> ToolRegistry: ...


HOST: RunHost | None = None
INBOX_TOPIC = "inbox"
WAIT_S = 3600.0  # a conversation agent waits for its next message this long per recorded wait


class RunInterrupted(asyncio.CancelledError):
    """Stop this step without recording it (see the module docstring)."""


def _host() -> RunHost:
    if HOST is None:
        raise RuntimeError("the agent engine is not running")
    return HOST


@DBOS.step(name="byenatos.agent.model")
async def model_step(pid: int, step: int, messages: list[dict[str, Any]], inbox_after: int) -> dict[str, Any]:
    return await _host().model_step(pid, step, messages, inbox_after)


@DBOS.step(name="byenatos.agent.tool")
async def tool_step(pid: int, step: int, index: int, call: dict[str, Any]) -> dict[str, Any]:
    return await _host().tool_step(pid, step, index, call)


class _DbosSteps:
    async def model(self, pid: int, step: int, messages: list[dict[str, Any]], inbox_after: int) -> dict[str, Any]:
        return await model_step(pid, step, messages, inbox_after)

    def tool(self, pid: int, step: int, index: int, call: dict[str, Any]) -> Awaitable[dict[str, Any]]:
        # Not `async def`: calling the DBOS step numbers it now, in the answer's order, even
        # when the loop runs several calls concurrently (see app.kernel.agents.loop).
        return tool_step(pid, step, index, call)

    async def tool_risk(self, pid: int, name: str) -> str | None:
        """The tool's risk (read, write…), so read-only calls may run together; None (run one
        at a time) when the tool cannot be found now (tool_step then says why)."""
        try:
            return (await _host().tools.find(name)).risk.value
        except (ByenatosError, ToolError):
            return None

    async def next_message(self, pid: int, after: int) -> int | None:
        seq = await DBOS.recv_async(INBOX_TOPIC, timeout_seconds=WAIT_S)
        return None if seq is None else int(seq)


@DBOS.workflow(name="byenatos.agent.run")
async def agent_run(pid: int) -> str | None:
    host = _host()
    spec = host.run_started(pid, asyncio.current_task())
    result: str | None = None
    try:
        result = await loop.run(pid, instructions=spec["instructions"], task=spec["task"],
                                conversation=bool(spec.get("conversation")), steps=_DbosSteps(),
                                host=host.loop_host())
    except BaseException as e:
        host.run_ended(pid, None, e)
        raise
    host.run_ended(pid, result, None)
    return result


def workflow_id(pid: int) -> str:
    return f"agent-{pid}"
