"""The pass-through HTTP/1.1 client against a raw asyncio server on loopback that we script."""

from __future__ import annotations

import asyncio
import socket

import pytest

from app.kernel.drivers.http1 import Http1Client, TransportError


class Server:
    """Answers each request on a connection with the next scripted reply (bytes, or None: hang)."""

    def __init__(self, replies: list[bytes | None], *, close_after: int | None = None) -> None:
        self.replies = replies
        self.close_after = close_after  # close each connection after this many answers
        self.connections = 0
        self.requests: list[bytes] = []
        self.gone = asyncio.Event()  # a client closed its connection while we were answering

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        answered = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(
                    next(
                        ln.split(b":")[1]
                        for ln in head.split(b"\r\n")
                        if ln.lower().startswith(b"content-length")
                    )
                )
                self.requests.append(head + await reader.readexactly(length))
                reply = self.replies.pop(0)
                if reply is None:
                    await reader.read()  # hang until the client leaves
                    self.gone.set()
                    return
                writer.write(reply)
                await writer.drain()
                answered += 1
                if self.close_after is not None and answered >= self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            self.gone.set()
        finally:
            writer.close()

    async def __aenter__(self) -> Server:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()


def client(port: int, **kw) -> Http1Client:
    return Http1Client(
        f"http://127.0.0.1:{port}/v1",
        {"Authorization": "Bearer k"},
        connect_timeout=kw.pop("connect_timeout", 2.0),
        read_timeout=kw.pop("read_timeout", 5.0),
    )


OK = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"ok":true}'
CHUNKED = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"6\r\ndata: \r\n"
    b"5;ext=1\r\nhello\r\n"
    b"2\r\n\n\n\r\n"
    b"0\r\n\r\n"
)


async def test_keep_alive_reuses_one_connection():
    async with Server([OK, OK]) as srv:
        c = client(srv.port)
        for _ in range(2):
            r = await c.request("POST", "/chat/completions", b'{"a":1}')
            assert r.status == 200 and await r.read() == b'{"ok":true}'
        await c.aclose()
    assert srv.connections == 1
    head = srv.requests[0].decode()
    assert head.startswith("POST /v1/chat/completions HTTP/1.1\r\n")
    assert "Authorization: Bearer k" in head and f"Host: 127.0.0.1:{srv.port}" in head


async def test_chunked_body_is_decoded():
    async with Server([CHUNKED, OK]) as srv:
        c = client(srv.port)
        r = await c.request("POST", "/x", b"{}")
        assert b"".join([p async for p in r.iter_body()]) == b"data: hello\n\n"
        r = await c.request("POST", "/x", b"{}")  # the connection is clean for the next answer
        assert await r.read() == b'{"ok":true}'
        await c.aclose()
    assert srv.connections == 1


async def test_a_connection_the_server_closed_is_replaced_transparently():
    async with Server([OK, OK], close_after=1) as srv:
        c = client(srv.port)
        assert await (await c.request("POST", "/x", b"{}")).read() == b'{"ok":true}'
        r = await c.request("POST", "/x", b"{}")
        assert await r.read() == b'{"ok":true}'
        await c.aclose()
    assert srv.connections == 2


async def test_connection_close_answers_are_read_to_the_end_and_not_reused():
    reply = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it"
    async with Server([reply, OK], close_after=1) as srv:
        c = client(srv.port)
        assert await (await c.request("POST", "/x", b"{}")).read() == b"all of it"
        assert await (await c.request("POST", "/x", b"{}")).read() == b'{"ok":true}'
        await c.aclose()
    assert srv.connections == 2


async def test_refused_connection_is_a_connect_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(TransportError) as e:
        await client(port).request("POST", "/x", b"{}")
    assert e.value.phase == "connect" and "cannot connect" in str(e.value)


async def test_silence_is_a_read_timeout_and_closes_the_connection():
    async with Server([None]) as srv:
        c = client(srv.port, read_timeout=0.05)
        with pytest.raises(TransportError) as e:
            await c.request("POST", "/x", b"{}")
        assert e.value.phase == "read"
        await asyncio.wait_for(srv.gone.wait(), 5)  # we hung up: the server can stop working


async def test_leaving_a_stream_early_closes_its_connection():
    endless = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\ndata: \r\n"
    async with Server([endless]) as srv:
        c = client(srv.port)
        r = await c.request("POST", "/x", b"{}")
        pieces = r.iter_body()
        assert await anext(pieces) == b"data: "
        await pieces.aclose()
        await asyncio.wait_for(srv.gone.wait(), 5)
        assert not c._idle


async def test_a_body_cut_short_is_a_dropped_connection():
    cut = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this"
    async with Server([cut], close_after=1) as srv:
        r = await client(srv.port).request("POST", "/x", b"{}")
        with pytest.raises(TransportError) as e:
            await r.read()
    assert e.value.phase == "dropped"


def test_only_plain_http():
    with pytest.raises(ValueError):
        Http1Client("https://api.example.com/v1", {}, connect_timeout=1, read_timeout=1)


async def test_a_released_connection_is_pooled_once():
    async with Server([OK]) as srv:
        c = client(srv.port)
        r = await c.request("POST", "/x", b"{}")
        await r.read()
        r.release()  # a second release (the driver's context manager does one too) must not pool it again
        assert len(c._idle) == 1
        await c.aclose()


async def test_read_some_hands_over_every_complete_chunk_at_once():
    async with Server([CHUNKED]) as srv:
        r = await client(srv.port).request("POST", "/x", b"{}")
        # The reply was one write, so its chunks arrived with the head: three chunks, one piece.
        assert await r.read_some() == b"data: hello\n\n"
        assert await r.read_some() == b""


async def test_trailers_are_consumed_and_the_connection_reused():
    with_trailers = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-Checksum: 1\r\nX-More: 2\r\n\r\n"
    async with Server([with_trailers, OK]) as srv:
        c = client(srv.port)
        assert await (await c.request("POST", "/x", b"{}")).read() == b"ok"
        assert await (await c.request("POST", "/x", b"{}")).read() == b'{"ok":true}'
    assert srv.connections == 1


@pytest.mark.parametrize(
    "body",
    [b"2\r\nokXX0\r\n\r\n", b"zz\r\nok\r\n0\r\n\r\n", b"-2\r\nok\r\n0\r\n\r\n"],
    ids=["no line break after the data", "size not hex", "negative size"],
)
async def test_broken_chunked_framing_is_a_dropped_connection(body):
    reply = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body
    async with Server([reply]) as srv:
        c = client(srv.port)
        r = await c.request("POST", "/x", b"{}")
        with pytest.raises(TransportError) as e:
            await r.read()
    assert e.value.phase == "dropped" and not c._idle


@pytest.mark.parametrize("step", [1, 2, 3, 7, 1000])
def test_chunked_decoding_is_the_same_however_the_bytes_are_split(step):
    """Reads end anywhere: inside a size line, a chunk's data, its line break or the trailers."""
    from app.kernel.drivers.http1 import Response

    body = CHUNKED.split(b"\r\n\r\n", 1)[1][:-2] + b"X-T: 1\r\n\r\n"  # with a trailer this time
    r = Response(200, "", None, None, chunked=True, length=None, reusable=True)  # type: ignore[arg-type]
    buffer, out = bytearray(), b""
    for i in range(0, len(body), step):
        buffer += body[i : i + step]
        out += r._take_chunked(buffer)
    assert out == b"data: hello\n\n" and r._done and not buffer
