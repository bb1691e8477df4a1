"""`GET /openapi.json`: an OpenAPI 3.1 description of every route the gateway serves.

Written by hand next to the routes rather than generated: the request schemas say what the
gateway checks (required fields, types) and leave vendor options open (`additionalProperties`),
and every operation lists each status it can answer with, in its API family's error shape.
Route groups added by other subsystems (socket, personalization) are described from the
router with their scope, so the document never claims less than what is served.
"""

from __future__ import annotations

from typing import Any

import orjson

from app import version
from app.kernel.gateway import web
from app.kernel.gateway.middleware import AUTHENTICATED, PUBLIC, REGISTER, required_scope
from app.kernel.security.apps import SCOPES

_OBJ: dict[str, Any] = {"type": "object"}
_STR = {"type": "string"}
_INT = {"type": "integer"}
_NUM = {"type": "number"}
_BOOL = {"type": "boolean"}
_NULL_OR = lambda schema: {"anyOf": [schema, {"type": "null"}]}  # noqa: E731


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


SCHEMAS: dict[str, Any] = {
    "OpenAIError": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["message", "type"],
                "properties": {
                    "message": _STR,
                    "type": _STR,
                    "param": _NULL_OR(_STR),
                    "code": _NULL_OR(_STR),
                },
            }
        },
    },
    "AnthropicError": {
        "type": "object",
        "required": ["type", "error"],
        "properties": {
            "type": {"const": "error"},
            "error": {
                "type": "object",
                "required": ["type", "message"],
                "properties": {"type": _STR, "message": _STR},
            },
        },
    },
    "ChatMessage": {
        "type": "object",
        "required": ["role"],
        "properties": {
            "role": {"enum": ["system", "developer", "user", "assistant", "tool", "function"]},
            "content": {
                "anyOf": [
                    _STR,
                    {
                        "type": "array",
                        "items": {"type": "object", "required": ["type"], "properties": {"type": _STR}},
                    },
                    {"type": "null"},
                ]
            },
            "name": _STR,
            "tool_call_id": _STR,
            "tool_calls": {"type": "array", "items": _OBJ},
        },
    },
    "ChatCompletionRequest": {
        "type": "object",
        "required": ["model", "messages"],
        "properties": {
            "model": {
                "type": "string",
                "minLength": 1,
                "description": "a model id, a bare name or a socket alias",
            },
            "messages": {"type": "array", "minItems": 1, "items": _ref("ChatMessage")},
            "stream": _BOOL,
            "temperature": _NUM,
            "top_p": _NUM,
            "presence_penalty": _NUM,
            "frequency_penalty": _NUM,
            "max_tokens": {"type": "integer", "minimum": 0},
            "max_completion_tokens": {"type": "integer", "minimum": 0},
            "n": {"type": "integer", "minimum": 1},
            "seed": _INT,
            "top_logprobs": _INT,
            "stop": {"anyOf": [_STR, {"type": "array", "items": _STR}]},
            "tools": {"type": "array", "items": _OBJ},
            "tool_choice": {"anyOf": [_STR, _OBJ]},
            "response_format": _OBJ,
            "stream_options": _OBJ,
            "logit_bias": _OBJ,
            "metadata": _OBJ,
            "user": _STR,
        },
    },
    "ChatCompletion": {
        "type": "object",
        "required": ["choices"],
        "properties": {
            "id": _STR,
            "object": _STR,
            "created": _INT,
            "model": _STR,
            "choices": {"type": "array", "items": _OBJ},
            "usage": _NULL_OR(_OBJ),
        },
    },
    "CompletionRequest": {
        "type": "object",
        "required": ["model", "prompt"],
        "properties": {
            "model": {"type": "string", "minLength": 1},
            "prompt": {
                "anyOf": [
                    _STR,
                    {"type": "array", "minItems": 1, "items": _STR},
                    {"type": "array", "minItems": 1, "items": _INT},
                    {"type": "array", "minItems": 1, "items": {"type": "array", "items": _INT}},
                ]
            },
            "stream": _BOOL,
            "temperature": _NUM,
            "top_p": _NUM,
            "max_tokens": {"type": "integer", "minimum": 0},
            "n": {"type": "integer", "minimum": 1},
            "seed": _INT,
            "user": _STR,
            "stop": {"anyOf": [_STR, {"type": "array", "items": _STR}]},
        },
    },
    "EmbeddingRequest": {
        "type": "object",
        "required": ["model", "input"],
        "properties": {
            "model": {"type": "string", "minLength": 1},
            "input": {"anyOf": [_STR, {"type": "array", "minItems": 1, "items": _STR}]},
            "encoding_format": {"enum": ["float", "base64"]},
            "dimensions": {"type": "integer", "minimum": 1},
            "user": _STR,
        },
    },
    "EmbeddingList": {
        "type": "object",
        "required": ["object", "data", "model", "usage"],
        "properties": {
            "object": {"const": "list"},
            "model": _STR,
            "usage": _OBJ,
            "data": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["embedding", "index"],
                    "properties": {
                        "index": _INT,
                        "embedding": {"anyOf": [{"type": "array", "items": _NUM}, _STR]},
                    },
                },
            },
        },
    },
    "Model": {
        "type": "object",
        "required": ["id"],
        "properties": {
            "id": _STR,
            "object": _STR,
            "created": _INT,
            "owned_by": _STR,
            "type": _STR,
            "display_name": _STR,
            "created_at": _STR,
        },
    },
    "ModelList": {
        "type": "object",
        "required": ["data"],
        "properties": {
            "object": _STR,
            "data": {"type": "array", "items": _ref("Model")},
            "has_more": _BOOL,
            "first_id": _NULL_OR(_STR),
            "last_id": _NULL_OR(_STR),
        },
    },
    "AnthropicMessagesRequest": {
        "type": "object",
        "required": ["model", "max_tokens", "messages"],
        "properties": {
            "model": {"type": "string", "minLength": 1},
            "max_tokens": {"type": "integer", "minimum": 1},
            "messages": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["role", "content"],
                    "properties": {
                        "role": {"enum": ["user", "assistant"]},
                        "content": {"anyOf": [_STR, {"type": "array", "items": _OBJ}]},
                    },
                },
            },
            "system": {"anyOf": [_STR, {"type": "array", "items": _OBJ}]},
            "stream": _BOOL,
            "temperature": _NUM,
            "top_p": _NUM,
            "top_k": _INT,
            "stop_sequences": {"type": "array", "items": _STR},
            "tools": {"type": "array", "items": _OBJ},
            "tool_choice": _OBJ,
            "metadata": _OBJ,
        },
    },
    "AnthropicCountTokensRequest": {
        "type": "object",
        "required": ["model", "messages"],
        "properties": {
            "model": {"type": "string", "minLength": 1},
            "messages": {"type": "array", "items": {"type": "object", "required": ["role", "content"]}},
            "system": {"anyOf": [_STR, {"type": "array", "items": _OBJ}]},
            "tools": {"type": "array", "items": _OBJ},
        },
    },
    "AnthropicMessage": {
        "type": "object",
        "required": ["id", "type", "role", "content"],
        "properties": {
            "id": _STR,
            "type": {"const": "message"},
            "role": {"const": "assistant"},
            "model": _STR,
            "content": {"type": "array", "items": _OBJ},
            "stop_reason": _NULL_OR(_STR),
            "usage": _OBJ,
        },
    },
    "RegisterRequest": {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "minLength": 1},
            "scopes": {"type": "array", "items": {"enum": list(SCOPES)}},
            "replace": _BOOL,
            "rate_limit_rpm": _NULL_OR({"type": "integer", "minimum": 0}),
            "daily_token_budget": _NULL_OR({"type": "integer", "minimum": 0}),
            "daily_cost_budget": _NULL_OR({"type": "number", "minimum": 0}),
        },
    },
    "App": {
        "type": "object",
        "required": ["id", "name", "scopes"],
        "properties": {
            "id": _STR,
            "name": _STR,
            "scopes": {"type": "array", "items": _STR},
            "builtin": _BOOL,
            "created_at": _NUM,
            "revoked": _BOOL,
            "token_hint": _STR,
            "token": _STR,
            "rate_limit_rpm": _NULL_OR(_INT),
            "daily_token_budget": _NULL_OR(_INT),
            "daily_cost_budget": _NULL_OR(_NUM),
        },
    },
    "AppLimitsUpdate": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "rate_limit_rpm": _NULL_OR({"type": "integer", "minimum": 0}),
            "daily_token_budget": _NULL_OR({"type": "integer", "minimum": 0}),
            "daily_cost_budget": _NULL_OR({"type": "number", "minimum": 0}),
        },
    },
    "Usage": {
        "type": "object",
        "required": ["data"],
        "properties": {
            "since": _NULL_OR(_NUM),
            "until": _NULL_OR(_NUM),
            "data": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "app": _NULL_OR(_STR),
                        "model": _STR,
                        "requests": _INT,
                        "errors": _INT,
                        "prompt_tokens": _INT,
                        "completion_tokens": _INT,
                        "total_tokens": _INT,
                        "cost": _NUM,
                    },
                },
            },
        },
    },
    "Health": {
        "type": "object",
        "required": ["status"],
        "properties": {"status": _STR, "service": _STR, "version": _STR, "models": _INT},
    },
}


def _json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _errors(family: str, *statuses: int) -> dict[str, Any]:
    schema = _ref("AnthropicError" if family == "anthropic" else "OpenAIError")
    words = {
        400: "Bad JSON, a missing field or a wrong type (the message names the field)",
        401: "Missing, wrong or revoked token",
        403: "Token lacks the scope; foreign Host or Origin",
        404: "Unknown model or resource (the message lists what exists)",
        405: "Method not allowed",
        409: "Already registered",
        413: "Body too large",
        429: "Rate limit or budget exceeded (Retry-After)",
        500: "Internal error",
        502: "Upstream failed after fallbacks",
        503: "Backend queue full (Retry-After)",
        504: "Upstream timed out",
    }
    return {str(s): {"description": words[s], "content": _json_content(schema)} for s in statuses}


_GUARDED = (401, 403, 404, 405, 413)
_INFERENCE = (400, *_GUARDED, 429, 500, 502, 503, 504)


def _op(
    summary: str,
    ok: dict[str, Any],
    *,
    family: str = "openai",
    body: str | None = None,
    errors: tuple[int, ...] = (*_GUARDED, 500),
    ok_status: str = "200",
    params: list | None = None,
    public: bool = False,
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {ok_status: ok, **_errors(family, *errors)}}
    if body:
        op["requestBody"] = {"required": True, "content": _json_content(_ref(body))}
    if params:
        op["parameters"] = params
    if public:
        op["security"] = []
    return op


def _ok(schema_name: str | None, description: str = "OK", *, sse: bool = False) -> dict[str, Any]:
    content = _json_content(_ref(schema_name)) if schema_name else _json_content(_OBJ)
    if sse:
        content["text/event-stream"] = {"schema": _STR}
    return {"description": description, "content": content}


_TIME_PARAMS = [
    {"name": n, "in": "query", "required": False, "schema": _STR, "description": "unix seconds or ISO 8601"}
    for n in ("since", "until")
]

PATHS: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": {
        "post": _op(
            "OpenAI Chat Completions (stream with `stream: true`)",
            _ok("ChatCompletion", sse=True),
            body="ChatCompletionRequest",
            errors=_INFERENCE,
        )
    },
    "/v1/completions": {
        "post": _op(
            "OpenAI legacy completions", _ok(None, sse=True), body="CompletionRequest", errors=_INFERENCE
        )
    },
    "/v1/embeddings": {
        "post": _op("OpenAI embeddings", _ok("EmbeddingList"), body="EmbeddingRequest", errors=_INFERENCE)
    },
    "/v1/models": {
        "get": _op(
            "Models and socket aliases (Anthropic's shape with an anthropic-version header)", _ok("ModelList")
        )
    },
    "/v1/models/{model_id}": {
        "get": _op(
            "One model",
            _ok("Model"),
            params=[{"name": "model_id", "in": "path", "required": True, "schema": _STR}],
        )
    },
    "/v1/messages": {
        "post": _op(
            "Anthropic Messages (stream with `stream: true`)",
            _ok("AnthropicMessage", sse=True),
            family="anthropic",
            body="AnthropicMessagesRequest",
            errors=_INFERENCE,
        )
    },
    "/v1/messages/count_tokens": {
        "post": _op(
            "Anthropic token count",
            _ok(None),
            family="anthropic",
            body="AnthropicCountTokensRequest",
            errors=(400, *_GUARDED, 500),
        )
    },
    "/api/health": {
        "get": _op(
            "Liveness, version, model count (no token needed)",
            _ok("Health"),
            public=True,
            errors=(403, 404, 405, 500),
        )
    },
    "/api/apps/register": {
        "post": _op(
            "Register an app and get its token (apps may give themselves chat and hinata:write; "
            "other scopes need the admin token)",
            _ok("App", "Created"),
            body="RegisterRequest",
            ok_status="201",
            errors=(400, *_GUARDED, 409, 500),
        )
    },
    "/api/apps": {
        "get": _op(
            "Registered apps (admin)",
            _ok(None),
            params=[{"name": "revoked", "in": "query", "required": False, "schema": _STR}],
        )
    },
    "/api/apps/me": {"get": _op("The calling app", _ok("App"))},
    "/api/apps/{app_id}": {
        "delete": _op(
            "Revoke an app's token (admin)",
            _ok("App"),
            params=[{"name": "app_id", "in": "path", "required": True, "schema": _STR}],
        ),
        "patch": _op(
            "Set an app's rate limit and budgets (admin)",
            _ok("App"),
            body="AppLimitsUpdate",
            errors=(400, *_GUARDED, 500),
            params=[{"name": "app_id", "in": "path", "required": True, "schema": _STR}],
        ),
    },
    "/api/models": {"get": _op("Model specs", _ok(None))},
    "/api/models/scan": {"post": _op("Discover models now (admin)", _ok(None))},
    "/api/usage": {
        "get": _op(
            "Requests, tokens and cost per app (or per model with by=model); "
            "apps without admin see their own",
            _ok("Usage"),
            errors=(400, *_GUARDED, 500),
            params=[
                *_TIME_PARAMS,
                {"name": "by", "in": "query", "required": False, "schema": {"enum": ["app", "model"]}},
            ],
        )
    },
    "/api/audit": {
        "get": _op(
            "Latest audit rows (admin)",
            _ok(None),
            errors=(400, *_GUARDED, 500),
            params=[
                {
                    "name": "limit",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                },
                {"name": "app", "in": "query", "required": False, "schema": _STR},
            ],
        )
    },
    "/api/events": {
        "get": _op(
            "Kernel events as server-sent events (admin)",
            {"description": "An endless event stream", "content": {"text/event-stream": {"schema": _STR}}},
        )
    },
    "/metrics": {
        "get": _op(
            "Prometheus metrics (admin)",
            {"description": "Prometheus text format 0.0.4", "content": {"text/plain": {"schema": _STR}}},
        )
    },
    "/openapi.json": {"get": _op("This document", _ok(None), public=True, errors=(403, 404, 405, 500))},
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


def _routes_of(app: web.Application) -> dict[str, dict[str, Any]]:
    """Operations for routes served but not described above (optional route groups)."""
    extra: dict[str, dict[str, Any]] = {}
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        method = route.method.lower()
        if not path or method in ("head", "*") or path in PATHS:
            continue
        params = [
            {"name": name.split(":")[0], "in": "path", "required": True, "schema": _STR}
            for name in _path_params(path)
        ]
        clean = _clean(path)
        family = "anthropic" if clean.startswith("/v1/messages") else "openai"
        extra.setdefault(clean, {})[method] = _op(
            (getattr(route.handler, "__doc__", None) and route.handler.__doc__.strip().splitlines()[0])
            or f"{route.method} {clean}",
            _ok(None),
            params=params or None,
            family=family,
            errors=(400, *_GUARDED, 409, 500, 502, 503),
        )
    return extra


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


def document(app: web.Application | None = None) -> dict[str, Any]:
    paths = {**PATHS, **(_routes_of(app) if app is not None else {})}
    for path, ops in paths.items():
        for method, op in ops.items():
            op["description"] = _scope_note(method, path)
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
