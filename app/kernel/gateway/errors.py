"""Errors as each API family's clients expect them."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web
from pydantic import ValidationError

from app.kernel.errors import ByenatosError, ModelNotFoundError, RateLimitError

_OPENAI_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                 404: "invalid_request_error", 429: "rate_limit_error"}


def validation_message(e: ValidationError) -> str:
    """One readable line per problem: `messages.0.role: Input should be 'system', 'user'…`."""
    parts = []
    for err in e.errors(include_url=False)[:10]:
        loc = ".".join(str(x) for x in err["loc"]) or "body"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def openai_error(status: int, message: str, *, code: str | None = None, param: str | None = None,
                 headers: dict[str, str] | None = None) -> web.Response:
    body: dict[str, Any] = {"error": {"message": message, "type": _OPENAI_TYPES.get(status, "api_error"),
                                      "param": param, "code": code}}
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json", headers=headers)


def openai_error_from(exc: ByenatosError) -> web.Response:
    headers = {}
    if isinstance(exc, RateLimitError) and exc.retry_after is not None:
        headers["Retry-After"] = str(int(exc.retry_after + 0.999))
    status = exc.status if 400 <= exc.status < 600 and exc.status != 499 else 500
    param = "model" if isinstance(exc, ModelNotFoundError) else None
    return openai_error(status, str(exc), code=exc.code, param=param, headers=headers)


def openai_error_payload(exc: ByenatosError) -> bytes:
    """The `data:` line sent when a stream fails after it started (headers are gone by then)."""
    return orjson.dumps({"error": {"message": str(exc), "type": _OPENAI_TYPES.get(exc.status, "api_error"),
                                   "code": exc.code}})
