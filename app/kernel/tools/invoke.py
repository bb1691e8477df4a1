"""ToolInvoker: the one way a tool is called, by agents, the assistant popup and our MCP server.

    permission (the user's rules, else the default by risk)
      → approval, when the answer is "ask" (deny when nobody answers in time)
        → the call, with the tool's timeout and an undo keeper for its file changes
          → one audit row
            → an Outcome: the result, or {"error": "..."} in words the model can act on

Nothing a tool does ends the caller: its errors, its timeout and its bugs all become an error
result. Only a cancellation (the agent suspended or killed) goes through.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.kernel.errors import ByenatosError
from app.kernel.tools.approvals import Answer, ApprovalHub
from app.kernel.tools.audit import ToolAudit, ToolAuditEntry, args_hash, canonical_json
from app.kernel.tools.base import Tool, ToolContext, ToolError, ToolRegistry
from app.kernel.tools.permissions import Decision, Permissions
from app.kernel.tools.undo import UndoStore

if TYPE_CHECKING:
    from app.kernel.events import EventBus

log = logging.getLogger(__name__)
DEFAULT_APPROVAL_TIMEOUT_S = 120.0
DONT_RETRY = "Do not retry it; continue without it or ask the user."

# Told while a call waits for the user: True with the request's id, then False when answered.
ApprovalWait = Callable[[bool, int | None], None]


@dataclass(slots=True)
class Outcome:
    value: Any  # what the tool returned, or {"error": "..."}
    status: str  # ok | error | denied | timeout (the audit's outcome)
    elapsed: float  # seconds the call ran (the wait for the user's approval not counted)
    waited: float = 0.0  # seconds spent waiting for the user

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class ToolInvoker:
    def __init__(self, registry: ToolRegistry, *, events: EventBus, data_dir: Path,
                 approval_timeout: Callable[[], float] = lambda: DEFAULT_APPROVAL_TIMEOUT_S,
                 keep_content: Callable[[], bool] = lambda: False) -> None:
        from app.kernel.store.tool_tables import TABLES

        if TABLES:  # a home migrated while the v8 slot was still empty gets its tables now
            TABLES[0]._meta.database.create_tables(TABLES, safe=True)
        self.registry = registry
        self.permissions = Permissions()
        self.approvals = ApprovalHub(events, self.permissions)
        self.audit = ToolAudit()
        self.undo = UndoStore(data_dir / "undo")
        self._approval_timeout = approval_timeout
        self._keep_content = keep_content  # the user's gateway.audit_prompts, read at each call

    async def stop(self) -> None:
        await self.audit.stop()

    async def invoke(self, name: str, arguments: dict[str, Any], ctx: ToolContext, *,
                     on_approval: ApprovalWait | None = None) -> Outcome:
        keep = self._keep_content()
        digest = args_hash(arguments)
        started = time.perf_counter()
        waited = 0.0
        tool: Tool | None = None
        try:
            tool = await self.registry.find(name)
        except (ToolError, ByenatosError) as e:
            return self._done(ctx, name, "", arguments, digest, {"error": str(e)}, "error", started, keep)
        verdict = self.permissions.decide(ctx.app, tool)
        if verdict.decision is Decision.DENY:
            text = f"The user does not allow {ctx.app} to run `{name}` ({verdict.why}). {DONT_RETRY}"
            return self._done(ctx, name, tool.source, arguments, digest, {"error": text}, "denied", started, keep)
        if verdict.decision is Decision.ASK:
            timeout = self._approval_timeout()
            asked = time.perf_counter()
            try:
                answer = await self.approvals.ask(
                    app=ctx.app, pid=ctx.pid, key=ctx.key, tool=tool, arguments=canonical_json(arguments).decode(),
                    args_sha256=digest, timeout=timeout, keep_arguments=keep,
                    on_pending=(lambda i: on_approval(True, i)) if on_approval else None)
            finally:
                waited = time.perf_counter() - asked
                if on_approval is not None:
                    on_approval(False, None)
            if answer in (Answer.DENY, Answer.TIMEOUT):
                text = (f"The user did not approve running `{name}` (no answer within {timeout:g} s). {DONT_RETRY}"
                        if answer is Answer.TIMEOUT else f"The user declined running `{name}`. {DONT_RETRY}")
                return self._done(ctx, name, tool.source, arguments, digest, {"error": text}, "denied",
                                  started, keep, waited=waited)
        call_ctx = dataclasses.replace(ctx, services={**ctx.services, "undo": self.undo.keeper(ctx.pid, ctx.key)})
        began = time.perf_counter()
        try:
            async with asyncio.timeout(tool.timeout_s) as deadline:
                value, status = await tool.call(call_ctx, arguments), "ok"
        except TimeoutError:
            if not deadline.expired():  # the tool's own TimeoutError (a client inside it timing out)
                value, status = {"error": f"{name} timed out"}, "error"
            else:
                value, status = {"error": f"`{name}` did not finish within {tool.timeout_s:g} s and was stopped"}, \
                    "timeout"
        except (ToolError, ByenatosError) as e:
            value, status = {"error": str(e)}, "error"
        except asyncio.CancelledError:
            self._done(ctx, name, tool.source, arguments, digest, {"error": "cancelled (the caller stopped)"},
                       "error", began, keep, waited=waited)
            raise
        except Exception as e:  # a bug in the tool: said to the model, logged for us, never a crash
            log.exception("tool %s failed", name)
            value, status = {"error": f"{name} failed: {type(e).__name__}: {e}"}, "error"
        return self._done(ctx, name, tool.source, arguments, digest, value, status, began, keep, waited=waited)

    def _done(self, ctx: ToolContext, name: str, source: str, arguments: dict[str, Any], digest: str, value: Any,
              status: str, started: float, keep: bool, *, waited: float = 0.0) -> Outcome:
        elapsed = time.perf_counter() - started
        detail = str(value.get("error") or "")[:1000] if status != "ok" and isinstance(value, dict) else ""
        self.audit.add(ToolAuditEntry(
            ts=time.time(), app=ctx.app, pid=ctx.pid, key=ctx.key, tool=name, source=source, args_sha256=digest,
            outcome=status, duration_ms=round(elapsed * 1000, 3), detail=detail,
            arguments=canonical_json(arguments).decode() if keep else None,
            result=canonical_json(value).decode() if keep else None))
        return Outcome(value, status, elapsed, waited)
