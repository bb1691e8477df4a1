"""A server's tools as ByenatOS tools: `mcp__<server>__<tool>`, risk NETWORK, source `mcp:<server>`.

Tool names are made to fit what OpenAI and Anthropic accept (^[A-Za-z0-9_-]{1,64}$): other
characters become `_`, and a name that would be too long, or that two tools would share, ends in
a short hash of the server's own name for it, so it stays the same from one start to the next.

A result is handed to the model as text: text parts as they are, structured content as JSON,
images, audio and binary resources as a line saying what they were (a model reading a tool
result gets text). It is capped at MAX_RESULT_CHARS, saying so where it was cut. A result the
server marks as an error becomes a ToolError carrying its text.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from typing import TYPE_CHECKING, Any

from app.kernel.tools.base import Risk, Tool, ToolContext, ToolError

if TYPE_CHECKING:
    from collections.abc import Callable

    from app.kernel.mcp.connection import McpConnection

MAX_NAME = 64
MAX_RESULT_CHARS = 100_000
MAX_DESCRIPTION = 4_000
_BAD = re.compile(r"[^A-Za-z0-9_-]")


def prefix(server: str) -> str:
    return f"mcp__{server}__"


def tool_name(server: str, tool: str, taken: set[str] | None = None) -> str:
    name = prefix(server) + (_BAD.sub("_", tool) or "tool")
    if len(name) > MAX_NAME or (taken is not None and name in taken):
        digest = hashlib.sha1(tool.encode()).hexdigest()[:8]
        name = f"{name[:MAX_NAME - 9]}_{digest}"
    return name


def _part_text(part: Any) -> str:
    kind = getattr(part, "type", None)
    if kind == "text":
        return part.text
    if kind in ("image", "audio"):
        size = len(part.data) * 3 // 4
        return f"[{kind} {part.mime_type}, {size:,} bytes, not shown]"
    if kind == "resource_link":
        return f"[resource {part.uri}{' (' + part.name + ')' if getattr(part, 'name', None) else ''}]"
    if kind == "resource":
        res = part.resource
        text = getattr(res, "text", None)
        if text is not None:
            return text
        return f"[binary resource {res.uri} ({getattr(res, 'mime_type', None) or 'unknown type'}), not shown]"
    return json.dumps(part.model_dump(mode="json", exclude_none=True))


def cap(text: str, limit: int = MAX_RESULT_CHARS) -> str:
    if len(text) <= limit:
        return text
    return (text[:limit] + f"\n[… {len(text) - limit:,} more characters cut: ByenatOS hands a model at most "
                           f"{limit:,} characters of one MCP result]")


def result_text(result: Any, limit: int = MAX_RESULT_CHARS) -> str:
    parts = [_part_text(p) for p in (getattr(result, "content", None) or [])]
    structured = getattr(result, "structured_content", None)
    if not parts and structured is not None:
        parts.append(json.dumps(structured, ensure_ascii=False))
    return cap("\n".join(parts), limit)


class McpToolSource:
    """One server's tools for the ToolRegistry (app.kernel.tools.base.ToolSource)."""

    def __init__(self, server: str, connection: Callable[[], McpConnection], *, known: Callable[[], bool],
                 timeout: Callable[[], float]) -> None:
        self.server = server
        self.prefix = prefix(server)
        self._connection = connection  # the server's connection now (a changed config makes a new one)
        self._known = known  # still configured and enabled
        self._timeout = timeout  # the configured seconds per call
        self._built: tuple[McpConnection, list[Any], list[Tool]] | None = None  # (from, listing, tools)

    def known(self) -> bool:
        return bool(self._known())

    async def tools(self) -> list[Tool]:
        if not self.known():
            raise ToolError(f"the MCP server {self.server!r} is not configured (or is disabled)")
        connection = self._connection()
        listed = await connection.list_tools()
        if self._built is not None and self._built[0] is connection and self._built[1] is listed:
            return self._built[2]
        tools: list[Tool] = []
        taken: set[str] = set()
        timeout = float(self._timeout())
        for t in listed:
            name = tool_name(self.server, t.name, taken)
            taken.add(name)
            schema = t.input_schema if isinstance(t.input_schema, dict) else {"type": "object"}
            tools.append(Tool(
                name=name,
                description=(t.description or t.title or t.name)[:MAX_DESCRIPTION],
                parameters=schema,
                call=functools.partial(self._call, t.name),
                risk=Risk.NETWORK,
                source=f"mcp:{self.server}",
                timeout_s=timeout,
            ))
        self._built = (connection, listed, tools)
        return tools

    async def _call(self, tool: str, ctx: ToolContext, arguments: dict[str, Any]) -> str:
        result = await self._connection().call_tool(tool, arguments, float(self._timeout()))
        text = result_text(result)
        if getattr(result, "is_error", False):
            raise ToolError(f"{tool} (MCP server {self.server!r}) failed: {text or 'no details given'}")
        return text
