"""ByenatOS as an MCP server: the user's memory, PSP, socket and agents for any MCP client.

Claude Desktop, Cursor, Claude Code and every other MCP client reach the same tools and
resources two ways: `byenatos mcp serve` over stdio (app/cli/mcp_serve.py) and `/mcp` on the
gateway over streamable HTTP (app/kernel/gateway/mcp_server_routes.py). Both serve one
low-level `mcp.server.Server` built here (`build_server`), so initialization, ping, paginated
lists, cancellation, progress and JSON-RPC errors are the SDK's, and the scope rules are ours,
checked per request against the caller's app token exactly as the HTTP API checks them.

    tools.py      the seven tools: their schemas, the scope each needs, what each calls
    resources.py  the current PSP, the latest records, one resource per record
    server.py     the Server: lists (scope-filtered, paginated), calls, errors
    stdio.py      serving it over stdio: an in-process kernel, or a relay to a running one's /mcp

The `mcp` SDK is imported inside these modules' functions only when an MCP server is served:
`byenatos serve` does not load it at start-up (the gateway's /mcp route group is lazy too).
"""

from __future__ import annotations

MCP_SERVER_NAME = "byenatos"
# JSON-RPC error codes of our own, in the band MCP leaves to implementations (-32000..-32019;
# -32000 and -32001 are the SDK's, -32002 is retired): a caller without the scope a tool or
# resource needs, and a token that stopped working during the session.
MISSING_SCOPE = -32003
INVALID_TOKEN = -32004
