"""The MCP server's tools: what each takes, the scope it needs, and the kernel API it calls.

The scope of a tool is the scope the HTTP API asks for the same thing (gateway/middleware.py
`required_scope`): searching memory is GET /api/hinata (`hinata:read`), adding to it POST
/api/hinata (`hinata:write`), the PSP preview /api/psp (`psp:read`), reading the socket GET
/api/socket (`chat`), a swap POST /api/socket/swap (`admin`), agents /api/agents (`admin`).
Record-level rules (own private records; others' shared ones only with `hinata:read`) are the
personal service's, given the same `Caller` the HTTP routes build.

A tool returns a JSON object (sent as structured content and as its text); bad arguments and
the kernel's typed errors are raised as `ToolFailed`, which the server turns into a tool
result with `isError` (the spec's place for errors a model can correct).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.kernel.kernel import Kernel
    from app.kernel.personal.service import Caller
    from app.kernel.security.apps import AppIdentity

Progress = Callable[[float, float | None, str | None], Awaitable[None]]
MAX_WAIT_S = 600.0  # agents_status waits at most this long in one call
NOTE_CHARS = 2_000  # of a record's note in a search result: a result is read by a model


class ToolFailed(Exception):
    """A call that ran and failed: bad arguments, or the kernel refused (shown to the model)."""


@dataclass
class Call:
    """One tool call: the kernel, who calls, and how to report progress (a no-op when the
    client asked for none)."""

    kernel: Kernel
    app: AppIdentity
    progress: Progress

    @property
    def caller(self) -> Caller:
        from app.kernel.personal.service import Caller

        return Caller(self.app.id, frozenset(self.app.scopes))


Run = Callable[[Call, dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class McpTool:
    name: str
    title: str
    description: str
    scope: str  # what the caller's token needs (admin has every scope)
    schema: dict[str, Any]
    run: Run
    read_only: bool = True
    destructive: bool = False
    annotations: dict[str, Any] = field(default_factory=dict)


_STR = {"type": "string"}


def _obj(props: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": list(required), "additionalProperties": False}


# -- memory ---------------------------------------------------------------------------------------
async def memory_search(call: Call, args: dict[str, Any]) -> dict[str, Any]:
    found = await call.kernel.personal.recall(call.caller, args["query"], k=args.get("k", 8))
    return {"records": [
        {"id": r["id"], "timestamp": r["timestamp"], "source": r["source"], "highlight": r["highlight"],
         "note": (r.get("note") or "")[:NOTE_CHARS], "address": r.get("address"), "tag": r.get("tag", []),
         "access": r.get("access"), "relevance": r["relevance"]}
        for r in found]}


async def memory_add(call: Call, args: dict[str, Any]) -> dict[str, Any]:
    record = {k: v for k, v in args.items() if v is not None}
    record.setdefault("access", "private")
    (result,) = await call.kernel.personal.add(record, call.caller)
    return dict(result)


async def psp_preview(call: Call, args: dict[str, Any]) -> dict[str, Any]:
    personal = call.kernel.personal
    window = None
    if args.get("model"):
        _, spec = call.kernel.resolve(args["model"])
        window = spec.context_window
    psp = await personal.build_psp(call.caller, args.get("query", ""), budget=args.get("budget"),
                                   context_window=window)
    data = psp.to_dict()
    data.update(app=call.app.id, injects=personal.injection(call.app.id) and not personal.paused,
                paused=personal.paused)
    return data


# -- socket ---------------------------------------------------------------------------------------
async def socket_show(call: Call, args: dict[str, Any]) -> dict[str, Any]:
    return call.kernel.socket_state()


async def socket_swap(call: Call, args: dict[str, Any]) -> dict[str, Any]:
    result = await call.kernel.socket.swap(args.get("alias") or "default", args["model"],
                                           args.get("strategy", "graceful"))
    return result.to_dict()


# -- agents ---------------------------------------------------------------------------------------
async def agents_spawn(call: Call, args: dict[str, Any]) -> dict[str, Any]:
    from app.kernel.agents.spec import builtin_agents

    shipped = builtin_agents()
    name = args["agent"]
    if name not in shipped:  # by name only: an MCP client never makes the kernel read a path
        raise ToolFailed(f"agent: no shipped agent named {name!r}; shipped agents: {', '.join(sorted(shipped))}")
    proc = await call.kernel.agents.spawn(shipped[name], args.get("task", ""), quotas=args.get("quotas"),
                                          priority=args.get("priority"))
    return proc.to_dict()


async def agents_status(call: Call, args: dict[str, Any]) -> dict[str, Any]:
    """One agent (optionally waiting for it to end, with progress per log entry), or the list."""
    runtime = call.kernel.agents
    pid = args.get("pid")
    if pid is None:
        procs = runtime.list(states=args.get("states"), limit=args.get("limit", 50))
        return {"agents": [p.to_dict() for p in procs]}
    wait_s = float(args.get("wait_s", 0))
    if wait_s > 0:
        await _wait_reporting(call, pid, wait_s)
    data = runtime.get(pid).to_dict()
    data["log"] = runtime.logs(pid, after=0, limit=1_000)[-args.get("log_entries", 10):] \
        if args.get("log_entries", 10) else []
    return data


async def _wait_reporting(call: Call, pid: int, wait_s: float) -> None:
    """Until the agent ends or is suspended (or `wait_s` passes), one progress notification per
    entry of its log: progress counts its steps, out of its step quota when it has one."""
    from app.kernel.agents.events import AgentLogged, AgentStateChanged
    from app.kernel.agents.process import ProcessState
    from app.kernel.agents.runtime import ENDED

    runtime = call.kernel.agents
    until = (*ENDED, ProcessState.SUSPENDED)
    sub = runtime.events.subscribe(
        accepts=lambda e: isinstance(e, AgentLogged | AgentStateChanged) and e.pid == pid)
    try:
        proc = runtime.get(pid)  # after subscribing: a change in between is in the queue
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while proc.state not in until:
            left = deadline - loop.time()
            if left <= 0:
                return
            try:
                async with asyncio.timeout(left):
                    event = await sub.queue.get()
            except TimeoutError:
                return
            proc = runtime.get(pid)
            if isinstance(event, AgentLogged):
                steps = proc.usage.steps
                await call.progress(float(steps), float(proc.quotas.steps) if proc.quotas.steps else None,
                                    f"{proc.state.value}: {event.summary}"[:300])
    finally:
        sub.close()


def _check_quotas(value: Any) -> None:
    from app.kernel.agents.process import Quotas

    for key, limit in value.items():
        if key not in Quotas.__dataclass_fields__:
            raise ToolFailed(f"quotas.{key}: not a quota; quotas are {', '.join(Quotas.__dataclass_fields__)}")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int | float)
                                  or not math.isfinite(limit) or limit <= 0):
            raise ToolFailed(f"quotas.{key}: a number greater than 0, or null for no limit")


# -- the table ------------------------------------------------------------------------------------
TOOLS: tuple[McpTool, ...] = (
    McpTool(
        "memory_search", "Search the user's memory",
        "Search the user's memory (HiNATA records: notes, highlights, pages they cared about) for what is "
        "relevant to a question. Returns the best records first, each with its id, date, source app, text "
        "and a relevance from 0 to 1. Sees only what this app's token may see.",
        "hinata:read",
        _obj({"query": {"type": "string", "minLength": 1, "maxLength": 2_000,
                        "description": "what to look for, in words"},
              "k": {"type": "integer", "minimum": 1, "maximum": 50, "default": 8,
                    "description": "how many records at most"}}, ("query",)),
        memory_search),
    McpTool(
        "memory_add", "Remember something",
        "Store a record in the user's memory: a highlight (what matters, up to 10,000 characters) with an "
        "optional note, address (URL or file path) and tags. Private to this app unless access says "
        "shared or public. Returns the record's id.",
        "hinata:write",
        _obj({"highlight": {"type": "string", "minLength": 1, "maxLength": 10_000},
              "note": {"type": "string", "maxLength": 50_000},
              "address": {"type": "string", "maxLength": 4_000},
              "tag": {"type": "array", "items": {"type": "string"}, "maxItems": 50},
              "access": {"type": "string", "enum": ["private", "shared", "public"], "default": "private"}},
             ("highlight",)),
        memory_add, read_only=False),
    McpTool(
        "psp_preview", "Preview the Personal System Prompt",
        "The Personal System Prompt ByenatOS would give a model for this app now, and why: its Markdown "
        "text, its layers (core, working, context, buffer) and each item's scores. `query` makes the "
        "context layer pick records relevant to it.",
        "psp:read",
        _obj({"query": {"type": "string", "maxLength": 2_000, "default": ""},
              "budget": {"type": "integer", "minimum": 1, "maximum": 10_000_000,
                         "description": "tokens (default: from the model's window)"},
              "model": {"type": "string", "maxLength": 500,
                        "description": "size it for this model or alias's context window"}}),
        psp_preview),
    McpTool(
        "socket_show", "Show the AI socket",
        "Which model is plugged into each alias of the AI socket (default, code, writing…), its fallback "
        "chain, routing, in-flight requests and the last swap.",
        "chat", _obj({}), socket_show),
    McpTool(
        "socket_swap", "Swap the model in the socket",
        "Plug another model into an alias of the AI socket (hot swap). Strategy: graceful (in-flight requests "
        "finish on the old model; default), immediate (they are cancelled), background (preload, switch "
        "when warm) or session_aware (open sessions stay). Needs the admin scope.",
        "admin",
        _obj({"model": {"type": "string", "minLength": 1, "maxLength": 500,
                        "description": "model id or name, e.g. openai/gpt-4o-mini"},
              "alias": {"type": "string", "minLength": 1, "maxLength": 200, "default": "default"},
              "strategy": {"type": "string", "enum": ["graceful", "immediate", "background", "session_aware"],
                           "default": "graceful"}}, ("model",)),
        socket_swap, read_only=False),
    McpTool(
        "agents_spawn", "Start an agent",
        "Start one of ByenatOS's shipped agents (e.g. assistant, research-notes) on a task. It runs durably "
        "in the kernel; follow it with agents_status. Needs the admin scope.",
        "admin",
        _obj({"agent": {"type": "string", "minLength": 1, "maxLength": 64},
              "task": {"type": "string", "maxLength": 100_000, "default": ""},
              "priority": {"type": "string", "enum": ["interactive", "normal", "background"]},
              "quotas": {"type": "object", "description": "limits: tokens, cost, steps, tool_calls, wall_s",
                         "additionalProperties": {"type": ["number", "null"]}}}, ("agent",)),
        agents_spawn, read_only=False),
    McpTool(
        "agents_status", "Agent status",
        "One agent's state, usage, result and latest log entries (give its pid), or the list of agents. "
        "With wait_s, waits up to that many seconds for the agent to end, reporting progress per step. "
        "Needs the admin scope.",
        "admin",
        _obj({"pid": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
              "wait_s": {"type": "number", "minimum": 0, "maximum": MAX_WAIT_S, "default": 0},
              "log_entries": {"type": "integer", "minimum": 0, "maximum": 1_000, "default": 10},
              "states": {"type": "array", "items": {"type": "string", "enum": [
                  "ready", "running", "waiting_model", "waiting_tool", "waiting_approval", "waiting_input",
                  "suspended", "done", "failed", "killed"]}},
              "limit": {"type": "integer", "minimum": 1, "maximum": 1_000, "default": 50}}),
        agents_status),
)
BY_NAME = {t.name: t for t in TOOLS}


def check_arguments(tool: McpTool, args: dict[str, Any]) -> None:
    """The arguments against the tool's schema: the first problem, naming the field."""
    import jsonschema

    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(tool.schema).iter_errors(args))
    if error is not None:
        where = ".".join(str(p) for p in error.absolute_path)
        if error.validator == "required":
            raise ToolFailed(f"argument {error.message.split(' ')[0]}: required")
        if error.validator == "additionalProperties":
            raise ToolFailed(f"{error.message} (arguments: {', '.join(tool.schema['properties']) or 'none'})")
        raise ToolFailed(f"argument {where or '(arguments)'}: {error.message}")
    if tool.name == "agents_spawn" and args.get("quotas"):
        _check_quotas(args["quotas"])
