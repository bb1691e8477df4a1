"""The gateway's hook for the Personal System Prompt.

`apply` is called by the chat routes (OpenAI and Anthropic alike, on the canonical OpenAI
JSON body) after authentication and before routing. It merges the app's PSP into the body's
system prompt in place (after the app's own instructions, never replacing them) and returns
the PSP version it injected, which the route sends back in the `X-ByenatOS-PSP-Version`
header; None means nothing was injected (app not opted in, paused, nothing to say, or a
failure — personalization never fails a chat request).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from app.kernel.errors import ByenatosError

if TYPE_CHECKING:
    from app.kernel.kernel import Kernel

log = logging.getLogger(__name__)

PSP_VERSION_HEADER = "X-ByenatOS-PSP-Version"


def wants(kernel: Kernel, app_id: str | None) -> bool:
    """Whether `apply` would look for a PSP for this app at all (the cheap checks)."""
    personal = getattr(kernel, "personal", None)
    return not (personal is None or app_id is None or personal.paused or not personal.injection(app_id))


async def apply(
    kernel: Kernel, app_id: str | None, scopes: frozenset[str], body: dict[str, Any]
) -> str | None:
    if not wants(kernel, app_id):
        return None  # the cheap checks first: most requests stop here
    try:
        _, spec = kernel.resolve(str(body.get("model") or "default"))
        window = spec.context_window
    except ByenatosError:
        window = None  # the router will report the unknown model; size the PSP for a small window
    try:
        return await kernel.personal.apply(app_id, scopes, body, window)
    except Exception:
        log.exception("building the PSP for %s failed; the request goes out without it", app_id)
        return None
