"""`GET /openapi.json`: an OpenAPI 3.1 description of every route the gateway serves.

Written by hand next to the routes rather than generated. The request schemas say what the
handlers check — a body the schema refuses is refused with a 4xx in the caller's error format,
never served — and leave vendor options open (`additionalProperties`). Every operation lists
each status it can answer with. The socket, scheduler, personalization and agent groups are
described in `openapi_socket.py`, `openapi_scheduler.py`, `openapi_personal.py` and
`openapi_agents.py`; a route nobody described yet still appears, with its scope, so the document
never claims less than what is served.
`tests/kernel/gateway/test_openapi_fuzz.py` fuzzes the gateway against it with schemathesis.
"""

from __future__ import annotations

from typing import Any

import orjson

from app import version
from app.kernel.gateway import (
    openapi_agents,
    openapi_documents,
    openapi_personal,
    openapi_scheduler,
    openapi_socket,
    web,
)
from app.kernel.gateway.middleware import AUTHENTICATED, PUBLIC, REGISTER, required_scope
from app.kernel.gateway.openapi_approvals import PATHS as APPROVALS_PATHS
from app.kernel.gateway.openapi_approvals import SCHEMAS as APPROVALS_SCHEMAS
from app.kernel.gateway.openapi_kit import (
    ANY,
    BOOL,
    INT,
    NUM,
    OBJ,
    OPENAI_SSE,
    STR,
    UPSTREAM,
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
from app.kernel.gateway.openapi_mcp import PATHS as MCP_PATHS
from app.kernel.gateway.openapi_mcp import SCHEMAS as MCP_SCHEMAS
from app.kernel.gateway.openapi_mcp_server import PATHS as MCP_SERVER_PATHS
from app.kernel.gateway.openapi_responses import PATHS as RESPONSES_PATHS
from app.kernel.gateway.openapi_responses import SCHEMAS as RESPONSES_SCHEMAS
from app.kernel.gateway.openapi_sessions import PATHS as SESSIONS_PATHS
from app.kernel.gateway.openapi_sessions import SCHEMAS as SESSIONS_SCHEMAS
from app.kernel.scheduler.program import PRIORITY_HEADER, PRIORITY_PATTERN
from app.kernel.security.apps import SCOPES

_MODEL = {"type": "string", "minLength": 1, "description": "a model id, a bare name or a socket alias"}
_NUM_OR_NULL = nullable(NUM)
_INT_OR_NULL = nullable(INT)
_OBJ_OR_NULL = nullable(OBJ)
_STOP = nullable({"anyOf": [STR, {"type": "array", "items": STR}]})
# A limit is stored as a 64-bit integer; larger values are refused.
_LIMIT_INT = nullable({"type": "integer", "minimum": 0, "maximum": 2**63 - 1})
_LIMITS = {
    "rate_limit_rpm": _LIMIT_INT,
    "daily_token_budget": _LIMIT_INT,
    "daily_cost_budget": nullable({"type": "number", "minimum": 0}),
}

# Content blocks the translation takes (thinking blocks are dropped; other kinds are a 400).
_ANTHROPIC_BLOCK = obj(
    ("type",),
    type={"enum": ["text", "image", "tool_use", "tool_result", "thinking", "redacted_thinking"]},
)
_ANTHROPIC_SYSTEM = nullable(
    {"anyOf": [STR, {"type": "array", "items": obj(("type",), type={"const": "text"})}]}
)
_ANTHROPIC_TOOLS = nullable(
    {
        "type": "array",
        "items": obj(
            ("name",), name=STR, type=nullable({"const": "custom"}), description=STR, input_schema=OBJ
        ),
    }
)
_ANTHROPIC_TOOL_CHOICE = nullable(obj(("type",), type={"enum": ["auto", "none", "any", "tool"]}, name=STR))

SCHEMAS: dict[str, Any] = {
    "OpenAIError": obj(
        ("error",),
        error=obj(("message", "type"), message=STR, type=STR, param=nullable(STR), code=nullable(STR)),
    ),
    "AnthropicError": obj(
        ("type", "error"),
        type={"const": "error"},
        error=obj(("type", "message"), type=STR, message=STR),
    ),
    "ChatMessage": obj(
        ("role",),
        role={"enum": ["system", "developer", "user", "assistant", "tool", "function"]},
        content={
            "anyOf": [
                STR,
                {"type": "array", "items": obj(("type",), type=STR)},
                {"type": "null"},
            ]
        },
        name=nullable(STR),
        tool_call_id=nullable(STR),
        tool_calls=nullable({"type": "array", "items": OBJ}),
    ),
    "ChatCompletionRequest": obj(
        ("model", "messages"),
        model=_MODEL,
        messages={"type": "array", "minItems": 1, "items": ref("ChatMessage")},
        stream=BOOL,
        temperature=_NUM_OR_NULL,
        top_p=_NUM_OR_NULL,
        presence_penalty=_NUM_OR_NULL,
        frequency_penalty=_NUM_OR_NULL,
        max_tokens=nullable({"type": "integer", "minimum": 0}),
        max_completion_tokens=nullable({"type": "integer", "minimum": 0}),
        n=nullable({"type": "integer", "minimum": 1}),
        seed=_INT_OR_NULL,
        top_logprobs=_INT_OR_NULL,
        stop=_STOP,
        tools=nullable({"type": "array", "items": OBJ}),
        tool_choice=nullable({"anyOf": [STR, OBJ]}),
        response_format=_OBJ_OR_NULL,
        stream_options=_OBJ_OR_NULL,
        logit_bias=_OBJ_OR_NULL,
        metadata=_OBJ_OR_NULL,
        user=nullable(STR),
    ),
    "ChatCompletion": obj(
        ("choices",),
        id=STR,
        object=STR,
        created=INT,
        model=STR,
        choices={"type": "array", "items": OBJ},
        usage=_OBJ_OR_NULL,
    ),
    "CompletionRequest": obj(
        ("model", "prompt"),
        model=_MODEL,
        prompt={
            "anyOf": [
                STR,
                {"type": "array", "minItems": 1, "items": STR},
                {"type": "array", "minItems": 1, "items": INT},
                {"type": "array", "minItems": 1, "items": {"type": "array", "items": INT}},
            ]
        },
        stream=BOOL,
        temperature=_NUM_OR_NULL,
        top_p=_NUM_OR_NULL,
        presence_penalty=_NUM_OR_NULL,
        frequency_penalty=_NUM_OR_NULL,
        max_tokens=nullable({"type": "integer", "minimum": 0}),
        n=nullable({"type": "integer", "minimum": 1}),
        seed=_INT_OR_NULL,
        user=nullable(STR),
        stop=_STOP,
    ),
    "Completion": obj(
        ("choices",),
        id=STR,
        object=STR,
        created=INT,
        model=STR,
        choices={"type": "array", "items": OBJ},
        usage=_OBJ_OR_NULL,
    ),
    "EmbeddingRequest": obj(
        ("model", "input"),
        model=_MODEL,
        input={"anyOf": [STR, {"type": "array", "minItems": 1, "items": STR}]},
        encoding_format={"enum": ["float", "base64"]},
        dimensions=nullable({"type": "integer", "minimum": 1}),
        user=nullable(STR),
    ),
    "EmbeddingList": obj(
        ("object", "data", "model", "usage"),
        object={"const": "list"},
        model=STR,
        usage=OBJ,
        data={
            "type": "array",
            "items": obj(
                ("embedding", "index"),
                index=INT,
                embedding={"anyOf": [{"type": "array", "items": NUM}, STR]},
            ),
        },
    ),
    "Model": obj(
        ("id",),
        id=STR,
        object=STR,
        created=INT,
        owned_by=STR,
        type=STR,
        display_name=STR,
        created_at=STR,
    ),
    "ModelList": obj(
        ("data",),
        object=STR,
        data={"type": "array", "items": ref("Model")},
        has_more=BOOL,
        first_id=nullable(STR),
        last_id=nullable(STR),
    ),
    "AnthropicMessagesRequest": obj(
        ("model", "max_tokens", "messages"),
        model=_MODEL,
        max_tokens={"type": "integer", "minimum": 1},
        messages={
            "type": "array",
            "items": obj(
                ("role", "content"),
                role={"enum": ["user", "assistant"]},
                content={"anyOf": [STR, {"type": "array", "items": _ANTHROPIC_BLOCK}]},
            ),
        },
        system=_ANTHROPIC_SYSTEM,
        stream=nullable(BOOL),
        temperature=_NUM_OR_NULL,
        top_p=_NUM_OR_NULL,
        top_k=_INT_OR_NULL,
        stop_sequences=nullable({"type": "array", "items": STR}),
        tools=_ANTHROPIC_TOOLS,
        tool_choice=_ANTHROPIC_TOOL_CHOICE,
        metadata=_OBJ_OR_NULL,
    ),
    "AnthropicCountTokensRequest": obj(
        ("model", "messages"),
        model=_MODEL,
        messages={
            "type": "array",
            "items": obj(
                ("role", "content"),
                role={"enum": ["user", "assistant"]},
                content={"anyOf": [STR, {"type": "array", "items": _ANTHROPIC_BLOCK}]},
            ),
        },
        system=_ANTHROPIC_SYSTEM,
        tools=_ANTHROPIC_TOOLS,
        tool_choice=_ANTHROPIC_TOOL_CHOICE,
    ),
    "AnthropicMessage": obj(
        ("id", "type", "role", "content"),
        id=STR,
        type={"const": "message"},
        role={"const": "assistant"},
        model=STR,
        content={"type": "array", "items": OBJ},
        stop_reason=nullable(STR),
        usage=OBJ,
    ),
    "RegisterRequest": obj(
        ("name",),
        name={"type": "string", "minLength": 1, "description": "what the app is called (letters or digits)"},
        scopes={"type": "array", "items": {"enum": list(SCOPES)}, "default": ["chat"]},
        replace=BOOL,
        **_LIMITS,
    ),
    "App": obj(
        ("id", "name", "scopes"),
        id=STR,
        name=STR,
        scopes={"type": "array", "items": STR},
        builtin=BOOL,
        created_at=NUM,
        revoked=BOOL,
        token_hint=STR,
        token=STR,
        rate_limit_rpm=_INT_OR_NULL,
        daily_token_budget=_INT_OR_NULL,
        daily_cost_budget=_NUM_OR_NULL,
    ),
    "AppLimitsUpdate": obj(closed=True, **_LIMITS),
    "Usage": obj(
        ("data",),
        since=_NUM_OR_NULL,
        until=_NUM_OR_NULL,
        data={
            "type": "array",
            "items": obj(
                app=nullable(STR),
                model=STR,
                requests=INT,
                errors=INT,
                prompt_tokens=INT,
                completion_tokens=INT,
                total_tokens=INT,
                cost=NUM,
            ),
        },
    ),
    "Health": obj(("status",), status=STR, service=STR, version=STR, models=INT),
    **RESPONSES_SCHEMAS,
    **SESSIONS_SCHEMAS,
    **openapi_socket.SCHEMAS,
    **openapi_scheduler.SCHEMAS,
    **openapi_personal.SCHEMAS,
    **openapi_agents.SCHEMAS,
    **MCP_SCHEMAS,
    **APPROVALS_SCHEMAS,
    **openapi_documents.SCHEMAS,
}

_ANTHROPIC_SSE = sse_event(
    [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
        "error",
    ]
)
_TIME_PARAMS = [query(n, STR, "unix seconds or ISO 8601") for n in ("since", "until")]
# An app may lower one request's place in the scheduler's queues (docs/scheduler.md).
_PRIORITY = [{
    "name": PRIORITY_HEADER, "in": "header", "required": False,
    "schema": {"type": "string", "pattern": PRIORITY_PATTERN},
    "description": "`background`, `normal` or `interactive`, optionally `; priority=<n>`: how this request "
    "queues for a busy model; a request may lower itself below its app's program, not raise itself (403), "
    "unless the token has the admin scope",
}]
_APP_ID = path_param("app_id", "an app id")

PATHS: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": {
        "post": op(
            "OpenAI Chat Completions (stream with `stream: true`)",
            ok(ref("ChatCompletion"), sse=OPENAI_SSE),
            body=json_content(ref("ChatCompletionRequest")),
            errors_=UPSTREAM,
            params=_PRIORITY,
        )
    },
    "/v1/completions": {
        "post": op(
            "OpenAI legacy completions",
            ok(ref("Completion"), sse=OPENAI_SSE),
            body=json_content(ref("CompletionRequest")),
            errors_=UPSTREAM,
            params=_PRIORITY,
        )
    },
    "/v1/embeddings": {
        "post": op(
            "OpenAI embeddings",
            ok(ref("EmbeddingList")),
            body=json_content(ref("EmbeddingRequest")),
            errors_=UPSTREAM,
            params=_PRIORITY,
        )
    },
    "/v1/models": {
        "get": op(
            "Models and socket aliases (Anthropic's shape with an anthropic-version header)",
            ok(ref("ModelList")),
            params=[{"name": "anthropic-version", "in": "header", "required": False, "schema": STR}],
        )
    },
    "/v1/models/{model_id}": {
        "get": op(
            "One model",
            ok(ref("Model")),
            params=[
                path_param("model_id", "a model id or socket alias"),
                {"name": "anthropic-version", "in": "header", "required": False, "schema": STR},
            ],
            errors_=(404,),
        )
    },
    "/v1/messages": {
        "post": op(
            "Anthropic Messages (stream with `stream: true`)",
            ok(ref("AnthropicMessage"), sse=_ANTHROPIC_SSE),
            family="anthropic",
            body=json_content(ref("AnthropicMessagesRequest")),
            errors_=UPSTREAM,
            params=_PRIORITY,
        )
    },
    "/v1/messages/count_tokens": {
        "post": op(
            "Anthropic token count",
            ok(obj(("input_tokens",), input_tokens=INT)),
            family="anthropic",
            body=json_content(ref("AnthropicCountTokensRequest")),
            errors_=(404,),
        )
    },
    "/api/health": {
        "get": op("Liveness, version, model count (no token needed)", ok(ref("Health")), auth="public")
    },
    "/api/apps/register": {
        "post": op(
            "Register an app and get its token (apps may give themselves chat and hinata:write; "
            "other scopes, a re-issue and limits need the admin token)",
            ok(ref("App"), "Created"),
            body=json_content(ref("RegisterRequest")),
            ok_status="201",
            errors_=(409,),
            auth="optional",
        )
    },
    "/api/apps": {
        "get": op(
            "Registered apps (admin)",
            ok(obj(("data",), data={"type": "array", "items": ref("App")})),
            params=[query("revoked", STR, "1, true or yes: include revoked apps")],
        )
    },
    "/api/apps/me": {"get": op("The calling app", ok(ref("App")))},
    "/api/apps/{app_id}": {
        "delete": op("Revoke an app's token (admin)", ok(ref("App")), params=[_APP_ID], errors_=(404,)),
        "patch": op(
            "Set an app's rate limit and budgets (admin)",
            ok(ref("App")),
            body=json_content(ref("AppLimitsUpdate")),
            params=[_APP_ID],
            errors_=(404,),
        ),
    },
    "/api/models": {
        "get": op("Model specs", ok(obj(("data",), data={"type": "array", "items": obj(("id",), id=STR)})))
    },
    "/api/models/scan": {
        "post": op(
            "Discover models now (admin)",
            ok(obj(("providers", "models", "notes"), providers=ANY, models=ANY, notes=ANY)),
        )
    },
    "/api/usage": {
        "get": op(
            "Requests, tokens and cost per app (or per model with by=model); apps without admin see their own",
            ok(ref("Usage")),
            errors_=(400,),
            params=[*_TIME_PARAMS, query("by", {"enum": ["app", "model"]})],
        )
    },
    "/api/audit": {
        "get": op(
            "Latest audit rows (admin)",
            ok(obj(("data",), data={"type": "array", "items": OBJ})),
            errors_=(400,),
            params=[
                query("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}),
                query("app", STR),
            ],
        )
    },
    "/api/events": {
        "get": op(
            "Kernel events as server-sent events (admin)",
            {
                "description": "An endless event stream: `event: <Name>` and the event as JSON",
                "content": {"text/event-stream": {"schema": sse_event()}},
            },
        )
    },
    "/metrics": {
        "get": op(
            "Prometheus metrics (admin)",
            {"description": "Prometheus text format 0.0.4", "content": {"text/plain": {"schema": STR}}},
        )
    },
    "/openapi.json": {"get": op("This document", ok(OBJ), auth="public")},
    **RESPONSES_PATHS,
    **SESSIONS_PATHS,
    **openapi_socket.PATHS,
    **openapi_scheduler.PATHS,
    **openapi_personal.PATHS,
    **openapi_agents.PATHS,
    **MCP_PATHS,
    **MCP_SERVER_PATHS,
    **APPROVALS_PATHS,
    **openapi_documents.PATHS,
}


def _scope_note(method: str, path: str) -> str:
    need = required_scope(method.upper(), path)
    if need == PUBLIC:
        return "No token needed."
    if need == REGISTER:
        return "Token optional (needed for privileged scopes)."
    if need == AUTHENTICATED:
        return "Any valid token."
    return f"Needs the `{need}` scope (or `admin`)."


def _undescribed(path: str, method: str, handler: Any) -> dict[str, Any]:
    """A plain description for a route nobody described yet: its summary, scope and parameters."""
    summary = (getattr(handler, "__doc__", None) or "").strip().splitlines()
    return op(
        summary[0] if summary else f"{method.upper()} {path}",
        ok(),
        params=[path_param(name) for name in _path_params(path)] or None,
        family="anthropic" if path.startswith("/v1/messages") else "openai",
        errors_=(400, 404, 409, 413, 500, 502, 503),
    )


def _path_params(path: str) -> list[str]:
    out, depth, name = [], 0, ""
    for ch in path:
        if ch == "{":
            depth += 1
            if depth == 1:
                name = ""
                continue
        elif ch == "}":
            depth -= 1
            if depth == 0:
                out.append(name)
                continue
        if depth:
            name += ch
    return out


def _clean(path: str) -> str:
    for name in _path_params(path):
        path = path.replace("{" + name + "}", "{" + name.split(":")[0] + "}")
    return path


def _paths(app: web.Application | None) -> dict[str, dict[str, Any]]:
    """Every described operation, and any route the app serves that nobody described yet."""
    paths = {path: dict(ops) for path, ops in PATHS.items()}
    for route in app.router.routes() if app is not None else ():
        info = route.resource.get_info() if route.resource is not None else {}
        path, method = _clean(info.get("path") or info.get("formatter") or ""), route.method.lower()
        if path and method not in ("head", "*") and method not in paths.get(path, {}):
            paths.setdefault(path, {})[method] = _undescribed(path, method, route.handler)
    return paths


def document(app: web.Application | None = None) -> dict[str, Any]:
    paths = {p: {m: dict(o) for m, o in ops.items()} for p, ops in _paths(app).items()}
    for path, ops in paths.items():
        for method, operation in ops.items():
            operation["description"] = _scope_note(method, path)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ByenatOS gateway",
            "version": version(),
            "description": "One local door to every model: OpenAI and Anthropic APIs, and ByenatOS' own. "
            "Send `Authorization: Bearer <app token>` (or `x-api-key`). Scopes: " + ", ".join(SCOPES) + ".",
        },
        "servers": [{"url": "http://127.0.0.1:8484"}],
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
            },
        },
        "security": [{"bearer": []}, {"apiKey": []}],
        "paths": paths,
    }


_CACHE = web.AppKey("openapi_cache", dict)


async def openapi_json(request: web.Request) -> web.Response:
    cache = request.app[_CACHE]  # built on first request, when every route group is in
    if "doc" not in cache:
        cache["doc"] = orjson.dumps(document(request.app))
    return web.Response(body=cache["doc"], content_type="application/json")


def add_routes(app: web.Application) -> None:
    app[_CACHE] = {}
    app.router.add_get("/openapi.json", openapi_json)
