"""/api/mcp: the MCP servers the kernel hosts (list, add, get, remove, test; their tools,
resources and prompts) and the servers Claude Desktop and Cursor have, offered for import.

Every route needs the `admin` scope (the default of `middleware.required_scope`): a server is a
program the user's agents run, and its settings hold references to the user's secrets. Secrets
are sent once (`secret_env`, `secret_headers`), kept in the keyring, and never shown again:
answers show the `${secret:…}` reference. Imports take `claude` or `cursor`, never a path: the
daemon reads no file a caller names.

A server that cannot start or answer is a state of that server, not a failure of the API: its
`/tools`, `/resources` and `/prompts` answer 200 with an empty `data` and a `problem` (`kind`,
and the host's sentence saying why), as `/test` answers with its report (`ok`, `problem`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from app.kernel.errors import BadRequestError, NotFoundError
from app.kernel.gateway import web
from app.kernel.gateway.bodies import read_json
from app.kernel.gateway.errors import RequestError
from app.kernel.gateway.keys import KERNEL

if TYPE_CHECKING:
    from app.kernel.mcp.host import McpHost

ADD_FIELDS = ("name", "config", "secret_env", "secret_headers", "replace")
IMPORT_FIELDS = ("source", "names", "replace")
IMPORT_SOURCES = ("claude", "cursor")
MAX_SECRET = 16_384
MAX_TEST_TIMEOUT_S = 120.0


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _host(request: web.Request) -> McpHost:
    return request.app[KERNEL].mcp


def _name(request: web.Request) -> str:
    from app.kernel.mcp.config import check_name

    raw = request.match_info["name"]
    try:
        return check_name(raw)
    except BadRequestError:
        raise NotFoundError(f"no MCP server named {raw!r}") from None


def _unknown_fields(body: dict[str, Any], known: tuple[str, ...]) -> None:
    unknown = sorted(set(body) - set(known))
    if unknown:
        raise RequestError(f"{unknown[0]}: not a field of this request (fields: {', '.join(known)})",
                           param=unknown[0])


def _secrets(body: dict[str, Any], field: str) -> dict[str, str]:
    value = body.get(field) or {}
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and k and isinstance(v, str) and 0 < len(v) <= MAX_SECRET for k, v in value.items()):
        raise RequestError(f"{field}: an object of names to non-empty strings (at most {MAX_SECRET} characters)",
                           param=field)
    return value


async def list_servers(request: web.Request) -> web.Response:
    host = _host(request)
    return _json({"data": host.servers(), "problem": host.store.problem})


async def add_server(request: web.Request) -> web.Response:
    from app.kernel.mcp.config import check_name, parse

    body = await read_json(request)
    _unknown_fields(body, ADD_FIELDS)
    name = body.get("name")
    try:
        check_name(name)
    except BadRequestError as e:
        raise RequestError(f"name: {e}", param="name") from None
    if not isinstance(body.get("config"), dict):
        raise RequestError('config: the server\'s entry, e.g. {"command": "uvx", "args": ["mcp-server-time"]}',
                           param="config")
    replace = body.get("replace", False)
    if not isinstance(replace, bool):
        raise RequestError("replace: true or false", param="replace")
    try:
        config = parse(name, body["config"])
    except BadRequestError as e:
        raise RequestError(str(e), param="config") from None
    secret_env, secret_headers = _secrets(body, "secret_env"), _secrets(body, "secret_headers")
    added = _host(request).add(name, config, secret_env=secret_env, secret_headers=secret_headers, replace=replace)
    return _json(added, status=201)


async def get_server(request: web.Request) -> web.Response:
    return _json(_host(request).describe(_name(request)))


async def remove_server(request: web.Request) -> web.Response:
    return _json(await _host(request).remove(_name(request)))


async def test_server(request: web.Request) -> web.Response:
    raw = request.query.get("timeout", "30")
    try:
        timeout = float(raw)
    except ValueError:
        timeout = -1.0
    if not 0 < timeout <= MAX_TEST_TIMEOUT_S:
        raise RequestError(f"timeout: seconds, more than 0 and at most {MAX_TEST_TIMEOUT_S:g}", param="timeout")
    return _json(await _host(request).test(_name(request), timeout=timeout))


async def _listing(request: web.Request, what: str) -> web.Response:
    from app.kernel.mcp.connection import ServerError

    host = _host(request)
    name = _name(request)
    host.store.get(name)  # 404 for a server that is not configured
    try:
        data = await getattr(host, what)(name)
    except ServerError as e:
        return _json({"data": [], "problem": {"kind": e.kind, "message": str(e)}})
    return _json({"data": data, "problem": None})


async def server_tools(request: web.Request) -> web.Response:
    return await _listing(request, "tools")


async def server_resources(request: web.Request) -> web.Response:
    return await _listing(request, "resources")


async def server_prompts(request: web.Request) -> web.Response:
    return await _listing(request, "prompts")


async def list_imports(request: web.Request) -> web.Response:
    return _json({"data": [f.describe() for f in _host(request).offers()]})


async def run_import(request: web.Request) -> web.Response:
    body = await read_json(request)
    _unknown_fields(body, IMPORT_FIELDS)
    source = body.get("source")
    if source not in IMPORT_SOURCES:
        raise RequestError(f"source: one of {', '.join(IMPORT_SOURCES)}", param="source")
    names = body.get("names")
    if names is not None and (not isinstance(names, list) or not all(isinstance(n, str) for n in names)):
        raise RequestError("names: a list of the servers to import (null: every one offered)", param="names")
    replace = body.get("replace", False)
    if not isinstance(replace, bool):
        raise RequestError("replace: true or false", param="replace")
    host = _host(request)
    return _json(host.import_from(host.find_offer(source), names, replace=replace))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/mcp/servers", list_servers)
    app.router.add_post("/api/mcp/servers", add_server)
    app.router.add_get("/api/mcp/servers/{name}", get_server)
    app.router.add_delete("/api/mcp/servers/{name}", remove_server)
    app.router.add_post("/api/mcp/servers/{name}/test", test_server)
    app.router.add_get("/api/mcp/servers/{name}/tools", server_tools)
    app.router.add_get("/api/mcp/servers/{name}/resources", server_resources)
    app.router.add_get("/api/mcp/servers/{name}/prompts", server_prompts)
    app.router.add_get("/api/mcp/imports", list_imports)
    app.router.add_post("/api/mcp/imports", run_import)
