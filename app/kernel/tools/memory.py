"""Memory tools: search and add to the user's HiNATA records, seen through the caller's identity.

An agent reads its own records, and other apps' shared ones or everything only if its agent
file was granted that (the scopes in its ToolContext; see personal.service.Caller).
"""

from __future__ import annotations

import hashlib
from typing import Any

from app.kernel.tools.base import Risk, Tool, ToolContext, ToolError, required_str


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
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 20:
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


_STR = {"type": "string"}


def tools() -> list[Tool]:
    return [
        Tool("memory_search", "Search the user's memory (notes and records this agent may read) for what is "
             "relevant to a question. Returns records with their id, date, text and relevance.",
             {"type": "object", "properties": {"query": _STR, "k": {"type": "integer", "minimum": 1, "maximum": 20}},
              "required": ["query"], "additionalProperties": False},
             memory_search),
        Tool("memory_add", "Remember something for later: store a short record in this agent's own memory.",
             {"type": "object", "properties": {"highlight": _STR, "note": _STR}, "required": ["highlight"],
              "additionalProperties": False},
             memory_add, risk=Risk.WRITE),
    ]
