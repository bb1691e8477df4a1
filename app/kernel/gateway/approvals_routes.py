"""/api/approvals, /api/tools/permissions, /api/tools/audit and /api/agents/{pid}/undo over HTTP.

    GET    /api/approvals                    the requests waiting for the user (?state=… for past ones)
    GET    /api/approvals/{id}               one request
    POST   /api/approvals/{id}/answer        {"answer": "once" | "always" | "deny"}
    GET    /api/tools/permissions            the rules, and what each known tool gets (?app=…)
    PUT    /api/tools/permissions            {"tool": selector, "decision": …, "app": id | "*"} sets a rule
    DELETE /api/tools/permissions?tool=&app= clears one
    GET    /api/tools/audit                  the tool calls, newest first (?app, pid, tool, outcome, limit, before)
    GET    /api/agents/{pid}/undo            what an undo would roll back
    POST   /api/agents/{pid}/undo            roll an agent's file changes back (it must not be running)

All need the `admin` scope (`middleware.required_scope`'s default): they decide what agents
may do to the user's machine, and show what they did.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from app.kernel.agents.process import IllegalTransitionError
from app.kernel.errors import ByenatosError, NotFoundError
from app.kernel.gateway import web
from app.kernel.gateway.bodies import read_json
from app.kernel.gateway.errors import RequestError
from app.kernel.gateway.keys import KERNEL
from app.kernel.tools.approvals import STATES
from app.kernel.tools.audit import OUTCOMES
from app.kernel.tools.permissions import EVERY_APP, check_app, check_decision, check_selector

if TYPE_CHECKING:
    from app.kernel.tools.invoke import ToolInvoker

MAX_ID = 2**63 - 1  # SQLite's INTEGER: no id or pid is larger
MAX_PID = MAX_ID
MAX_LIST = 1_000
RULE_FIELDS = ("tool", "decision", "app")


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _invoker(request: web.Request) -> ToolInvoker:
    return request.app[KERNEL].tool_invoker


def _pid(request: web.Request) -> int:
    raw = request.match_info["pid"]
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MAX_PID:
        raise NotFoundError(f"no agent with pid {raw!r} (pids are whole numbers from 1)")
    return int(raw)


def _int_query(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise RequestError(f"{name}: a whole number from {low} to {high}, not {raw[:50]!r}", param=name) from None
    if not low <= value <= high:
        raise RequestError(f"{name}: a whole number from {low} to {high}", param=name)
    return value


def _unknown_fields(body: dict[str, Any], known: tuple[str, ...]) -> None:
    unknown = sorted(set(body) - set(known))
    if unknown:
        raise RequestError(f"{unknown[0][:100]}: not a field of this request (fields: {', '.join(known)})",
                           param=unknown[0][:100])


def _id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MAX_ID:
        raise NotFoundError(f"no approval request {raw!r} (ids are whole numbers from 1)")
    return int(raw)


def _text_query(request: web.Request, name: str, check: Any = None) -> str | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    if len(raw) > 200:
        raise RequestError(f"{name}: at most 200 characters", param=name)
    if check is not None:
        try:
            return check(raw)
        except ByenatosError as e:
            raise RequestError(f"{name}: {e.message.partition(': ')[2] or e.message}", param=name) from None
    return raw


# -- approvals ----------------------------------------------------------------------------------
async def list_approvals(request: web.Request) -> web.Response:
    """The requests waiting for the user's answer (or, with ?state=, past ones)."""
    hub = _invoker(request).approvals
    state = _text_query(request, "state")
    limit = _int_query(request, "limit", 100, 1, MAX_LIST)
    pid = _int_query(request, "pid", 0, 0, MAX_PID) or None
    if state in (None, "pending"):
        return _json({"data": [a for a in hub.pending() if pid is None or a["pid"] == pid][:limit]})
    if state != "all" and state not in STATES:
        raise RequestError(f"state: one of all, {', '.join(STATES)}", param="state")
    return _json({"data": hub.recent(limit=limit, state=None if state == "all" else state, pid=pid)})


async def get_approval(request: web.Request) -> web.Response:
    return _json(_invoker(request).approvals.get(_id(request)))


async def answer_approval(request: web.Request) -> web.Response:
    """Answer a pending request: once, always (also allows the tool for that app from now on) or deny."""
    approval = _id(request)
    hub = _invoker(request).approvals
    hub.get(approval)  # an unknown id is a 404 whatever the body
    body = await read_json(request)
    _unknown_fields(body, ("answer",))
    answer = body.get("answer")
    if answer not in ("once", "always", "deny"):
        raise RequestError("answer: one of once, always, deny", param="answer")
    return _json(hub.answer(approval, answer))


# -- permissions --------------------------------------------------------------------------------
async def list_permissions(request: web.Request) -> web.Response:
    """The rules the user set and, for an app (or every app), the decision each known tool gets."""
    invoker = _invoker(request)
    app = _text_query(request, "app", check_app)
    rules = invoker.permissions.rules(app=None if app in (None, EVERY_APP) else app)
    tools = []
    for name in invoker.registry.names():
        try:
            tool = invoker.registry.get(name)
        except NotFoundError:  # a source's bare name (an MCP server): its tools are listed when it runs
            continue
        verdict = invoker.permissions.decide(app or EVERY_APP, tool)
        tools.append({"tool": name, "risk": tool.risk.value, "source": tool.source,
                      "decision": verdict.decision.value, "rule": verdict.rule.to_dict() if verdict.rule else None})
    return _json({"app": app or EVERY_APP, "rules": [r.to_dict() for r in rules], "tools": tools})


async def set_permission(request: web.Request) -> web.Response:
    body = await read_json(request)
    _unknown_fields(body, RULE_FIELDS)
    for name in ("tool", "decision"):
        if name not in body:
            raise RequestError(f"{name}: Field required", param=name)
    try:
        tool = check_selector(body["tool"])
        decision = check_decision(body["decision"])
        app = check_app(body.get("app"))
    except ByenatosError as e:
        param = e.message.partition(":")[0]
        raise RequestError(e.message, param=param if param in RULE_FIELDS else None) from None
    return _json(_invoker(request).permissions.set(app, tool, decision).to_dict())


async def clear_permission(request: web.Request) -> web.Response:
    tool = _text_query(request, "tool", check_selector)
    if tool is None:
        raise RequestError("tool: the rule's tool selector (a query parameter)", param="tool")
    app = _text_query(request, "app", check_app)
    return _json(_invoker(request).permissions.clear(app, tool).to_dict())


# -- the audit of tool calls --------------------------------------------------------------------
async def tool_audit(request: web.Request) -> web.Response:
    """Tool calls, newest first: who, which tool, a hash of its arguments, outcome, duration."""
    outcome = _text_query(request, "outcome")
    if outcome is not None and outcome not in OUTCOMES:
        raise RequestError(f"outcome: one of {', '.join(OUTCOMES)}", param="outcome")
    rows = await _invoker(request).audit.recent(
        limit=_int_query(request, "limit", 100, 1, MAX_LIST), app=_text_query(request, "app"),
        pid=_int_query(request, "pid", 0, 0, MAX_PID) or None, tool=_text_query(request, "tool"),
        outcome=outcome, before=_int_query(request, "before", 0, 0, MAX_ID) or None)
    return _json({"data": rows})


# -- undo ---------------------------------------------------------------------------------------
async def undo_plan(request: web.Request) -> web.Response:
    """What `POST` would roll back: the agent's file changes not rolled back yet, newest first."""
    pid = _pid(request)
    request.app[KERNEL].agents.get(pid)  # 404 for an unknown pid
    return _json({"pid": pid, "data": _invoker(request).undo.entries(pid)})


async def undo(request: web.Request) -> web.Response:
    """Roll back every file change of an agent, newest first: content restored, created files removed."""
    pid = _pid(request)
    proc = request.app[KERNEL].agents.get(pid)
    if proc.state.live:
        raise IllegalTransitionError(f"cannot undo agent {pid}'s changes while it runs ({proc.state.value}); "
                                     f"suspend or kill it first (`byenatos agents suspend {pid}`)")
    return _json((await _invoker(request).undo.undo(pid)).to_dict())


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/approvals", list_approvals)
    app.router.add_get("/api/approvals/{id}", get_approval)
    app.router.add_post("/api/approvals/{id}/answer", answer_approval)
    app.router.add_get("/api/tools/permissions", list_permissions)
    app.router.add_put("/api/tools/permissions", set_permission)
    app.router.add_delete("/api/tools/permissions", clear_permission)
    app.router.add_get("/api/tools/audit", tool_audit)
    app.router.add_get("/api/agents/{pid}/undo", undo_plan)
    app.router.add_post("/api/agents/{pid}/undo", undo)
