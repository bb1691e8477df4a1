"""The tool interface: a name, a description, a JSON schema for its arguments, and a call.

A tool is called with a `ToolContext` that says who is calling (the app identity whose memory
and files it may touch), where its working folder is, and the idempotency key of this call:
a tool with side effects that is run again under the same key (a run replayed after a crash)
should not do them twice.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from app.kernel.errors import BadRequestError, NotFoundError


class ToolError(Exception):
    """A tool could not do what was asked; the message goes back to the model as the result."""


@dataclass(frozen=True, slots=True)
class ToolContext:
    app: str  # the caller's app identity (an agent's own, for kernel-run agents)
    scopes: frozenset[str]  # what it may read of the user's memory (see personal.service.Caller)
    workdir: Path  # the only folder file tools may touch
    key: str  # idempotency key of this call ("<pid>:<step>:<index>")
    pid: int | None = None
    services: dict[str, Any] = field(default_factory=dict)  # "personal": PersonalService, …


Call = Callable[[ToolContext, dict[str, Any]], Awaitable[Any]]


class Risk(StrEnum):
    """What a tool can do to the user's machine; the default permission follows it (reading is
    allowed, the rest asks the user first; see app.kernel.tools.permissions)."""

    READ = "read"  # reads the caller's own memory or files, or shows something
    WRITE = "write"  # changes files, memory or settings (writes keep an undo copy)
    CODE = "code"  # runs code (in the sandbox)
    NETWORK = "network"  # reaches the network or another program (every MCP tool until decided)


@dataclass(frozen=True, slots=True)
class Tool:
    name: str  # ^[A-Za-z0-9_-]{1,64}$ (what OpenAI and Anthropic accept as a function name)
    description: str
    parameters: dict[str, Any]  # JSON schema of the arguments object
    call: Call
    risk: Risk = Risk.READ
    source: str = "builtin"  # "builtin", or "mcp:<server>"
    timeout_s: float = 60.0  # a call that takes longer ends as a tool error

    @property
    def side_effects(self) -> bool:
        return self.risk is not Risk.READ

    def schema(self) -> dict[str, Any]:
        """The OpenAI `tools` entry for this tool."""
        return {"type": "function",
                "function": {"name": self.name, "description": self.description, "parameters": self.parameters}}


class UndoKeeper(Protocol):
    """Keeps what a file was before a tool changes it (`ctx.services["undo"]`): file tools call
    `keep` before every write and delete, so the change can be rolled back."""

    async def keep(self, path: Path) -> None:
        """Copy the file's present content, or record that it does not exist yet."""
        ...


class ToolSource(Protocol):
    """Tools that come and go at run time: one MCP server's (app.kernel.mcp). Its tools are
    named `<prefix><tool>`; an agent file names one of them, or all of them as the bare prefix
    without its last `__` (`mcp__time` for every tool of the server `time`)."""

    prefix: str  # "mcp__time__"

    def known(self) -> bool:
        """Whether the source is configured (its tools may be named before it has started)."""
        ...

    async def tools(self) -> list[Tool]:
        """Its tools now (starting it if it must; cached). Raises ToolError when it cannot."""
        ...


class ToolRegistry:
    def __init__(self) -> None:
        self._tools: dict[str, Tool] = {}
        self._sources: dict[str, ToolSource] = {}

    def add(self, tool: Tool) -> None:
        if tool.name in self._tools:
            raise ValueError(f"a tool named {tool.name!r} is registered already")
        self._tools[tool.name] = tool

    def add_source(self, source: ToolSource) -> None:
        self._sources[source.prefix] = source

    def remove_source(self, prefix: str) -> None:
        self._sources.pop(prefix, None)

    def _source_of(self, name: str) -> ToolSource | None:
        for prefix, source in self._sources.items():
            if name.startswith(prefix) or name == prefix.removesuffix("__"):
                return source
        return None

    def get(self, name: str) -> Tool:
        """A built-in tool by name (`find` also finds a source's)."""
        try:
            return self._tools[name]
        except KeyError:
            raise NotFoundError(f"no tool named {name!r}; tools: {', '.join(self.names())}") from None

    async def find(self, name: str) -> Tool:
        """A tool by name, built-in or a source's (which may start the source)."""
        if name in self._tools:
            return self._tools[name]
        source = self._source_of(name)
        if source is not None:
            for tool in await source.tools():
                if tool.name == name:
                    return tool
        raise NotFoundError(f"no tool named {name!r}; tools: {', '.join(self.names())}")

    def names(self) -> list[str]:
        """Built-in tools, and each source as the name of all its tools."""
        return sorted([*self._tools, *(p.removesuffix("__") for p in self._sources)])

    def check(self, names: list[str]) -> None:
        """Refuse an agent file naming a tool that does not exist (a source's tools are checked
        when it starts: only the source must be configured)."""
        for name in names:
            if name in self._tools:
                continue
            source = self._source_of(name)
            if source is None or not source.known():
                raise BadRequestError(f"unknown tool {name!r}; tools: {', '.join(self.names())}")

    async def resolve(self, names: list[str]) -> list[Tool]:
        """The tools an agent file names, a source's bare prefix expanded to all its tools. A
        source that cannot start leaves its tools out (the agent runs on without them)."""
        out: list[Tool] = []
        for name in names:
            if name in self._tools:
                out.append(self._tools[name])
                continue
            source = self._source_of(name)
            if source is None:
                raise NotFoundError(f"no tool named {name!r}; tools: {', '.join(self.names())}")
            try:
                found = await source.tools()
            except ToolError:
                continue
            out.extend(t for t in found if name == source.prefix.removesuffix("__") or t.name == name)
        return out

    def schemas(self, names: list[str]) -> list[dict[str, Any]]:
        """OpenAI `tools` entries of built-in tools (`resolve` for a source's)."""
        return [self.get(n).schema() for n in names]

    @staticmethod
    def allows(names: list[str], tool: str) -> bool:
        """Whether an agent file naming `names` may call `tool` (a bare source prefix names all
        of the source's tools)."""
        return tool in names or any(tool.startswith(n + "__") for n in names if n.startswith("mcp__"))


def required_str(args: dict[str, Any], name: str, *, max_len: int = 100_000) -> str:
    value = args.get(name)
    if not isinstance(value, str) or not value.strip():
        raise ToolError(f"argument {name!r}: a non-empty string")
    if len(value) > max_len:
        raise ToolError(f"argument {name!r}: at most {max_len} characters")
    return value
