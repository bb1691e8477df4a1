"""The base of the fake upstream model servers used in tests.

A fake upstream is a real aiohttp server on 127.0.0.1 with a random port, speaking a
vendor's real wire format. Tests switch faults on and off at run time:

    fake.fault = Fault(kind="status", status=429)
    fake.fault = Fault(kind="hang")                 # accept, never answer
    fake.fault = Fault(kind="disconnect", after_chunks=2)   # drop the stream mid-way
    await fake.refuse()                             # close the listener: connection refused
    fake.latency = 0.05                             # seconds before each answer

Every request the fake saw is kept in `fake.requests` (path, headers, JSON body) so tests
can assert what a driver actually sent.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

FaultKind = Literal["status", "hang", "disconnect", "body"]  # body: `message` sent as is, with `status`


@dataclass
class Fault:
    kind: FaultKind
    status: int = 500
    message: str = "injected fault"
    after_chunks: int = 1  # for "disconnect": chunks sent before the connection is cut
    times: int | None = None  # how many requests it hits; None = until cleared
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class SeenRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


class FakeUpstream:
    """Subclasses add routes in `routes()`; this class runs the server and the faults."""

    def __init__(self) -> None:
        self.latency: float = 0.0
        self.fault: Fault | None = None
        self.requests: list[SeenRequest] = []
        self.reply_text = "Hello from the fake upstream."
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self.port: int = 0
        self.hanging = asyncio.Event()  # set when a request is held by a "hang" fault
        self.cancelled = asyncio.Event()  # set when a client went away mid-request
        self._arrived = asyncio.Event()  # set at each request (see wait_requests)

    # -- lifecycle -------------------------------------------------------------------------
    def routes(self) -> list[web.RouteDef]:
        raise NotImplementedError

    async def start(self, port: int = 0) -> FakeUpstream:
        app = web.Application(middlewares=[self._middleware], client_max_size=64 * 1024 * 1024)
        app.add_routes(self.routes())
        # handler_cancellation: a client that goes away cancels its handler (aiohttp >= 3.9 keeps
        # it running by default), so "hang" sees the client leave and stop() never waits out
        # aiohttp's 60 s grace period for a handler nobody is listening to any more.
        self._runner = web.AppRunner(
            app, handle_signals=False, access_log=None, handler_cancellation=True, shutdown_timeout=2.0
        )
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        self.port = sock.getsockname()[1]
        self._site = web.SockSite(self._runner, sock)
        await self._site.start()
        return self

    async def refuse(self) -> None:
        """Stop listening: new connections are refused (the port stays known to tests)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def stop(self) -> None:
        await self.refuse()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- fault injection ---------------------------------------------------------------------
    def take_fault(self) -> Fault | None:
        f = self.fault
        if f is None:
            return None
        if f.times is not None:
            f.times -= 1
            if f.times <= 0:
                self.fault = None
        return f

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        body: Any = None
        if request.can_read_body:
            raw = await request.read()
            try:
                import json

                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw
        self.requests.append(SeenRequest(request.method, request.path, dict(request.headers), body))
        self._arrived.set()
        request["json"] = body  # handlers read the parsed body from here
        if self.latency:
            await asyncio.sleep(self.latency)  # simulated network/model latency, not a test wait
        fault = self.fault
        if fault is not None and fault.kind != "disconnect":
            self.take_fault()
            if fault.kind == "hang":
                self.hanging.set()
                try:
                    await asyncio.Event().wait()
                finally:
                    self.cancelled.set()
            if fault.kind == "body":
                return web.Response(status=fault.status, body=fault.message.encode(), content_type="application/json")
            return self.error_response(fault.status, fault.message, fault.headers)
        try:
            return await handler(request)
        except (asyncio.CancelledError, ConnectionResetError):
            self.cancelled.set()
            raise

    async def wait_requests(self, count: int) -> None:
        """Until `count` requests have arrived in all (answered or not)."""
        while len(self.requests) < count:
            self._arrived.clear()
            await self._arrived.wait()

    def error_response(self, status: int, message: str, headers: dict[str, str]) -> web.Response:
        """The vendor's error JSON; subclasses override for their format."""
        return web.json_response({"error": {"message": message, "type": "fake_error"}}, status=status, headers=headers)

    def disconnect_after(self) -> int | None:
        """If a disconnect fault is armed, how many chunks to send before cutting the stream."""
        f = self.fault
        if f is not None and f.kind == "disconnect":
            self.take_fault()
            return f.after_chunks
        return None

    @staticmethod
    async def cut(response: web.StreamResponse, request: web.Request) -> web.StreamResponse:
        """Drop the TCP connection without finishing the HTTP response."""
        transport = request.transport
        if transport is not None:
            transport.abort()
        return response
