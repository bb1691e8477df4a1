"""The words the gateway's hand-written OpenAPI description is written in.

JSON Schema shorthands, and builders for an operation, its success response and its error
responses (each in its API family's error shape). The descriptions themselves live in
`openapi.py` (OpenAI, Anthropic, apps, usage…), `openapi_socket.py` and `openapi_personal.py`.
"""

from __future__ import annotations

from typing import Any

OBJ: dict[str, Any] = {"type": "object"}
STR: dict[str, Any] = {"type": "string"}
INT: dict[str, Any] = {"type": "integer"}
NUM: dict[str, Any] = {"type": "number"}
BOOL: dict[str, Any] = {"type": "boolean"}
ANY: dict[str, Any] = {}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(required: tuple[str, ...] = (), closed: bool = False, **properties: Any) -> dict[str, Any]:
    """An object schema; `closed` when the handler refuses fields it does not know."""
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    if closed:
        schema["additionalProperties"] = False
    return schema


def json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


ERROR_WORDS = {
    400: "Bad JSON, a missing field or a wrong type (the message names the field)",
    401: "Missing, wrong or revoked token",
    403: "Token lacks the scope, or a foreign Host or Origin",
    404: "Unknown model or resource (the message lists what exists)",
    409: "Already registered",
    413: "Body too large",
    429: "Rate limit or budget exceeded (Retry-After)",
    500: "The backend failed in a way no other status describes",
    502: "Upstream failed after fallbacks",
    503: "Backend queue full (Retry-After), or the model was swapped out mid-request",
    504: "Upstream timed out",
}

# What the guard can answer for any operation: a foreign Host or Origin is refused (403).
HOST = (403,)
# …for an operation that needs a token: none or a bad one (401), a missing scope (403).
AUTH = (401, 403)
# …for an operation that reads a JSON body: bad JSON or a bad field (400), too large (413).
BODY = (400, 413)
# …for an operation served by a model: it may be unknown (404), the app over its limits (429),
# and the backend may fail in every way an upstream can (its 4xx pass through as 400/401/403/404).
UPSTREAM = (404, 429, 500, 502, 503, 504)


def errors(family: str, statuses: tuple[int, ...]) -> dict[str, Any]:
    schema = ref("AnthropicError" if family == "anthropic" else "OpenAIError")
    return {
        str(s): {"description": ERROR_WORDS[s], "content": json_content(schema)}
        for s in sorted(set(statuses))
    }


def op(
    summary: str,
    ok: dict[str, Any],
    *,
    family: str = "openai",
    body: dict[str, Any] | None = None,
    body_required: bool = True,
    errors_: tuple[int, ...] = (),
    ok_status: str = "200",
    params: list[dict[str, Any]] | None = None,
    auth: str = "token",
    also: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """One operation. `auth`: "token" (the default), "public" or "optional" (a token only adds rights).

    `body` is a content map (`json_content(...)` or several media types); reading one adds 400 and 413.
    `also`: other success responses by status.
    """
    statuses = HOST + (AUTH if auth != "public" else ()) + (BODY if body else ()) + errors_
    operation: dict[str, Any] = {
        "summary": summary,
        "responses": {ok_status: ok, **(also or {}), **errors(family, statuses)},
    }
    if body:
        operation["requestBody"] = {"required": body_required, "content": body}
    if params:
        operation["parameters"] = params
    if auth == "public":
        operation["security"] = []
    elif auth == "optional":
        operation["security"] = [{}, {"bearer": []}, {"apiKey": []}]
    return operation


def sse_event(names: list[str] | None = None, data: str = "JSON") -> dict[str, Any]:
    """One server-sent event, as OpenAPI 3.1 documents an event stream (its `schema` is per event)."""
    return obj(
        ("data", "event"),
        event={"enum": names} if names else STR,
        data={"type": "string", "description": data},
        id=STR,
        retry=INT,
    )


OPENAI_SSE = sse_event(["message"], "a JSON chunk, then `[DONE]`")


def ok(
    schema: dict[str, Any] | None = None, description: str = "OK", *, sse: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A JSON answer; with `sse` (an event's schema) also a stream, for requests with `stream: true`."""
    content = json_content(schema if schema is not None else OBJ)
    if sse:
        content["text/event-stream"] = {"schema": sse}
    return {"description": description, "content": content}


def no_content(description: str = "Done") -> dict[str, Any]:
    return {"description": description}


def path_param(name: str, description: str = "", schema: dict[str, Any] | None = None) -> dict[str, Any]:
    param: dict[str, Any] = {"name": name, "in": "path", "required": True, "schema": schema or STR}
    if description:
        param["description"] = description
    return param


def query(name: str, schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    param: dict[str, Any] = {"name": name, "in": "query", "required": False, "schema": schema}
    if description:
        param["description"] = description
    return param
