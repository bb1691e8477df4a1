"""The OpenAPI description of /api/agents (agents_routes.py): the agent kernel's processes."""

from __future__ import annotations

from typing import Any

from app.kernel.agents.process import Priority, ProcessState, Quotas
from app.kernel.agents.runtime import MAX_MESSAGE, MAX_TASK
from app.kernel.gateway.agents_routes import MAX_LIST, MAX_LOGS, MAX_PID, MAX_QUOTA, MAX_SPEC, SPEC_FORMATS
from app.kernel.gateway.openapi_kit import (
    INT,
    NUM,
    OBJ,
    STR,
    json_content,
    nullable,
    obj,
    ok,
    op,
    path_param,
    query,
    ref,
    sse_event,
)

_STATE = {"enum": [s.value for s in ProcessState]}
_PRIORITY = {"enum": [p.value for p in Priority]}
_QUOTA_WORDS = {
    "tokens": "prompt and completion tokens", "cost": "US dollars", "steps": "model calls (loop iterations)",
    "tool_calls": "tool calls", "wall_s": "seconds of running time (suspensions not counted)",
}
_LIMIT = {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_QUOTA}
_CONFLICT = "Illegal transition: the agent cannot go there from its state (resume a running agent, " \
    "kill an ended one), or a message to an ended agent"


def _quotas(*, changes: bool) -> dict[str, Any]:
    schema = obj(closed=True, **{
        name: (nullable(_LIMIT) if changes else _LIMIT) | {"description": _QUOTA_WORDS.get(name, name)}
        for name in Quotas.__dataclass_fields__
    })
    if changes:
        schema["description"] = "limits to set; null removes one (no limit); one left out is unchanged"
    return schema


SCHEMAS: dict[str, Any] = {
    "AgentQuotas": _quotas(changes=False),
    "AgentQuotaChanges": _quotas(changes=True),
    "AgentUsage": obj(
        ("prompt_tokens", "completion_tokens", "tokens", "cost", "calls", "steps", "tool_calls", "wall_s"),
        prompt_tokens=INT, completion_tokens=INT, tokens=INT, cost=NUM, calls=INT, steps=INT, tool_calls=INT,
        wall_s=NUM,
    ),
    "AgentProcess": obj(
        ("pid", "name", "kind", "state", "app", "priority", "parent", "task", "quotas", "usage", "reason",
         "result", "created_at", "started_at", "ended_at"),
        pid=INT,
        name=STR,
        kind={"enum": ["kernel", "external"]},
        state=_STATE,
        app={**STR, "description": "the agent's app identity (its budgets, audit rows and memory)"},
        priority=_PRIORITY,
        parent=nullable(INT),
        task=STR,
        quotas=ref("AgentQuotas"),
        usage=ref("AgentUsage"),
        reason={**STR, "description": "why it is suspended or failed (a quota reached, an error, the user)"},
        result=nullable(STR),
        created_at=NUM,
        started_at=nullable(NUM),
        ended_at=nullable(NUM),
        spec={**OBJ, "description": "its agent file, as the kernel read it (one agent's answers only)"},
    ),
    "AgentSpawn": {
        **obj(
            closed=True,
            agent={**STR, "description": "the name of a shipped agent (assistant, research-notes)",
                   "examples": ["assistant"]},
            spec={"type": "string", "minLength": 1, "maxLength": MAX_SPEC,
                  "description": "the text of an agent file (not a path: the daemon reads no file you name)"},
            spec_format={"enum": list(SPEC_FORMATS), "default": "toml", "description": "with `spec` only"},
            task={"type": "string", "maxLength": MAX_TASK, "default": "", "examples": ["Say hello."]},
            quotas=nullable(ref("AgentQuotaChanges")),
            priority={"enum": [*_PRIORITY["enum"], None],
                      "description": "how its model calls queue (default: the agent file's)"},
        ),
        "oneOf": [{"required": ["agent"]}, {"required": ["spec"]}],
    },
    "AgentList": obj(("data",), data={"type": "array", "items": ref("AgentProcess")}),
    "AgentPatch": obj(("quotas",), closed=True, quotas={"allOf": [ref("AgentQuotaChanges")], "minProperties": 1}),
    "AgentMessage": obj(("content",), closed=True,
                        content={"type": "string", "minLength": 1, "maxLength": MAX_MESSAGE,
                                 "pattern": r"\S", "description": "read before the agent's next model call"}),
    "AgentMessageSent": obj(("pid", "seq"), pid=INT, seq={**INT, "description": "its place in the inbox"}),
    "AgentLogEntry": obj(
        ("seq", "at", "kind", "summary", "detail"),
        seq=INT, at=NUM,
        kind={**STR, "description": "state, llm, tool, message, quota, page_out, page_in, error, result"},
        summary=STR, detail=OBJ,
    ),
    "AgentLogs": obj(("data",), data={"type": "array", "items": ref("AgentLogEntry")}),
}

_PID = path_param("pid", "the agent's process id", {"type": "integer", "minimum": 1, "maximum": MAX_PID})
_AFTER = query("after", {"type": "integer", "minimum": 0, "maximum": MAX_PID, "default": 0},
               "only the log entries after this seq")


def _op(summary: str, answer: dict[str, Any], **kw: Any) -> dict[str, Any]:
    operation = op(summary, answer, **kw)
    if "409" in operation["responses"]:
        operation["responses"]["409"] = {**operation["responses"]["409"], "description": _CONFLICT}
    return operation


def _control(what: str) -> dict[str, Any]:
    return {"post": _op(what, ok(ref("AgentProcess")), params=[_PID], errors_=(404, 409))}


PATHS: dict[str, dict[str, Any]] = {
    "/api/agents": {
        "post": _op(
            "Spawn a kernel-run agent: a shipped one by name, or from an agent file's text (admin)",
            ok(ref("AgentProcess"), "Spawned: it runs to its end across restarts"),
            body=json_content(ref("AgentSpawn")),
            ok_status="201",
        ),
        "get": _op(
            "The process table, newest first (admin)",
            ok(ref("AgentList")),
            params=[
                query("state", STR, "comma-separated states to keep: " + ", ".join(_STATE["enum"])),
                query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIST, "default": 200}),
            ],
            errors_=(400,),
        ),
    },
    "/api/agents/{pid}": {
        "get": _op("One agent: state, usage, quotas and its agent file (admin)", ok(ref("AgentProcess")),
                   params=[_PID], errors_=(404,)),
        "patch": _op("Change an agent's quotas, e.g. raise the one it reached, then resume it (admin)",
                     ok(ref("AgentProcess")), body=json_content(ref("AgentPatch")), params=[_PID],
                     errors_=(404,)),
    },
    "/api/agents/{pid}/suspend": _control("Suspend an agent: it stops after its current step (admin)"),
    "/api/agents/{pid}/resume": _control("Resume a suspended agent at its last completed step (admin)"),
    "/api/agents/{pid}/kill": _control("Kill an agent and its children, for good (admin)"),
    "/api/agents/{pid}/messages": {
        "post": _op("Send a running agent a message (admin)", ok(ref("AgentMessageSent"), "Queued, durably"),
                    body=json_content(ref("AgentMessage")), params=[_PID], ok_status="201",
                    errors_=(404, 409)),
    },
    "/api/agents/{pid}/logs": {
        "get": _op(
            "An agent's log: its steps, tool calls, messages, page-outs and state changes (admin)",
            ok(ref("AgentLogs")),
            params=[_PID, _AFTER,
                    query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LOGS, "default": MAX_LOGS})],
            errors_=(400, 404),
        ),
    },
    "/api/agents/{pid}/events": {
        "get": _op(
            "One agent's log entries and state changes, live, as server-sent events (admin)",
            {
                "description": "`agent` (the process now), then `log` entries (id: their seq) from `after` "
                "or Last-Event-ID, then `log` and `state` as they happen; `end` (the process as it ended) "
                "closes the stream. A suspended agent's stream stays open.",
                "content": {"text/event-stream": {"schema": sse_event(["agent", "log", "state", "end"])}},
            },
            params=[_PID, _AFTER, {
                "name": "Last-Event-ID", "in": "header", "required": False,
                "schema": {"type": "string", "pattern": r"^[ \t]*[0-9]*[ \t]*$"},
                "description": "a reconnecting client's last `log` id: the stream goes on after it",
            }],
            errors_=(400, 404),
        ),
    },
}
