"""The Responses API's refusals: each names the field (`param`) the way OpenAI's errors do.

The gateway renders them in OpenAI's format (`{"error": {"message", "type", "param", "code"}}`,
`app.kernel.gateway.errors.error_from` reads `param` off the exception).
"""

from __future__ import annotations

from app.kernel.errors import BadRequestError, NotFoundError


class InvalidFieldError(BadRequestError):
    """A field of a Responses request that cannot be served as given."""

    code = "invalid_value"

    def __init__(self, message: str, *, param: str) -> None:
        super().__init__(message)
        self.param = param


class ResponseNotFoundError(NotFoundError):
    """No stored response of this id for the calling app (another app's ids are not found either)."""

    def __init__(self, message: str, *, param: str | None = None, code: str = "not_found") -> None:
        super().__init__(message)
        self.param = param
        self.code = code
