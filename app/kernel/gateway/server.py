"""The gateway: its routes on `http_server.HttpServer`. Runs on whatever asyncio loop is
current (plain, uvloop, qasync)."""

from __future__ import annotations

import errno
import functools
import importlib
import logging
import socket
import sys
from typing import Any

import orjson

from app.kernel.errors import ConfigError
from app.kernel.gateway import api_routes, openai_routes, scheduler_routes, socket_routes, web
from app.kernel.gateway.bodies import MAX_BODY_KEY, MAX_DEPTH_KEY
from app.kernel.gateway.http_server import HttpServer
from app.kernel.gateway.keys import AUDIT_PROMPTS, CLOSERS, KERNEL, LANE
from app.kernel.gateway.middleware import Guard
from app.kernel.kernel import Kernel
from app.kernel.loopback import LOOPBACK_HOSTS

log = logging.getLogger(__name__)

# Route groups registered on first use: (module, the path prefixes it serves). Their imports
# (the Anthropic translation, personal memory, the agent kernel) would otherwise cost start-up time.
LAZY_ROUTE_MODULES = (
    ("app.kernel.gateway.anthropic_routes", ("/v1/messages",)),
    ("app.kernel.gateway.personal_routes", ("/api/hinata", "/api/psp")),
    ("app.kernel.gateway.agents_routes", ("/api/agents",)),
    ("app.kernel.gateway.mcp_routes", ("/api/mcp",)),  # the MCP servers the kernel hosts (app.kernel.mcp)
    ("app.kernel.gateway.documents_routes", ("/api/documents",)),  # the user's folders, indexed
    # approvals, tool permissions and audit, /api/agents/{pid}/undo
    ("app.kernel.gateway.approvals_routes", ("/api/approvals", "/api/tools/permissions", "/api/tools/audit",
                                              "/api/agents/")),
    ("app.kernel.gateway.mcp_server_routes", ("/mcp",)),  # ByenatOS as an MCP server (the mcp SDK)
    ("app.kernel.gateway.responses_routes", ("/v1/responses",)),
    ("app.kernel.gateway.sessions_routes", ("/api/sessions",)),
    ("app.kernel.gateway.openapi", ("/openapi.json",)),  # the document describes every route
)


def build_app(kernel: Kernel, *, host: str | None = None) -> web.Application:
    settings = kernel.settings.gateway
    guard = Guard(kernel, host or settings.host)
    max_body = int(settings.max_body_mb * 1024 * 1024)
    app = web.Application(client_max_size=max_body, middlewares=[guard.middleware])
    app[MAX_BODY_KEY] = max_body
    app[KERNEL] = kernel
    app[AUDIT_PROMPTS] = settings.audit_prompts
    app[MAX_DEPTH_KEY] = settings.max_json_depth
    if settings.fast_lane:
        from app.kernel.gateway.lane import Lane

        app[LANE] = Lane(app, guard)
    openai_routes.add_routes(app)
    api_routes.add_routes(app)
    socket_routes.add_routes(app)
    scheduler_routes.add_routes(app)
    for name, prefixes in LAZY_ROUTE_MODULES:
        app.router.add_lazy_group(prefixes, functools.partial(_add_module_routes, app, name))
    return app


def _add_module_routes(app: web.Application, module: str) -> None:
    importlib.import_module(module).add_routes(app)


def is_loopback(host: str) -> bool:
    return host in LOOPBACK_HOSTS


class GatewayServer:
    def __init__(self, kernel: Kernel, host: str | None = None, port: int | None = None) -> None:
        self.kernel = kernel
        self.host = host or kernel.settings.gateway.host
        self.port = kernel.settings.gateway.port if port is None else port
        self._server: HttpServer | None = None

    async def start(self) -> GatewayServer:
        if not is_loopback(self.host):
            log.warning(
                "the gateway listens on %s: other machines on the network can reach it "
                "(every request still needs an app token)",
                self.host,
            )
        # A client that hangs up cancels its handler (HttpServer does), which closes the
        # upstream request at once instead of generating tokens nobody reads.
        app = build_app(self.kernel, host=self.host)
        server = HttpServer(app, shutdown_timeout=5.0, fast_path=app.get(LANE),
                            before_close=self.kernel.accounting.drain)
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
        if sys.platform != "win32":
            # Lets a restarted daemon rebind past old connections in TIME_WAIT. Not on Windows,
            # where it would let a second process take over a port that is in use.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as e:
            sock.close()
            if e.errno == errno.EADDRINUSE:
                running = await probe(self.host, self.port)
                if running is not None:
                    raise AlreadyRunningError(
                        f"ByenatOS {running.get('version', '')} is already running on {_url(self.host, self.port)}; "
                        "use that one, or start this one with `byenatos serve --port N`".replace("  ", " "),
                        url=_url(self.host, self.port),
                    ) from None
                raise ConfigError(
                    f"port {self.port} on {self.host} is already in use by another program; "
                    "`byenatos serve --port N` picks another"
                ) from None
            raise ConfigError(f"cannot listen on {self.host}:{self.port}: {e.strerror}") from None
        self.port = sock.getsockname()[1]
        await server.start(sock, backlog=1024)
        self._server = server
        return self

    @property
    def app(self) -> web.Application | None:
        return self._server.app if self._server is not None else None

    @property
    def url(self) -> str:
        return _url(self.host, self.port)

    @property
    def addresses(self) -> list[object]:
        """The socket addresses actually listening (host, port[, …])."""
        return self._server.addresses if self._server is not None else []

    async def stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            for close in server.app.get(CLOSERS, ()):  # e.g. /mcp's sessions, before the connections
                await close()
            await server.close()


class AlreadyRunningError(ConfigError):
    """Another ByenatOS answers on the port: the UI attaches to it, `serve` says so and exits."""

    code = "already_running"

    def __init__(self, message: str, *, url: str) -> None:
        super().__init__(message)
        self.url = url


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


async def probe(host: str, port: int, *, timeout: float = 1.0) -> dict[str, Any] | None:
    """The /api/health answer of a ByenatOS on host:port, or None if something else (or nothing) is there."""
    import aiohttp

    connect_host = "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host == "::" else host)
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
            session.get(f"{_url(connect_host, port)}/api/health", headers={"Host": "127.0.0.1"}) as r,
        ):
            data = orjson.loads(await r.read()) if r.status == 200 else None
    except (OSError, TimeoutError, aiohttp.ClientError, orjson.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and data.get("service") == "byenatos" else None
