"""The MCP server over stdio, two ways (`byenatos mcp serve` picks one; app/cli/mcp_serve.py).

- `relay(url, token)`: ByenatOS already runs (`byenatos serve` or the desktop app). A second
  kernel on the same home would run the user's agents twice and fight over the socket, so this
  process holds no kernel: it relays each JSON-RPC message between stdio and the running
  gateway's /mcp, with the app token, through the SDK's own streamable-HTTP client transport.
  Everything the client sees (tools, scopes, errors, progress, cancellation) is the daemon's.
- `serve_in_process(kernel, token)`: nothing runs; the kernel runs in this process, for as
  long as the MCP client keeps it (an agent it spawns goes on when ByenatOS next starts).

While serving, fd 1 is the protocol's: the SDK points the process's own stdout at stderr, so
a stray print (or a C library's output) cannot corrupt the JSON-RPC stream.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from app.kernel.mcp_server.server import PAGE_SIZE, build_server, fixed_identity

if TYPE_CHECKING:
    from app.kernel.kernel import Kernel

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 30.0
READ_TIMEOUT_S = 600.0  # a tool call may wait that long (agents_status wait_s)


async def serve_in_process(kernel: Kernel, token: str, *, page_size: int = PAGE_SIZE,
                           stdin: Any = None, stdout: Any = None) -> None:
    """Serve the kernel's MCP server on stdio until the client closes stdin."""
    from mcp.server.stdio import stdio_server

    server = build_server(kernel, fixed_identity(kernel, token), page_size=page_size)
    async with stdio_server(stdin, stdout) as (read, write):
        await server.run(read, write, server.create_initialization_options())


async def relay(url: str, token: str, *, stdin: Any = None, stdout: Any = None) -> None:
    """Relay stdio ⇄ the running gateway's /mcp until the client closes stdin."""
    import anyio
    import httpx2
    from mcp.client.streamable_http import streamable_http_client
    from mcp.server.stdio import stdio_server

    headers = {"Authorization": f"Bearer {token}"}
    timeout = httpx2.Timeout(CONNECT_TIMEOUT_S, read=READ_TIMEOUT_S)
    async with (httpx2.AsyncClient(headers=headers, timeout=timeout, trust_env=False) as http,
                streamable_http_client(url, http_client=http) as (from_daemon, to_daemon),
                stdio_server(stdin, stdout) as (from_client, to_client),
                anyio.create_task_group() as tg):

        async def upstream() -> None:
            async for message in from_client:
                if isinstance(message, Exception):  # a line that is not JSON-RPC: the SDK logs it too
                    log.warning("ignored a message from the MCP client that is not JSON-RPC: %s", message)
                    continue
                await to_daemon.send(message)
            tg.cancel_scope.cancel()  # the client closed stdin: end the session (DELETE /mcp)

        async def downstream() -> None:
            async for message in from_daemon:
                if isinstance(message, Exception):
                    log.warning("ByenatOS's /mcp: %s", message)
                    continue
                await to_client.send(message)
            tg.cancel_scope.cancel()

        tg.start_soon(upstream)
        tg.start_soon(downstream)
