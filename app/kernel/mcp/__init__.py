"""The MCP host: the user's MCP servers (stdio, streamable HTTP, legacy SSE) as tool sources.

`config` (the `mcpServers` JSON shape), `store` (the user's servers in the config dir, secrets in
the keyring), `imports` (Claude Desktop's and Cursor's files), `stdio` (the child process and its
pipes), `connection` (one ClientSession per server: lazy start, restarts with backoff, timeouts,
caches), `source` (a server's tools as `mcp__<server>__<tool>`), `host` (all of it, for the kernel).

Nothing here imports the `mcp` SDK at module level: `byenatos serve` must not pay for it before
a server is used.
"""
