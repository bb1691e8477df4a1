"""The tool interface: a name, a description, a JSON schema for its arguments, and a call.

A tool is called with a `ToolContext` that says who is calling (the app identity whose memory
and files it may touch), where its working folder is, and the idempotency key of this call:
a tool with side effects that is run again under the same key (a run replayed after a crash)
should not do them twice.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]  # JSON schema of the arguments object
    call: Call
    side_effects: bool = False  # writes something (files, memory): audited, asks in later permission rules

    def schema(self) -> dict[str, Any]:
        """The OpenAI `tools` entry for this tool."""
        return {"type": "function",
                "function": {"name": self.name, "description": self.description, "parameters": self.parameters}}


class ToolRegistry:
    def __init__(self) -> None:
        self._tools: dict[str, Tool] = {}

    def add(self, tool: Tool) -> None:
        if tool.name in self._tools:
            raise ValueError(f"a tool named {tool.name!r} is registered already")
        self._tools[tool.name] = tool

    def get(self, name: str) -> Tool:
        try:
            return self._tools[name]
        except KeyError:
            raise NotFoundError(f"no tool named {name!r}; tools: {', '.join(sorted(self._tools))}") from None

    def names(self) -> list[str]:
        return sorted(self._tools)

    def check(self, names: list[str]) -> None:
        """Refuse an agent file naming a tool that does not exist."""
        unknown = [n for n in names if n not in self._tools]
        if unknown:
            raise BadRequestError(
                f"unknown tool {unknown[0]!r}; tools: {', '.join(sorted(self._tools))}")

    def schemas(self, names: list[str]) -> list[dict[str, Any]]:
        return [self.get(n).schema() for n in names]


def required_str(args: dict[str, Any], name: str, *, max_len: int = 100_000) -> str:
    value = args.get(name)
    if not isinstance(value, str) or not value.strip():
        raise ToolError(f"argument {name!r}: a non-empty string")
    if len(value) > max_len:
        raise ToolError(f"argument {name!r}: at most {max_len} characters")
    return value
