"""The MCP server itself: the SDK's low-level `Server` with ByenatOS's tools and resources.

Why the low-level Server and not MCPServer (the SDK's FastMCP): our lists depend on who asks
(a token without `admin` is not shown socket_swap) and are paginated with cursors, and a call
without its scope must be a JSON-RPC error naming the scope, not a tool result. MCPServer
builds one fixed, unpaginated list from decorated functions and turns every exception into a
tool result. The low-level Server leaves the lists and errors to us and keeps what the SDK
owns: the initialize handshake and capability negotiation (and the 2026 discover era), ping,
cancellation (`notifications/cancelled` cancels the handler), progress
(`ctx.session.report_progress`) and the JSON-RPC framing of every error.

Who asks is `identify(ctx)`, checked on every request, not once per session: a token revoked
mid-session stops working at its next request, and scopes are read as they are now.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from app.kernel.errors import ByenatosError, NotFoundError
from app.kernel.mcp_server import MCP_SERVER_NAME, MISSING_SCOPE
from app.kernel.mcp_server import resources as res
from app.kernel.mcp_server.tools import BY_NAME, TOOLS, Call, McpTool, ToolFailed, check_arguments

if TYPE_CHECKING:
    from mcp.server.context import ServerRequestContext
    from mcp.server.lowlevel.server import Server

    from app.kernel.kernel import Kernel
    from app.kernel.security.apps import AppIdentity

log = logging.getLogger(__name__)

PAGE_SIZE = 50  # items per page of tools/list and resources/list
MAX_PAGE_SIZE = 200
RESOURCE_NOT_FOUND = -32002  # the 2025 protocol's code; the 2026 one says INVALID_PARAMS

INSTRUCTIONS = (
    "ByenatOS is the user's personal AI runtime. memory_search finds what the user noted or cared about "
    "(search it before answering questions about the user's own work, notes or preferences); memory_add "
    "remembers something for later. psp_preview and the byenatos://psp resource show what ByenatOS knows "
    "about the user for this app. socket_show tells which model serves each alias; socket_swap, "
    "agents_spawn and agents_status need an admin token."
)

Identify = Callable[["ServerRequestContext[Any, Any]"], "AppIdentity"]


class Activity:
    """Tool calls in flight, by request id: what a cancellation must end (and tests await)."""

    def __init__(self) -> None:
        self.in_flight: dict[Any, str] = {}
        self.finished: list[tuple[str, str]] = []  # (tool, "ok" | "error" | "cancelled"), the last 100
        self._changed = asyncio.Condition()

    async def _set(self, key: Any, name: str | None, outcome: str = "") -> None:
        async with self._changed:
            if name is None:
                tool = self.in_flight.pop(key, "")
                self.finished = [*self.finished[-99:], (tool, outcome)]
            else:
                self.in_flight[key] = name
            self._changed.notify_all()

    async def wait_for(self, predicate: Callable[[Activity], bool]) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: predicate(self))


def _cursor(kind: str, offset: int) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{offset}".encode()).decode().rstrip("=")


def _offset(kind: str, params: Any) -> int:
    """Where a page starts: 0 without a cursor; INVALID_PARAMS for a cursor we did not make."""
    from mcp.shared.exceptions import MCPError
    from mcp_types import INVALID_PARAMS

    cursor = getattr(params, "cursor", None)
    if not cursor:
        return 0
    try:
        got_kind, _, raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode().partition(":")
        offset = int(raw)
    except (ValueError, UnicodeDecodeError):
        offset, got_kind = -1, ""
    if got_kind != kind or not 0 <= offset < 2**31:
        raise MCPError(INVALID_PARAMS, f"cursor: not one this server gave for {kind}/list", data={"cursor": cursor})
    return offset


def missing_scope(app: AppIdentity, scope: str, what: str) -> Exception:
    from mcp.shared.exceptions import MCPError

    return MCPError(MISSING_SCOPE, f"app {app.id!r} lacks the {scope!r} scope for {what}",
                    data={"scope": scope, "app": app.id, "for": what})


def build_server(kernel: Kernel, identify: Identify, *, page_size: int = PAGE_SIZE,
                 activity: Activity | None = None) -> Server[Any]:
    """The MCP server for `kernel`; `identify(ctx)` names the app of each request (or raises)."""
    import mcp_types as types
    from mcp.server.lowlevel.server import Server
    from mcp.shared.exceptions import MCPError

    from app import version

    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"page_size: 1 to {MAX_PAGE_SIZE}")
    activity = activity if activity is not None else Activity()

    def call_of(ctx: ServerRequestContext[Any, Any]) -> Call:
        async def progress(done: float, total: float | None, message: str | None) -> None:
            await ctx.session.report_progress(done, total, message)

        return Call(kernel, identify(ctx), progress)

    def tool_of(t: McpTool) -> types.Tool:
        return types.Tool(
            name=t.name, title=t.title, description=t.description, input_schema=t.schema,
            annotations=types.ToolAnnotations(title=t.title, read_only_hint=t.read_only,
                                              destructive_hint=t.destructive, open_world_hint=False))

    async def list_tools(ctx: ServerRequestContext[Any, Any],
                         params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        app = identify(ctx)
        start = _offset("tools", params)
        visible = [t for t in TOOLS if app.allows(t.scope)]
        end = start + page_size
        return types.ListToolsResult(tools=[tool_of(t) for t in visible[start:end]],
                                     next_cursor=_cursor("tools", end) if end < len(visible) else None)

    async def call_tool(ctx: ServerRequestContext[Any, Any],
                        params: types.CallToolRequestParams) -> types.CallToolResult:
        tool = BY_NAME.get(params.name)
        if tool is None:
            raise MCPError(types.INVALID_PARAMS, f"unknown tool {params.name!r}; tools: "
                           f"{', '.join(BY_NAME)}", data={"tool": params.name})
        call = call_of(ctx)
        if not call.app.allows(tool.scope):
            raise missing_scope(call.app, tool.scope, f"the tool {tool.name}")
        args = dict(params.arguments or {})
        key = (id(ctx.session), ctx.request_id)
        await activity._set(key, tool.name)
        outcome = "cancelled"
        try:
            check_arguments(tool, args)
            data = await tool.run(call, args)
            outcome = "ok"
        except (ToolFailed, ByenatosError) as e:
            outcome = "error"
            return types.CallToolResult(content=[types.TextContent(type="text", text=str(e))], is_error=True)
        finally:
            await asyncio.shield(activity._set(key, None, outcome))
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=orjson.dumps(data, default=str).decode())],
            structured_content=orjson.loads(orjson.dumps(data, default=str)))

    async def list_resources(ctx: ServerRequestContext[Any, Any],
                             params: types.PaginatedRequestParams | None) -> types.ListResourcesResult:
        call = call_of(ctx)
        start = _offset("resources", params)
        fixed = res.fixed_for(call)
        listed = fixed[start:start + page_size]
        first_record = max(0, start - len(fixed))
        records, total = await res.records_page(call, first_record, page_size - len(listed))
        listed += [res.listed_record(r) for r in records]
        end = start + len(listed)
        more = end < len(fixed) + total and bool(listed)
        return types.ListResourcesResult(
            resources=[types.Resource(uri=r.uri, name=r.name, title=r.title, description=r.description,
                                      mime_type=r.mime_type) for r in listed],
            next_cursor=_cursor("resources", end) if more else None)

    async def list_templates(ctx: ServerRequestContext[Any, Any],
                             params: types.PaginatedRequestParams | None) -> types.ListResourceTemplatesResult:
        app = identify(ctx)
        _offset("resources/templates", params)
        templates = [types.ResourceTemplate(
            uri_template=res.RECORD_TEMPLATE, name="record", title="A record",
            description="One record of the user's memory by its id (percent-encoded)",
            mime_type="application/json")] if app.allows("hinata:read") else []
        return types.ListResourceTemplatesResult(resource_templates=templates)

    async def read_resource(ctx: ServerRequestContext[Any, Any],
                            params: types.ReadResourceRequestParams) -> types.ReadResourceResult:
        uri = str(params.uri)
        call = call_of(ctx)
        scope = res.scope_of(uri)
        not_found = RESOURCE_NOT_FOUND if ctx.protocol_version in _handshake_versions() else types.INVALID_PARAMS
        if scope is None:
            raise MCPError(not_found, f"no resource {uri!r}: resources are {res.PSP_URI}, {res.LATEST_URI} "
                           f"and {res.RECORD_TEMPLATE}", data={"uri": uri})
        if not call.app.allows(scope):
            raise missing_scope(call.app, scope, f"the resource {uri}")
        try:
            mime, text = await res.read(call, uri)
        except (KeyError, NotFoundError):
            raise MCPError(not_found, f"no resource {uri!r}", data={"uri": uri}) from None
        return types.ReadResourceResult(contents=[types.TextResourceContents(uri=uri, mime_type=mime, text=text)])

    server: Server[Any] = Server(
        MCP_SERVER_NAME, version=version(), title="ByenatOS",
        description="The user's memory, personal system prompt, AI socket and agents",
        instructions=INSTRUCTIONS, website_url=None,
        on_list_tools=list_tools, on_call_tool=call_tool, on_list_resources=list_resources,
        on_list_resource_templates=list_templates, on_read_resource=read_resource)
    server.activity = activity  # type: ignore[attr-defined]  # for the transports and the tests
    return server


def _handshake_versions() -> frozenset[str]:
    from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

    return frozenset(HANDSHAKE_PROTOCOL_VERSIONS)


def fixed_identity(kernel: Kernel, token: str) -> Identify:
    """For stdio: one token for the whole session, authenticated again on every request."""

    def identify(ctx: ServerRequestContext[Any, Any]) -> AppIdentity:
        from mcp.shared.exceptions import MCPError

        from app.kernel.mcp_server import INVALID_TOKEN

        app = kernel.apps.authenticate(token)
        if app is None:
            raise MCPError(INVALID_TOKEN, "the app token of this MCP server is invalid or was revoked; "
                           "register the app again (`byenatos apps register NAME`) and restart the server")
        return app

    return identify
