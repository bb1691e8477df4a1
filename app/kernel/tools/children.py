"""Helper agents: an agent starts another (a shipped one, by name) on a sub-task and waits for it.

The agent runtime lends the two callables (`spawn_child`, `wait_child` in ToolContext.services);
anything that is not an agent has neither, and is told so.
"""

from __future__ import annotations

from typing import Any

from app.kernel.tools.base import Risk, Tool, ToolContext, ToolError, required_str


async def agent_spawn(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    spawn = ctx.services.get("spawn_child")
    if spawn is None:
        raise ToolError("only an agent can spawn agents")
    agent = required_str(args, "agent", max_len=64)
    task = args.get("task") or ""
    if not isinstance(task, str):
        raise ToolError("argument 'task': a string")
    # The call's idempotency key names the child: the same call replayed finds it again.
    return {"pid": await spawn(agent, task, ctx.key)}


async def agent_wait(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    wait = ctx.services.get("wait_child")
    if wait is None:
        raise ToolError("only an agent can wait for its child agents")
    pid = args.get("pid")
    if isinstance(pid, bool) or not isinstance(pid, int):
        raise ToolError("argument 'pid': the number agent_spawn returned")
    return dict(await wait(pid))


_STR = {"type": "string"}


def tools() -> list[Tool]:
    return [
        Tool("agent_spawn", "Start a helper agent (a shipped one, by name) on a sub-task; returns its pid. "
             "How many may run at once is bounded by this agent's file.",
             {"type": "object", "properties": {"agent": _STR, "task": _STR}, "required": ["agent", "task"],
              "additionalProperties": False},
             agent_spawn, risk=Risk.WRITE),
        Tool("agent_wait", "Wait for a helper agent this agent started to end; returns its state and answer.",
             {"type": "object", "properties": {"pid": {"type": "integer"}}, "required": ["pid"],
              "additionalProperties": False},
             agent_wait),
    ]
