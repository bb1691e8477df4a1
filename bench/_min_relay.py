"""The least a Python process can do between an OpenAI client and its upstream: a yardstick.

    python -m bench._min_relay HOST PORT PATH LISTEN_PORT

uvloop, httptools and orjson, as the gateway uses, and nothing else: each request's body is
parsed, its `model` renamed and re-serialised, then sent on one kept-alive upstream connection;
the answer goes back with its status and body. No auth, no limits, no routing, no streams, no
accounting, one client at a time. bench.relay_floor times it beside socat and the gateway.
"""

from __future__ import annotations

import asyncio
import sys

import httptools
import orjson
import uvloop


class _Collecting(asyncio.Protocol):
    """One side of the relay: feeds what arrives to its httptools parser, collects the body."""

    def __init__(self, parser_type: type) -> None:
        self.parser = parser_type(self)
        self.transport: asyncio.Transport | None = None
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def take_body(self) -> bytes:
        body, self.body = b"".join(self.body), []
        return body


class _Upstream(_Collecting):
    def __init__(self) -> None:
        super().__init__(httptools.HttpResponseParser)
        self.client: _Client | None = None

    def on_message_complete(self) -> None:
        client, self.client = self.client, None
        assert client is not None
        client.answer(self.parser.get_status_code(), self.take_body())


class _Client(_Collecting):
    upstream: _Upstream
    head: bytes

    def __init__(self) -> None:
        super().__init__(httptools.HttpRequestParser)

    def on_message_complete(self) -> None:
        request = orjson.loads(self.take_body())
        request["model"] = "gpt-fake-mini"
        out = orjson.dumps(request)
        self.upstream.client = self
        assert self.upstream.transport is not None
        self.upstream.transport.write(self.head + b"Content-Length: %d\r\n\r\n" % len(out) + out)

    def answer(self, status: int, body: bytes) -> None:
        assert self.transport is not None
        self.transport.write(b"HTTP/1.1 %d OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                             % (status, len(body)) + body)


async def serve(host: str, port: int, path: str, listen: int) -> None:
    loop = asyncio.get_running_loop()
    _, upstream = await loop.create_connection(_Upstream, host, port)
    _Client.upstream = upstream
    _Client.head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                    "Content-Type: application/json\r\n").encode()
    await loop.create_server(_Client, "127.0.0.1", listen)
    print("RELAY ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    uvloop.run(serve(sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])))
