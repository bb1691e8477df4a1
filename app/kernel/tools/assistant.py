"""The assistant popup's tools: which ones it offers, and running the calls of one streamed answer.

The popup asks the gateway like any app (so the PSP, budgets and the audit apply) and runs the
tool calls of an answer here, in the kernel, through the same ToolInvoker agents use: the
user's permission rules, approval requests for what asks, timeouts, undo copies of file
changes and an audit row per call. The popup is the user talking to their own computer, so it
reads all of the user's memory; what changes anything asks first, as for agents.

Qt-free: the popup (app/ui/popup.py) calls `AssistantTools` and shows what it reports.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson

from app.kernel.tools.base import Risk, ToolContext, ToolRegistry

# What the popup may use: the desktop, the user's memory and allowed folders, ByenatOS itself.
# Not agent_spawn/agent_wait (the popup is not an agent), not run_code (a popup answer should
# not start programs; an agent can).
ASSISTANT_TOOLS = (
    "memory_search", "memory_add",
    "file_list", "file_read", "file_search", "file_write",
    "desktop_open", "clipboard_read", "clipboard_write", "notify",
    "socket_show", "socket_swap", "models_list", "personalization_pause", "personalization_resume",
)
MAX_ROUNDS = 6  # model answers with tool calls, per question, before the popup stops asking

ApprovalWait = Callable[[bool, int | None], None]


class Invoker(Protocol):
    """app.kernel.tools.invoke.ToolInvoker, as far as the popup needs it."""

    async def invoke(self, name: str, arguments: dict[str, Any], ctx: ToolContext, *,
                     on_approval: ApprovalWait | None = None) -> Any: ...


@dataclass(slots=True)
class ToolCallAssembler:
    """The tool calls of a streamed OpenAI answer, from its chunks' `delta.tool_calls` pieces
    (the first piece of a call has its id and name, later ones add to its arguments)."""

    _calls: dict[int, dict[str, Any]] = field(default_factory=dict)

    def add(self, pieces: list[dict[str, Any]]) -> None:
        for piece in pieces:
            index = int(piece.get("index") or 0)
            call = self._calls.setdefault(index, {"id": "", "type": "function",
                                                  "function": {"name": "", "arguments": ""}})
            if piece.get("id"):
                call["id"] = piece["id"]
            fn = piece.get("function") or {}
            if fn.get("name"):
                call["function"]["name"] = fn["name"]
            if fn.get("arguments"):
                call["function"]["arguments"] += fn["arguments"]

    def calls(self) -> list[dict[str, Any]]:
        out = []
        for index in sorted(self._calls):
            call = self._calls[index]
            if not call["id"]:
                call["id"] = f"call_{index}"
            out.append(call)
        return out


@dataclass(slots=True)
class ToolRun:
    """One call the popup made: what it shows, and the tool message that goes back to the model."""

    name: str
    ok: bool
    status: str  # ok | error | denied | timeout
    message: dict[str, Any]


class AssistantTools:
    def __init__(self, registry: ToolRegistry, invoker: Callable[[], Invoker],
                 services: Callable[[], dict[str, Any]], data_dir: Path) -> None:
        self._registry = registry
        self._invoker = invoker
        self._services = services
        self.workdir = data_dir / "assistant"
        self._questions = 0

    def names(self) -> list[str]:
        known = set(self._registry.names())
        return [n for n in ASSISTANT_TOOLS if n in known]

    def schemas(self) -> list[dict[str, Any]]:
        return [self._registry.get(n).schema() for n in self.names()]

    def risk(self, name: str) -> Risk | None:
        try:
            return self._registry.get(name).risk
        except Exception:
            return None

    async def run(self, app: str, calls: list[dict[str, Any]], *,
                  on_approval: ApprovalWait | None = None) -> list[ToolRun]:
        """Run the calls of one answer: together where they only read, one at a time otherwise
        (in the answer's order), each through the invoker. Never raises for a tool's failure."""
        self._questions += 1
        self.workdir.mkdir(parents=True, exist_ok=True)
        stamp = f"assistant:{int(time.time() * 1000)}:{self._questions}"
        runs: list[ToolRun | None] = [None] * len(calls)
        group: list[int] = []

        async def flush() -> None:
            if group:
                done = await asyncio.gather(*(self._one(app, calls[i], f"{stamp}:{i}", on_approval) for i in group))
                for i, run in zip(group, done, strict=True):
                    runs[i] = run
                group.clear()

        for i, call in enumerate(calls):
            if self.risk(str((call.get("function") or {}).get("name") or "")) is Risk.READ:
                group.append(i)
                continue
            await flush()
            runs[i] = await self._one(app, call, f"{stamp}:{i}", on_approval)
        await flush()
        return [r for r in runs if r is not None]

    async def _one(self, app: str, call: dict[str, Any], key: str, on_approval: ApprovalWait | None) -> ToolRun:
        fn = call.get("function") or {}
        name = str(fn.get("name") or "")
        tool_id = call.get("id") or "call_0"
        try:
            arguments = orjson.loads(fn.get("arguments") or "{}")
        except orjson.JSONDecodeError as e:
            return _run(name, tool_id, {"error": f"invalid arguments (not JSON: {e})"}, "error")
        if not isinstance(arguments, dict):
            return _run(name, tool_id, {"error": "invalid arguments: a JSON object is needed"}, "error")
        if name not in self.names():
            return _run(name, tool_id, {"error": f"the assistant has no tool named {name!r}; tools: "
                                                 f"{', '.join(self.names())}"}, "error")
        ctx = ToolContext(app=app, scopes=frozenset({"admin"}), workdir=self.workdir, key=key,
                          services=self._services())
        outcome = await self._invoker().invoke(name, arguments, ctx, on_approval=on_approval)
        return _run(name, tool_id, outcome.value, outcome.status)


def _run(name: str, tool_id: str, value: Any, status: str) -> ToolRun:
    text = value if isinstance(value, str) else orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    return ToolRun(name, status == "ok", status, {"role": "tool", "tool_call_id": tool_id, "content": text})
