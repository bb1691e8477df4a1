"""The gateway's aiohttp server. Runs on whatever asyncio loop is current (plain, uvloop, qasync)."""

from __future__ import annotations

import errno
import logging
import socket

import orjson
from aiohttp import web

from app import version
from app.kernel.errors import ConfigError
from app.kernel.gateway import openai_routes, personal_routes
from app.kernel.gateway.errors import openai_error
from app.kernel.kernel import Kernel

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 32 * 1024 * 1024  # images as base64 make chat bodies large; more is a mistake


async def health(request: web.Request) -> web.Response:
    kernel = request.app[openai_routes.KERNEL]
    body = {"status": "ok", "version": version(), "models": len(kernel.list_models())}
    return web.Response(body=orjson.dumps(body), content_type="application/json")


@web.middleware
async def unknown_route_as_json(request: web.Request, handler) -> web.StreamResponse:
    """Routing errors (404/405) in the OpenAI error shape rather than aiohttp's HTML."""
    try:
        return await handler(request)
    except web.HTTPException as e:
        if e.status >= 400:
            return openai_error(e.status, f"{request.method} {request.path}: {e.reason}",
                                              code="not_found" if e.status == 404 else None)
        raise


def build_app(kernel: Kernel) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[unknown_route_as_json])
    app[openai_routes.KERNEL] = kernel
    openai_routes.add_routes(app)
    personal_routes.add_routes(app)  # /api/hinata, /api/psp
    app.router.add_get("/api/health", health)
    return app


class GatewayServer:
    def __init__(self, kernel: Kernel, host: str | None = None, port: int | None = None) -> None:
        self.kernel = kernel
        self.host = host or kernel.settings.gateway.host
        self.port = kernel.settings.gateway.port if port is None else port
        self._runner: web.AppRunner | None = None

    async def start(self) -> GatewayServer:
        # handler_cancellation: a client that hangs up cancels its handler, which closes
        # the upstream request at once instead of generating tokens nobody reads.
        runner = web.AppRunner(build_app(self.kernel), handle_signals=False, access_log=None,
                               handler_cancellation=True)
        await runner.setup()
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as e:
            sock.close()
            await runner.cleanup()
            if e.errno == errno.EADDRINUSE:
                raise ConfigError(
                    f"port {self.port} on {self.host} is already in use (is ByenatOS already running? "
                    "`byenatos serve --port N` picks another)"
                ) from None
            raise ConfigError(f"cannot listen on {self.host}:{self.port}: {e.strerror}") from None
        self.port = sock.getsockname()[1]
        site = web.SockSite(runner, sock, backlog=1024)
        await site.start()
        self._runner = runner
        return self

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
