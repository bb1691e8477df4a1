"""The OpenAPI description of /mcp (mcp_server_routes.py): MCP's streamable HTTP transport.

The messages are JSON-RPC 2.0 as the MCP specification defines them (docs/mcp-server.md), not
described again here; the document says where the endpoint is, what it takes and answers.
"""

from __future__ import annotations

from typing import Any

from app.kernel.gateway.openapi_kit import OBJ, STR, json_content, op

_SESSION = {"name": "Mcp-Session-Id", "in": "header", "required": False, "schema": STR,
            "description": "the session the initialize answer named (every request after it)"}
_VERSION = {"name": "Mcp-Protocol-Version", "in": "header", "required": False, "schema": STR,
            "description": "the negotiated protocol version, e.g. 2025-11-25"}
# The transport's own refusals are JSON-RPC error objects (the SDK's), not the API's error shape.
_RPC_ERROR = {"content": {"application/json": {"schema": OBJ}}}
_REFUSED = {
    "400": {**_RPC_ERROR, "description": "not a JSON-RPC message, or a request without its session"},
    "404": {**_RPC_ERROR, "description": "no such session (ended, expired, or opened by another app)"},
    "405": {"description": "not served in this protocol era (e.g. GET or DELETE with a 2026 "
                                         "Mcp-Protocol-Version); no body"},
    "406": {**_RPC_ERROR, "description": "the Accept header lacks application/json or text/event-stream"},
    "413": {**_RPC_ERROR, "description": "the message is larger than the transport takes (4 MiB)"},
}
_MESSAGE = {"description": "JSON-RPC: one answer as JSON, or a stream of messages (progress, then the "
                           "answer) as server-sent events",
            "content": {"application/json": {"schema": OBJ}, "text/event-stream": {"schema": STR}}}

def _with_body(operation: dict[str, Any]) -> dict[str, Any]:
    # Not op(body=…): that documents the API's own 400/413 shape, and these are the SDK's.
    operation["requestBody"] = {"required": True, "content": json_content(OBJ)}
    return operation


PATHS: dict[str, dict[str, Any]] = {
    "/mcp": {
        "post": _with_body(op("MCP over streamable HTTP: send a JSON-RPC message (initialize opens a session). Tools "
                   "and resources check the token's scopes; a missing one is JSON-RPC error -32003",
                   _MESSAGE, params=[_SESSION, _VERSION],
                   also={"202": {"description": "a notification or response was accepted"}, **_REFUSED})),
        "get": op("MCP: the session's stream of server messages (server-sent events)",
                  {"description": "server-sent events", "content": {"text/event-stream": {"schema": STR}}},
                  params=[_SESSION, _VERSION], also=_REFUSED),
        "delete": op("MCP: end the session", {"description": "the session ended"},
                     params=[_SESSION, _VERSION], also=_REFUSED),
    },
}
