"""The OpenAPI description of approvals_routes.py: approvals, tool permissions, the tool-call audit, undo."""

from __future__ import annotations

from typing import Any

from app.kernel.gateway.approvals_routes import MAX_ID, MAX_LIST, MAX_PID
from app.kernel.gateway.openapi_kit import (
    INT,
    NUM,
    STR,
    json_content,
    nullable,
    obj,
    ok,
    op,
    path_param,
    query,
    ref,
)
from app.kernel.tools.approvals import STATES
from app.kernel.tools.audit import OUTCOMES
from app.kernel.tools.base import Risk
from app.kernel.tools.permissions import APP_PATTERN, SELECTOR_PATTERN

_DECISION = {"enum": ["allow", "ask", "deny"]}
_SELECTOR = {**STR, "pattern": SELECTOR_PATTERN,
             "description": "a tool's name, mcp:<server>, mcp:* (every MCP tool), risk:<read|write|code|network> or *",
             "examples": ["file_write", "mcp:time", "risk:code"]}
_APP = {**STR, "pattern": APP_PATTERN, "description": "an app id (an agent's is agent-<name>), or * for every app", "default": "*",
        "examples": ["agent-worker"]}
_CLOSED = "The request was answered already, expired, or its caller went away"

SCHEMAS: dict[str, Any] = {
    "Approval": obj(
        ("id", "key", "app", "pid", "tool", "risk", "source", "arguments", "args_sha256", "state", "created_at",
         "expires_at", "answered_at"),
        id=INT, key={**STR, "description": "the tool call's idempotency key"}, app=STR, pid=nullable(INT), tool=STR,
        risk={"enum": [r.value for r in Risk]}, source=STR,
        arguments={**nullable(STR), "description": "the call's arguments as JSON, while it is pending (kept "
                   "after the answer only with gateway.audit_prompts)"},
        args_sha256=STR, state={"enum": list(STATES)}, created_at=NUM, expires_at=NUM, answered_at=nullable(NUM),
    ),
    "ApprovalList": obj(("data",), data={"type": "array", "items": ref("Approval")}),
    "ApprovalAnswer": obj(("answer",), closed=True, answer={
        "enum": ["once", "always", "deny"],
        "description": "once: run this call; always: also allow this tool for this app from now on; deny"}),
    "ToolRule": obj(("app", "tool", "decision", "note", "updated_at"), app=STR, tool=STR, decision=_DECISION,
                    note=STR, updated_at=NUM),
    "ToolRuleSet": obj(("tool", "decision"), closed=True, tool=_SELECTOR, decision=_DECISION, app=nullable(_APP)),
    "ToolPermissions": obj(
        ("app", "rules", "tools"), app=STR, rules={"type": "array", "items": ref("ToolRule")},
        tools={"type": "array", "items": obj(
            ("tool", "risk", "source", "decision", "rule"), tool=STR, risk=STR, source=STR, decision=_DECISION,
            rule={**nullable(ref("ToolRule")), "description": "the rule it comes from; null: the default by risk"})},
    ),
    "ToolAuditRow": obj(
        ("id", "ts", "app", "pid", "key", "tool", "source", "args_sha256", "outcome", "duration_ms", "detail",
         "arguments", "result"),
        id=INT, ts=NUM, app=STR, pid=nullable(INT), key=STR, tool=STR, source=STR,
        args_sha256={**STR, "description": "SHA-256 of the arguments as canonical JSON (sorted keys)"},
        outcome={"enum": list(OUTCOMES)}, duration_ms=NUM, detail=STR,
        arguments={**nullable(STR), "description": "only with gateway.audit_prompts"},
        result={**nullable(STR), "description": "only with gateway.audit_prompts"},
    ),
    "ToolAudit": obj(("data",), data={"type": "array", "items": ref("ToolAuditRow")}),
    "UndoPlan": obj(("pid", "data"), pid=INT, data={"type": "array", "items": obj(
        ("id", "key", "path", "kind", "at"), id=INT, key=STR, path=STR,
        kind={"enum": ["file", "dir", "symlink", "missing"],
              "description": "what the path was before the change (missing: the change created it)"}, at=NUM)}),
    "UndoReport": obj(
        ("pid", "changes", "restored", "deleted", "failed", "kept", "left"),
        pid=INT, changes={**INT, "description": "changes rolled back"},
        restored={"type": "array", "items": STR, "description": "paths put back as they were"},
        deleted={"type": "array", "items": STR, "description": "paths the agent created, removed"},
        failed={"type": "array", "items": obj(("path", "error"), path=STR, error=STR)},
        kept={"type": "array", "items": STR, "description": "created folders left: something else is in them"},
        left={**INT, "description": "changes not rolled back (after a failure; a second undo goes on)"},
    ),
}

_ID = path_param("id", "the approval request's id", {"type": "integer", "minimum": 1, "maximum": MAX_ID})
_PID = path_param("pid", "the agent's process id", {"type": "integer", "minimum": 1, "maximum": MAX_PID})
_LIMIT = query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIST, "default": 100})
_PID_Q = query("pid", {"type": "integer", "minimum": 0, "maximum": MAX_PID}, "one agent's only")
_TEXT = {"type": "string", "maxLength": 200}
_APP_Q = {"type": "string", "pattern": APP_PATTERN}
_SELECTOR_Q = {"type": "string", "pattern": SELECTOR_PATTERN}

PATHS: dict[str, dict[str, Any]] = {
    "/api/approvals": {
        "get": op("The tool calls waiting for the user's approval, oldest first; ?state= for past ones (admin)",
                  ok(ref("ApprovalList")),
                  params=[query("state", {"enum": ["pending", "all", *STATES]}, "default: pending"), _LIMIT, _PID_Q],
                  errors_=(400,)),
    },
    "/api/approvals/{id}": {
        "get": op("One approval request (admin)", ok(ref("Approval")), params=[_ID], errors_=(404,)),
    },
    "/api/approvals/{id}/answer": {
        "post": op("Answer a pending approval request: once, always or deny (admin)", ok(ref("Approval")),
                   body=json_content(ref("ApprovalAnswer")), params=[_ID], errors_=(404, 409)),
    },
    "/api/tools/permissions": {
        "get": op("The permission rules, and the decision each built-in tool gets for an app (admin)",
                  ok(ref("ToolPermissions")), params=[query("app", _APP_Q, "an app id, or * (the default)")],
                  errors_=(400,)),
        "put": op("Set a rule: allow, ask or deny a tool (or a server, or a risk class) for an app or every app "
                  "(admin)", ok(ref("ToolRule")), body=json_content(ref("ToolRuleSet")), errors_=(400,)),
        "delete": op("Clear a rule (the tool goes back to the next rule, or its default) (admin)", ok(ref("ToolRule")),
                     params=[{**query("tool", _SELECTOR_Q, "the rule's selector"), "required": True},
                             query("app", _APP_Q, "the rule's app (default: *)")],
                     errors_=(400, 404)),
    },
    "/api/tools/audit": {
        "get": op("Tool calls, newest first: app, agent, tool, argument hash, outcome, duration (admin)",
                  ok(ref("ToolAudit")),
                  params=[_LIMIT, _PID_Q, query("app", _TEXT), query("tool", _TEXT),
                          query("outcome", {"enum": list(OUTCOMES)}),
                          query("before", {"type": "integer", "minimum": 0, "maximum": MAX_ID},
                                "rows with a smaller id (the next page)")],
                  errors_=(400,)),
    },
    "/api/agents/{pid}/undo": {
        "get": op("What an undo would roll back: the agent's file changes, newest first (admin)",
                  ok(ref("UndoPlan")), params=[_PID], errors_=(404,)),
        "post": op("Roll back every file change of an agent that is not running (admin)", ok(ref("UndoReport")),
                   params=[_PID], errors_=(404, 409)),
    },
}


def _conflict(operation: dict[str, Any], words: str) -> dict[str, Any]:
    operation["responses"]["409"] = {**operation["responses"]["409"], "description": words}
    return operation


_conflict(PATHS["/api/approvals/{id}/answer"]["post"], _CLOSED)
_conflict(PATHS["/api/agents/{pid}/undo"]["post"], "The agent is running: suspend or kill it first")
