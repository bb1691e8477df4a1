"""The gateway's hook for the Personal System Prompt (filled in by the personalization work).

`apply` is called by the chat routes (OpenAI and Anthropic alike, on the canonical OpenAI
JSON body) after authentication and before routing. It may add or merge a system message
in `body["messages"]` in place and returns the PSP version it injected, which the route
sends back in the `X-ByenatOS-PSP-Version` header; None means nothing was injected.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.kernel.kernel import Kernel

PSP_VERSION_HEADER = "X-ByenatOS-PSP-Version"


async def apply(kernel: Kernel, app_id: str | None, scopes: frozenset[str], body: dict[str, Any]) -> str | None:
    return None
