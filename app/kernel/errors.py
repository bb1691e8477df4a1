"""Typed errors shared by every driver, the router and the gateway.

Each error knows whether retrying it can help (`retryable`) and which HTTP status the
gateway should answer with; drivers map their vendor's failures onto these classes so
nothing above them ever looks at a vendor's status codes or exception types.
"""

from __future__ import annotations

import re


class ByenatosError(Exception):
    """Base of every error the kernel raises on purpose."""

    status: int = 500
    code: str = "internal_error"
    retryable: bool = False

    def __init__(self, message: str, *, provider: str | None = None, model: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.model = model

    def __str__(self) -> str:
        where = "/".join(p for p in (self.provider, self.model) if p)
        return f"{self.message} [{where}]" if where else self.message


class ConfigError(ByenatosError):
    """Settings or registry content that cannot work as given (a user mistake, not a bug)."""

    status = 400
    code = "config_error"


class BadRequestError(ByenatosError):
    """The request itself is wrong; the same request will fail anywhere."""

    status = 400
    code = "invalid_request_error"


class AuthenticationError(ByenatosError):
    """The upstream refused the key (missing, wrong, revoked) or the caller's token."""

    status = 401
    code = "authentication_error"


class PermissionDeniedError(ByenatosError):
    status = 403
    code = "permission_denied"


class NotFoundError(ByenatosError):
    """An unknown model or provider."""

    status = 404
    code = "not_found_error"


class ModelNotFoundError(NotFoundError):
    code = "model_not_found"

    def __init__(self, message: str, *, available: list[str] | None = None, **kw: str | None) -> None:
        super().__init__(message, **kw)
        self.available = available or []


class ContextWindowExceededError(BadRequestError):
    """The prompt does not fit the model's window; the router falls over to a larger one."""

    code = "context_length_exceeded"


class RateLimitError(ByenatosError):
    status = 429
    code = "rate_limit_exceeded"
    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: str | None) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class UpstreamUnavailableError(ByenatosError):
    """Refused connection, 5xx, dropped connection: the backend may recover."""

    status = 502
    code = "upstream_unavailable"
    retryable = True


class UpstreamUnreachableError(UpstreamUnavailableError):
    """The connection itself failed (refused, no route): the request never reached the
    backend, so failing over at once is always safe and retrying the same one is pointless."""

    code = "upstream_unreachable"


class EmptyAnswerError(UpstreamUnavailableError):
    """The backend answered with nothing in it (no event, no content, no tokens): never a
    success. Retryable before anything reached the client, like any 502."""

    code = "empty_answer"


class SwappedOutError(ByenatosError):
    """An IMMEDIATE swap took the model away while this request was running on it."""

    status = 503
    code = "model_swapped"
    retryable = True


class UpstreamTimeoutError(ByenatosError):
    status = 504
    code = "upstream_timeout"
    retryable = True


class OverloadedError(ByenatosError):
    """Our own queue is full; the caller should come back later."""

    status = 503
    code = "overloaded"
    retryable = True


class CancelledByUserError(ByenatosError):
    status = 499
    code = "cancelled"


class NotSupportedError(ByenatosError):
    """The driver or model cannot do this (embeddings on a chat-only backend, load on a cloud API)."""

    status = 400
    code = "not_supported"


_CONTEXT_RE = re.compile(
    r"context[ _-]?(length|window)|maximum context|too many tokens|prompt is too long|"
    r"exceeds? (the )?(model'?s? )?(max|context)|input length.*exceed|n_ctx",
    re.IGNORECASE,
)


def looks_like_context_overflow(message: str) -> bool:
    """Vendors report an overlong prompt as a plain 400 with differing words; recognise them."""
    return bool(_CONTEXT_RE.search(message or ""))


def from_http_status(
    status: int,
    message: str,
    *,
    provider: str | None = None,
    model: str | None = None,
    retry_after: float | None = None,
) -> ByenatosError:
    """Map an upstream HTTP failure to the typed error every layer above understands."""
    kw = {"provider": provider, "model": model}
    if status in (401,):
        return AuthenticationError(message or "authentication failed", **kw)
    if status == 403:
        return PermissionDeniedError(message or "permission denied", **kw)
    if status == 404:
        return NotFoundError(message or "not found", **kw)
    if status == 408:
        return UpstreamTimeoutError(message or "upstream timed out", **kw)
    if status == 429:
        return RateLimitError(message or "rate limited", retry_after=retry_after, **kw)
    if status == 413 or (400 <= status < 500 and looks_like_context_overflow(message)):
        return ContextWindowExceededError(message or "context window exceeded", **kw)
    if 400 <= status < 500:
        return BadRequestError(message or f"bad request ({status})", **kw)
    if status in (504, 524):
        return UpstreamTimeoutError(message or "upstream timed out", **kw)
    return UpstreamUnavailableError(message or f"upstream error ({status})", **kw)


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # HTTP-date form: rare from LLM APIs; the router's own backoff applies
