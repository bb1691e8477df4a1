"""The built-in tools, in one registry: `builtin_tools()` is the one place that builds it.

Each module holds one family and lists its tools in `tools()`: memory (HiNATA, scoped to the
caller), files (the working folder and the folders the user allowed), code (run in the sandbox),
desktop (open, clipboard, notifications), ByenatOS itself (socket, personalization,
models), helper agents. docs/tools.md lists them with their risk class.
"""

from __future__ import annotations

from app.kernel.tools import children, code, desktop, files, memory, system
from app.kernel.tools.base import ToolRegistry


def builtin_tools() -> ToolRegistry:
    registry = ToolRegistry()
    for family in (memory, files, code, desktop, system, children):
        for tool in family.tools():
            registry.add(tool)
    return registry
