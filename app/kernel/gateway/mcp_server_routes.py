"""/mcp: ByenatOS's MCP server over streamable HTTP, on the gateway.

The transport is the SDK's own (`StreamableHTTPSessionManager`: sessions, the SSE response
streams, the standalone GET stream, DELETE, resumption headers, the 2026 per-request era), an
ASGI application. The gateway is not ASGI, so this module is a bridge: a `web.Request` becomes
an ASGI scope and `receive` (the body, then a wait for the client to leave: the server cancels
the handler when it does), and the ASGI `send` messages become a `web.Response` (one whole
body) or a `web.StreamResponse` (SSE, written as it comes). Why a bridge rather than our own
transport over the SDK's session types: the transport is most of what the specification says
about HTTP (which status for which mistake, when to answer JSON or SSE, session ownership,
protocol-version headers), and the SDK keeps it conformant release after release; the bridge
is ~100 lines and costs ~0.1 ms a request (docs/mcp-server.md has the figures).

Auth is the gateway's: the guard has checked Host, Origin and the bearer token before this
runs (`middleware.required_scope`: any valid app token). The app is handed to the MCP server
in the scope and checked against each tool's and resource's scope on every request; a session
belongs to the app whose token opened it (the SDK compares the `user` of each request with
the session's owner and answers 404 to another app).

The session manager runs for the gateway's lifetime, started by the first /mcp request and
stopped by `GatewayServer.stop` (`keys.CLOSERS`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from app.kernel.gateway import web
from app.kernel.gateway.keys import CLOSERS, KERNEL

if TYPE_CHECKING:
    from mcp.server.context import ServerRequestContext

    from app.kernel.kernel import Kernel
    from app.kernel.security.apps import AppIdentity

log = logging.getLogger(__name__)

MCP_PATH = "/mcp"
APP_SCOPE_KEY = "byenatos.app"  # the caller's AppIdentity in the ASGI scope
MCP_HTTP_KEY = "mcp_http"  # app[MCP_HTTP_KEY]: the McpHttp of this gateway
SESSION_IDLE_S = 30 * 60.0
DISCONNECT_GRACE_S = 5.0  # how long a transport may take to finish after its client left
_DROPPED = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive", "date", "server"})


def _identify(ctx: ServerRequestContext[Any, Any]) -> AppIdentity:
    request = ctx.request
    app = request.scope.get(APP_SCOPE_KEY) if request is not None else None
    if app is None:  # never: every message of this transport comes with its HTTP request
        from mcp.shared.exceptions import MCPError

        from app.kernel.mcp_server import INVALID_TOKEN

        raise MCPError(INVALID_TOKEN, "this request carried no app token")
    return app


class McpHttp:
    """The SDK's session manager for one gateway, run in a task of its own."""

    def __init__(self, kernel: Kernel, *, page_size: int | None = None) -> None:
        self.kernel = kernel
        self.page_size = page_size
        self.manager: Any = None
        self.server: Any = None
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._starting: asyncio.Future[None] | None = None

    async def start(self) -> Any:
        if self._starting is None:
            from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

            from app.kernel.mcp_server.server import PAGE_SIZE, build_server

            self.server = build_server(self.kernel, _identify, page_size=self.page_size or PAGE_SIZE)
            # No transport security settings: the guard already refused foreign Hosts and Origins.
            self.manager = StreamableHTTPSessionManager(app=self.server, session_idle_timeout=SESSION_IDLE_S)
            self._starting = asyncio.get_running_loop().create_future()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="mcp-http-sessions")
        await asyncio.shield(self._starting)
        return self.manager

    async def _run(self) -> None:
        assert self._starting is not None
        try:
            async with self.manager.run():
                self._starting.set_result(None)
                await self._stop.wait()
        except BaseException as e:
            if not self._starting.done():
                self._starting.set_exception(e if isinstance(e, Exception) else RuntimeError(str(e)))
            raise

    async def close(self) -> None:
        self._stop.set()
        if self._task is not None:
            try:
                await self._task
            except Exception:
                log.exception("the MCP session manager failed while stopping")


def _scope(request: web.Request, app: AppIdentity) -> dict[str, Any]:
    from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
    from mcp.server.auth.provider import AccessToken

    # The session's owner is compared by client id: the app, never the token itself.
    user = AuthenticatedUser(AccessToken(token="", client_id=app.id, scopes=sorted(app.scopes)))
    return {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": request.version, "method": request.method, "scheme": "http",
        "path": request.path, "raw_path": request.raw_path.encode("latin-1"),
        "query_string": request.query_string.encode("latin-1"), "root_path": "",
        "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in request.headers.items()],
        "client": None, "server": None, "state": {}, "user": user, APP_SCOPE_KEY: app,
    }


def _as_jsonrpc_error(body: bytes, status: int) -> bytes:
    import orjson

    try:
        orjson.loads(body)
        return body  # JSON already, only untyped
    except orjson.JSONDecodeError:
        pass
    code = -32600 if status < 500 else -32603  # invalid request / internal error
    message = body.decode("utf-8", "replace").strip()[:500] or f"HTTP {status}"
    return orjson.dumps({"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}})


async def handle(request: web.Request) -> web.StreamResponse:
    """One HTTP request of the MCP transport (POST a message, GET the stream, DELETE the session)."""
    from app.kernel.gateway.middleware import APP_KEY

    http: McpHttp = request.app[MCP_HTTP_KEY]
    manager = await http.start()
    body_given = False
    gone = asyncio.Event()  # the client left: ASGI says so with http.disconnect, not by cancelling
    head: dict[str, Any] = {}
    response: web.StreamResponse | None = None

    async def receive() -> dict[str, Any]:
        nonlocal body_given
        if not body_given:
            body_given = True
            return {"type": "http.request", "body": await request.read(), "more_body": False}
        await gone.wait()  # nothing more will come until the client leaves
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal response
        if gone.is_set():
            return  # what is left to say goes nowhere (as ASGI servers do after a disconnect)
        if message["type"] == "http.response.start":
            head["status"] = message["status"]
            head["headers"] = {k.decode("latin-1").title(): v.decode("latin-1")
                               for k, v in message.get("headers", ())
                               if k.decode("latin-1").lower() not in _DROPPED}
            return
        if message["type"] != "http.response.body":
            return
        body, more = message.get("body", b""), message.get("more_body", False)
        if response is None and not more:  # all of it at once: one write, with a Content-Length
            # (no body: no Content-Type either, where web.Response would say octet-stream)
            headers = head["headers"]
            if body and "Content-Type" not in headers:
                # The SDK refuses some requests (a wrong Content-Type, say) in plain words with no
                # type: sent as the JSON-RPC error they are, as every other answer here.
                body = _as_jsonrpc_error(body, head["status"])
                headers = {**headers, "Content-Type": "application/json"}
            response = web.Response(body=body or None, status=head["status"], headers=headers)
            return
        try:
            if response is None:
                response = web.StreamResponse(status=head["status"], headers=head["headers"])
                await response.prepare(request)
            if body:
                await response.write(body)
            if not more:
                await response.write_eof()
        except ConnectionError:
            gone.set()

    # The transport runs in a task of its own: a client that hangs up (clients close an SSE
    # response as soon as it holds their answer) cancels this handler, and the transport must
    # not be cancelled with it mid-way (it would forget the session it just opened); it is told
    # with http.disconnect instead, and finishes.
    served = asyncio.ensure_future(manager.handle_request(_scope(request, request[APP_KEY]), receive, send))
    try:
        await asyncio.shield(served)
    except asyncio.CancelledError:
        gone.set()
        await asyncio.wait([served], timeout=DISCONNECT_GRACE_S)
        if not served.done():
            served.cancel()
        raise
    if response is None:  # the SDK always answers; an ASGI app that did not is a bug, said plainly
        return web.json_response({"jsonrpc": "2.0", "id": None,
                                  "error": {"code": -32603, "message": "the MCP transport sent no answer"}},
                                 status=500)
    return response


def add_routes(app: web.Application) -> None:
    http = McpHttp(app[KERNEL])
    app[MCP_HTTP_KEY] = http
    app.setdefault(CLOSERS, []).append(http.close)
    for method in ("GET", "POST", "DELETE"):
        app.router.add_route(method, MCP_PATH, handle)
