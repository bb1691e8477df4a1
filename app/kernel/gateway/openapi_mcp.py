"""The OpenAPI description of /api/mcp (mcp_routes.py): the MCP servers the kernel hosts."""

from __future__ import annotations

from typing import Any

from app.kernel.gateway.mcp_routes import IMPORT_SOURCES, MAX_SECRET, MAX_TEST_TIMEOUT_S
from app.kernel.gateway.openapi_kit import (
    INT,
    NUM,
    STR,
    json_content,
    nullable,
    obj,
    ok,
    op,
    path_param,
    query,
    ref,
)
from app.kernel.mcp.config import MAX_NAME, TRANSPORTS
from app.kernel.mcp.connection import KINDS

_BOOL = {"type": "boolean"}
_NAME = {"type": "string", "pattern": r"^[A-Za-z0-9](?:[A-Za-z0-9-]|_(?!_))*$", "maxLength": MAX_NAME,
         "description": "letters, digits, '-' and single '_'; its tools are named mcp__<name>__<tool>"}
_STRINGS = {"type": "object", "additionalProperties": STR}
_SECRETS = {"type": "object", "additionalProperties": {"type": "string", "minLength": 1, "maxLength": MAX_SECRET}}
_PROBLEM = obj(("kind", "message"), kind={"enum": list(KINDS)},
               message={**STR, "description": "what went wrong, in plain words (a stderr tail on later lines)"})

SCHEMAS: dict[str, Any] = {
    "McpServerConfig": {
        **obj(
            command={**STR, "description": "the program that runs a local server over stdio"},
            args={"type": "array", "items": STR},
            env={**_STRINGS, "description": "its environment; a value may be ${secret:NAME} (the keyring) "
                                            "or ${env:NAME} (ByenatOS's environment)"},
            cwd=STR,
            url={**STR, "description": "a remote server's endpoint"},
            transport={"enum": [t for t in TRANSPORTS if t != "stdio"] + ["stdio"],
                       "description": "default: stdio with `command`, streamable_http with `url` (sse for a "
                                      "url ending in /sse); `type` is read too, as other apps write it"},
            headers={**_STRINGS, "description": "HTTP headers for `url`; values may be ${secret:NAME}"},
            timeout={"type": "number", "exclusiveMinimum": 0, "maximum": 3600, "default": 60,
                     "description": "seconds one call may take"},
            disabled={**_BOOL, "default": False},
        ),
        "description": "one entry of `mcpServers`, as Claude Desktop and Cursor write it",
        "oneOf": [{"required": ["command"]}, {"required": ["url"]}],
    },
    "McpServerStatus": obj(
        ("state",),
        state={"enum": ["stopped", "starting", "ready", "crashed", "failed"]},
        pid=nullable(INT), started_at=nullable(NUM), restarts=INT, tools=nullable(INT),
        server=nullable(obj(name=STR, version=STR, protocol=STR)),
        error=nullable(STR), error_kind=nullable({"enum": list(KINDS)}),
        retry_in_s=nullable({**NUM, "description": "seconds until a crashed server may start again"}),
    ),
    "McpServer": obj(
        ("name", "kind", "config", "disabled", "status"),
        name=STR, kind={"enum": list(TRANSPORTS)}, config=ref("McpServerConfig"), disabled=_BOOL,
        status=ref("McpServerStatus"),
    ),
    "McpServerList": obj(("data",), data={"type": "array", "items": ref("McpServer")},
                         problem=nullable({**STR, "description": "why mcp.json (or an entry) could not be read"})),
    "McpServerAdd": obj(
        ("name", "config"), closed=True,
        name=_NAME, config=ref("McpServerConfig"),
        secret_env={**_SECRETS, "description": "environment variables whose values go to the keyring"},
        secret_headers={**_SECRETS, "description": "headers whose values go to the keyring"},
        replace={**_BOOL, "default": False},
    ),
    "McpTool": obj(("name", "mcp_name", "description", "input_schema"),
                   name={**STR, "description": "its name for agents: mcp__<server>__<tool>"},
                   mcp_name={**STR, "description": "its name on the server"}, description=STR,
                   input_schema={"type": "object"}),
    "McpTestReport": obj(
        ("name", "kind", "ok", "problem"),
        name=STR, kind={"enum": list(TRANSPORTS)}, ok=_BOOL, problem=nullable(_PROBLEM),
        started_ms=NUM, server=obj(name=STR, version=STR, protocol=STR),
        tools={"type": "array", "items": ref("McpTool")}, resources=INT, prompts=INT,
    ),
    "McpToolList": obj(("data", "problem"), data={"type": "array", "items": ref("McpTool")},
                       problem=nullable(_PROBLEM)),
    "McpResourceList": obj(("data", "problem"), data={"type": "array", "items": obj(
        ("uri", "name"), uri=STR, name=STR, description=nullable(STR), mime_type=nullable(STR))},
        problem=nullable(_PROBLEM)),
    "McpPromptList": obj(("data", "problem"), data={"type": "array", "items": obj(
        ("name",), name=STR, description=nullable(STR),
        arguments={"type": "array", "items": obj(name=STR, description=nullable(STR), required=_BOOL)})},
        problem=nullable(_PROBLEM)),
    "McpImportOffers": obj(("data",), data={"type": "array", "items": obj(
        ("app", "label", "path", "servers"), app={"enum": list(IMPORT_SOURCES)}, label=STR, path=STR,
        problem=nullable(STR),
        servers={"type": "array", "items": obj(
            source_name=STR, name=STR, problem=nullable(STR), notes={"type": "array", "items": STR},
            config=nullable(ref("McpServerConfig")),
            secret_env={"type": "array", "items": STR, "description": "names whose values will go to the keyring"},
            secret_headers={"type": "array", "items": STR})})}),
    "McpImport": obj(("source",), closed=True, source={"enum": list(IMPORT_SOURCES)},
                     names=nullable({"type": "array", "items": STR}), replace={**_BOOL, "default": False}),
    "McpImported": obj(
        ("source", "path", "imported", "skipped"), source=STR, path=STR,
        imported={"type": "array", "items": obj(name=STR, **{"from": STR}, notes={"type": "array", "items": STR},
                                                 secrets=INT)},
        skipped={"type": "array", "items": obj(name=STR, why=STR)}),
}

_SERVER = path_param("name", "the server's name", _NAME)


def _listing(what: str, schema: str) -> dict[str, Any]:
    return {"get": op(f"A server's {what}, from the server (started if it must be); a server that cannot "
                      "start or answer gives an empty list and a `problem` saying why (admin)",
                      ok(ref(schema)), params=[_SERVER], errors_=(404,))}


PATHS: dict[str, dict[str, Any]] = {
    "/api/mcp/servers": {
        "get": op("The MCP servers ByenatOS hosts, with their state (admin)", ok(ref("McpServerList"))),
        "post": op("Add an MCP server; secrets go to the keyring (admin)", ok(ref("McpServer"), "Added"),
                   body=json_content(ref("McpServerAdd")), ok_status="201"),
    },
    "/api/mcp/servers/{name}": {
        "get": op("One MCP server (admin)", ok(ref("McpServer")), params=[_SERVER], errors_=(404,)),
        "delete": op("Remove an MCP server, stop it, forget its secrets (admin)", ok(ref("McpServer"), "Removed"),
                     params=[_SERVER], errors_=(404,)),
    },
    "/api/mcp/servers/{name}/test": {
        "post": op("Start the server afresh, list what it offers, stop it; `problem` says what went wrong (admin)",
                   ok(ref("McpTestReport")),
                   params=[_SERVER, query("timeout", {"type": "number", "exclusiveMinimum": 0,
                                                      "maximum": MAX_TEST_TIMEOUT_S, "default": 30},
                                          "seconds for each step")],
                   errors_=(400, 404)),
    },
    "/api/mcp/servers/{name}/tools": _listing("tools", "McpToolList"),
    "/api/mcp/servers/{name}/resources": _listing("resources", "McpResourceList"),
    "/api/mcp/servers/{name}/prompts": _listing("prompts", "McpPromptList"),
    "/api/mcp/imports": {
        "get": op("Claude Desktop's and Cursor's MCP servers not added here yet (admin)", ok(ref("McpImportOffers"))),
        "post": op("Import servers from Claude Desktop or Cursor; their env and header values go to the "
                   "keyring (admin)", ok(ref("McpImported")), body=json_content(ref("McpImport")),
                   errors_=(404,)),
    },
}
