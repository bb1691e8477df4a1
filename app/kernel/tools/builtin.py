"""Built-in tools: the caller's memory (HiNATA, scoped to its app) and files in its working folder.

Memory is the user's HiNATA store seen through the caller's identity: an agent reads its own
records, and other apps' shared ones or everything only if its agent file was granted that.
Files are confined to the caller's working folder: a path that resolves outside it (`..`,
an absolute path, a symlink out) is refused.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path
from typing import Any

from app.kernel.tools.base import Risk, Tool, ToolContext, ToolError, ToolRegistry, required_str

MAX_READ = 200_000  # characters a file read returns
MAX_WRITE = 1_000_000


def _caller(ctx: ToolContext) -> Any:
    from app.kernel.personal.service import Caller

    return Caller(ctx.app, ctx.scopes)


def _personal(ctx: ToolContext) -> Any:
    service = ctx.services.get("personal")
    if service is None:
        raise ToolError("personal memory is not available")
    return service


async def memory_search(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    query = required_str(args, "query", max_len=2_000)
    k = args.get("k", 5)
    if not isinstance(k, int) or not 1 <= k <= 20:
        raise ToolError("argument 'k': a whole number from 1 to 20")
    found = await _personal(ctx).recall(_caller(ctx), query, k=k)
    return {"records": [
        {"id": r["id"], "timestamp": r["timestamp"], "source": r["source"], "highlight": r["highlight"],
         "note": (r.get("note") or "")[:2_000], "address": r.get("address"), "relevance": r["relevance"]}
        for r in found]}


async def memory_add(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    highlight = required_str(args, "highlight", max_len=10_000)
    note = args.get("note") or ""
    if not isinstance(note, str):
        raise ToolError("argument 'note': a string")
    # The record's id comes from the call's idempotency key: the same call replayed updates
    # nothing instead of adding the record twice.
    rid = "agent-" + hashlib.sha256(ctx.key.encode()).hexdigest()[:20]
    record = {"id": rid, "highlight": highlight, "note": note, "tag": ["agent"], "access": "private"}
    (result,) = await _personal(ctx).add(record, _caller(ctx))
    return {"id": result["id"], "status": result["status"]}


def _inside(ctx: ToolContext, relative: str) -> Path:
    root = ctx.workdir.resolve()
    path = (root / relative).resolve()
    if path != root and root not in path.parents:
        raise ToolError(f"{relative!r} is outside this agent's working folder")
    return path


async def file_list(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    folder = _inside(ctx, args.get("path") or ".")
    if not folder.is_dir():
        raise ToolError(f"{args.get('path') or '.'!r} is not a folder")
    entries = []
    for entry in sorted(folder.iterdir())[:500]:
        entries.append({"name": entry.name, "folder": entry.is_dir(),
                        "bytes": entry.stat().st_size if entry.is_file() else None})
    return {"entries": entries}


async def file_read(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    path = _inside(ctx, required_str(args, "path", max_len=1_000))
    if not path.is_file():
        raise ToolError(f"no file {args['path']!r} in the working folder")
    text = await asyncio.to_thread(path.read_text, encoding="utf-8", errors="replace")
    return {"path": args["path"], "content": text[:MAX_READ], "truncated": len(text) > MAX_READ}


async def file_write(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    path = _inside(ctx, required_str(args, "path", max_len=1_000))
    content = args.get("content")
    if not isinstance(content, str) or len(content) > MAX_WRITE:
        raise ToolError(f"argument 'content': a string of at most {MAX_WRITE} characters")
    mode = args.get("mode", "overwrite")
    if mode not in ("overwrite", "append"):
        raise ToolError("argument 'mode': overwrite or append")

    def write() -> int:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = content.encode()
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if mode == "append" else os.O_TRUNC)
        fd = os.open(path, flags, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        return len(data)

    written = await asyncio.to_thread(write)
    return {"path": args["path"], "bytes": written}


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


def builtin_tools() -> ToolRegistry:
    registry = ToolRegistry()
    registry.add(Tool(
        "memory_search", "Search the user's memory (notes and records this agent may read) for what is relevant "
        "to a question. Returns records with their id, date, text and relevance.",
        {"type": "object", "properties": {"query": _STR, "k": {"type": "integer", "minimum": 1, "maximum": 20}},
         "required": ["query"], "additionalProperties": False},
        memory_search))
    registry.add(Tool(
        "memory_add", "Remember something for later: store a short record in this agent's own memory.",
        {"type": "object", "properties": {"highlight": _STR, "note": _STR}, "required": ["highlight"],
         "additionalProperties": False},
        memory_add, risk=Risk.WRITE))
    registry.add(Tool(
        "file_list", "List the files in this agent's working folder (or a folder inside it).",
        {"type": "object", "properties": {"path": _STR}, "additionalProperties": False}, file_list))
    registry.add(Tool(
        "file_read", "Read a text file from this agent's working folder.",
        {"type": "object", "properties": {"path": _STR}, "required": ["path"], "additionalProperties": False},
        file_read))
    registry.add(Tool(
        "file_write", "Write (or append to) a text file in this agent's working folder.",
        {"type": "object", "properties": {"path": _STR, "content": _STR,
                                          "mode": {"type": "string", "enum": ["overwrite", "append"]}},
         "required": ["path", "content"], "additionalProperties": False},
        file_write, risk=Risk.WRITE))
    registry.add(Tool(
        "agent_spawn", "Start a helper agent (a shipped one, by name) on a sub-task; returns its pid. "
        "How many may run at once is bounded by this agent's file.",
        {"type": "object", "properties": {"agent": _STR, "task": _STR}, "required": ["agent", "task"],
         "additionalProperties": False},
        agent_spawn, risk=Risk.WRITE))
    registry.add(Tool(
        "agent_wait", "Wait for a helper agent this agent started to end; returns its state and answer.",
        {"type": "object", "properties": {"pid": {"type": "integer"}}, "required": ["pid"],
         "additionalProperties": False},
        agent_wait))
    return registry
