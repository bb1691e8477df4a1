"""Errors as each API family's clients expect them.

Two families: OpenAI's `{"error": {"message", "type", "param", "code"}}` (every /v1 route
but Anthropic's, and the ByenatOS /api routes) and Anthropic's
`{"type": "error", "error": {"type", "message"}}` (/v1/messages…). Handlers raise typed
errors; the gateway's middleware turns them into a response of the caller's family here.
Every error response remembers its outcome code (`response["outcome"]`) for the audit log.
"""

from __future__ import annotations

from typing import Any, Literal

import orjson
from pydantic import ValidationError

from app.kernel.errors import (
    BadRequestError,
    ByenatosError,
    ModelNotFoundError,
    OverloadedError,
    RateLimitError,
)
from app.kernel.gateway import web

Family = Literal["openai", "anthropic"]

_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    408: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    503: "overloaded_error",
}
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
}
OVERLOAD_RETRY_AFTER = 1  # seconds: a full queue drains in about a request's time


class RequestError(BadRequestError):
    """A request the gateway refuses before routing it: bad JSON, a missing or mistyped field."""

    def __init__(
        self, message: str, *, param: str | None = None, code: str = "invalid_request", status: int = 400
    ) -> None:
        super().__init__(message)
        self.param = param
        self.code = code
        self.status = status


def family_of(path: str) -> Family:
    return "anthropic" if path.startswith("/v1/messages") else "openai"


def validation_message(e: ValidationError) -> str:
    """One readable line per problem: `messages.0.role: Input should be 'system', 'user'…`."""
    parts = []
    for err in e.errors(include_url=False)[:10]:
        loc = ".".join(str(x) for x in err["loc"]) or "body"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def _json(body: Any, status: int, headers: dict[str, str] | None, outcome: str) -> web.Response:
    response = web.Response(
        body=orjson.dumps(body), status=status, content_type="application/json", headers=headers
    )
    response["outcome"] = outcome
    return response


def error_response(
    family: Family,
    status: int,
    message: str,
    *,
    code: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    if family == "anthropic":
        kind = _ANTHROPIC_TYPES.get(status, "api_error")
        return _json(
            {"type": "error", "error": {"type": kind, "message": message}}, status, headers, code or kind
        )
    kind = _OPENAI_TYPES.get(status, "api_error")
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return _json(body, status, headers, code or kind)


def error_from(family: Family, exc: ByenatosError) -> web.Response:
    """The response for a typed error, with Retry-After where the caller should come back."""
    headers: dict[str, str] = {}
    status = exc.status if 400 <= exc.status < 600 and exc.status != 499 else 500
    if isinstance(exc, RateLimitError) and exc.retry_after is not None:
        headers["Retry-After"] = str(max(1, int(exc.retry_after + 0.999)))
    elif isinstance(exc, OverloadedError):
        status = 503
        headers["Retry-After"] = str(OVERLOAD_RETRY_AFTER)
    if family == "anthropic":
        if isinstance(exc, RequestError):  # the gateway's own refusals keep their status (413…)
            return error_response(family, exc.status, exc.message, code=exc.code)
        from app.kernel.compat.anthropic import anthropic_error  # only Anthropic callers need it

        reply = anthropic_error(exc)
        body = reply.body
        if isinstance(exc, OverloadedError):
            body = {"type": "error", "error": {"type": "overloaded_error", "message": exc.message}}
        else:
            status = reply.status
        response = _json(body, status, {**reply.headers, **headers}, exc.code)
        return response
    param = getattr(exc, "param", None) or ("model" if isinstance(exc, ModelNotFoundError) else None)
    body = {
        "error": {
            "message": str(exc),
            "type": _OPENAI_TYPES.get(status, "api_error"),
            "param": param,
            "code": exc.code,
        }
    }
    return _json(body, status, headers, exc.code)


def openai_stream_error(exc: ByenatosError) -> bytes:
    """The `data:` event sent when a stream fails after it started (headers are gone by then)."""
    body = {
        "error": {"message": str(exc), "type": _OPENAI_TYPES.get(exc.status, "api_error"), "code": exc.code}
    }
    return b"data: " + orjson.dumps(body) + b"\n\n"
