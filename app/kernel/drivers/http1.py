"""A small HTTP/1.1 keep-alive client for plain-http backends on the pass-through path.

Why not aiohttp or httpx here: measured on the gateway's fast path, a request through
aiohttp's client costs ~0.2 ms of CPU and httpx's ~0.5 ms; this one costs a few tens of
microseconds, because it does only what a JSON POST to a known server needs: one
pre-rendered header block, one write, a parser for Content-Length and chunked bodies.
Anything it does not do (TLS, proxies, redirects, compression) stays with aiohttp, which
the driver uses for https:// URLs and proxied hosts.

Reused connections the server has closed meanwhile are detected before use, or, if the
close races the request, the request is retried once on a fresh connection when not a
single byte of the answer had arrived (the server never saw it, or never answered it).
Closing a response early closes its connection: that is how the upstream learns that the
client went away.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Protocol
from urllib.parse import urlsplit

_MAX_HEAD = 64 * 1024
_CHUNK_HEAD = re.compile(rb"([0-9A-Fa-f]{1,15})(?:;[^\r\n]*)?\r\n")  # a chunk's size line, extensions allowed


class Listener(Protocol):
    """What `Http1Connection` tells a callback-driven reader."""

    def upstream_data(self, data: bytes) -> None: ...

    def upstream_closed(self) -> None: ...


class TransportError(Exception):
    """Connection-level failure; `phase` says where: "connect", "read" or "dropped"."""

    def __init__(self, phase: str, detail: str) -> None:
        super().__init__(detail)
        self.phase = phase


class Http1Connection(asyncio.Protocol):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.closed = False
        self.error: BaseException | None = None
        self.received = 0  # bytes of the current answer
        self._waiter: asyncio.Future[None] | None = None
        # A callback-driven reader (the gateway's pass-through lane) instead of a waiting task:
        # told of every arrival and of the end of the connection, in the transport's callbacks.
        self.listener: Listener | None = None

    # -- asyncio.Protocol --------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        if self.listener is not None:
            self.listener.upstream_data(data)  # it reads the answer itself: nothing is buffered here
        else:
            self.buffer += data
            self._wake()

    def eof_received(self) -> bool:
        self.closed = True
        self._ended()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.error = exc
        self._ended()

    def _ended(self) -> None:
        if self.listener is not None:
            self.listener.upstream_closed()
        else:
            self._wake()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- reading -----------------------------------------------------------------------------
    async def wait(self, timeout: float) -> None:
        """Until more data arrives or the connection ends."""
        if self.closed:
            raise TransportError("dropped", f"connection closed by the server{_why(self.error)}")
        waiter = self._waiter = self.loop.create_future()
        handle = self.loop.call_later(timeout, _time_out, waiter)
        try:
            await waiter
        finally:
            handle.cancel()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


def _time_out(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TransportError("read", "timed out waiting for the answer"))


def _why(error: BaseException | None) -> str:
    return f": {error}" if error else ""


class Response:
    """The status and headers of an answer; its body is read from the connection on demand."""

    __slots__ = ("_chunk_left", "_chunked", "_done", "_head", "_headers", "_length", "_released", "_reusable",
                 "_trailers", "client", "conn", "status")

    def __init__(self, status: int, head: bytes, conn: Http1Connection, client: Http1Client, chunked: bool,
                 length: int | None, reusable: bool) -> None:
        self.status = status
        self._head = head  # the header lines, parsed into `headers` only if someone asks
        self._headers: dict[str, str] | None = None
        self.conn = conn
        self.client = client
        self._chunked = chunked
        self._length = length  # None with _chunked False: the body ends when the connection does
        self._reusable = reusable  # keep-alive: the server did not say it will close
        self._done = length == 0
        self._released = False
        self._chunk_left = 0  # chunked: data bytes left in the current chunk; -1: its CRLF is next
        self._trailers = False  # chunked: past the last chunk, reading trailer lines

    @property
    def headers(self) -> dict[str, str]:
        """Header names lower-cased (a repeated one keeps its last value)."""
        if self._headers is None:
            self._headers = _parse_headers(self._head)
        return self._headers

    async def read(self) -> bytes:
        buffer, length = self.conn.buffer, self._length
        if not self._chunked and length is not None and len(buffer) >= length:
            # The whole body came with the head (a short answer): no iteration needed.
            body = bytes(buffer[:length])
            del buffer[:length]
            self._length = 0
            self._finish()
            return body
        out = bytearray()
        while piece := await self.read_some():
            out += piece
        return bytes(out)

    async def iter_body(self) -> AsyncIterator[bytes]:
        try:
            while piece := await self.read_some():
                yield piece
        finally:
            self.release()

    async def read_some(self) -> bytes:
        """The body bytes that have arrived (waiting for at least one), b"" once it is over.

        Chunked framing is undone here; every complete chunk in the buffer comes out in one
        piece, and a chunk still arriving is handed on as far as it has come (a stream's event
        must not wait for the rest of its chunk). On a failure the connection is closed.
        """
        if self._done:
            return b""
        conn = self.conn
        try:
            while True:
                piece = self.take()
                if piece or self._done:
                    return piece
                try:
                    await conn.wait(self.client.read_timeout)
                except TransportError as e:
                    if e.phase == "dropped" and not self._chunked and self._length is None:
                        continue  # a close-delimited body: the close is its end
                    raise
        except BaseException:
            self._released = True
            conn.close()
            raise

    def take(self) -> bytes:
        """The body bytes in the buffer now, without waiting (b"" when none); sets `done` and
        releases the connection after the last of them. TransportError on a broken body."""
        if self._done:
            return b""
        conn = self.conn
        if self._chunked:
            piece = self._take_chunked(conn.buffer)
        elif self._length is not None:
            piece = bytes(conn.buffer[: self._length])
            del conn.buffer[: len(piece)]
            self._length -= len(piece)
            if not self._length:
                self._done = True
        else:  # the body ends when the connection does
            piece = bytes(conn.buffer)
            conn.buffer.clear()
            if not piece and conn.closed:
                self._done = True
        if self._done:
            self._finish()
        return piece

    @property
    def done(self) -> bool:
        """The whole body has been taken."""
        return self._done

    @property
    def close_delimited(self) -> bool:
        """The body ends when the connection does (no length, not chunked)."""
        return not self._chunked and self._length is None

    def _take_chunked(self, buffer: bytearray) -> bytes:
        """Decode what `buffer` holds of a chunked body; sets `_done` after the last chunk.
        Runs once per read of a stream, so it walks the buffer by index and cuts it once."""
        out: list[bytes | bytearray] = []
        pos, size_of_buffer, left = 0, len(buffer), self._chunk_left
        if not left and not self._trailers:
            # Whole chunks, one after the other (what a stream's read usually holds): one regex
            # match and one slice each. Anything else (a chunk still arriving, the last chunk,
            # odd size lines) is left to the general walk below.
            match = _CHUNK_HEAD.match(buffer)
            while match is not None:
                start = match.end()
                stop = start + int(match[1], 16)
                if stop == start or buffer[stop : stop + 2] != b"\r\n":
                    break
                out.append(buffer[start:stop])
                pos = stop + 2
                match = _CHUNK_HEAD.match(buffer, pos)
        try:
            while pos < size_of_buffer:
                if left > 0:  # inside a chunk's data
                    take = min(left, size_of_buffer - pos)
                    out.append(buffer[pos : pos + take])
                    pos += take
                    left -= take
                    if left:
                        break
                    left = -1  # its closing line break comes next
                if left == -1:
                    if size_of_buffer - pos < 2:
                        break
                    if buffer[pos : pos + 2] != b"\r\n":
                        raise TransportError("dropped", "broken chunked body: no line break after a chunk")
                    pos += 2
                    left = 0
                    continue
                end = buffer.find(b"\r\n", pos)
                if end < 0:
                    if size_of_buffer - pos > _MAX_HEAD:
                        raise TransportError("dropped", "broken chunked body: a chunk-size line without end")
                    break
                line = bytes(buffer[pos:end])
                pos = end + 2
                if self._trailers:
                    if not line:  # the empty line after the trailers: the body is over
                        self._done = True
                        break
                    continue
                try:
                    size = int(line.partition(b";")[0], 16)
                except ValueError:
                    raise TransportError("dropped", f"broken chunked body: {line[:40]!r}") from None
                if size > 0:
                    if buffer[pos + size : pos + size + 2] == b"\r\n":  # the whole chunk is here
                        out.append(buffer[pos : pos + size])
                        pos += size + 2
                    else:
                        left = size
                elif size == 0:
                    self._trailers = True
                else:
                    raise TransportError("dropped", f"broken chunked body: {line[:40]!r}")
        finally:
            del buffer[:pos]
            self._chunk_left = left
        return b"".join(out)

    def _finish(self) -> None:
        self._done = True
        self.release()

    def release(self) -> None:
        """Back to the pool if the whole body was read, else close (the server stops). Idempotent:
        a connection must never be pooled twice (two requests would share it)."""
        if self._released:
            return
        self._released = True
        if self._done and self._reusable and not self.conn.closed and not self.conn.buffer:
            self.client.put_back(self.conn)
        else:
            self.conn.close()


class Http1Client:
    """Pooled keep-alive connections to one http:// origin."""

    def __init__(
        self,
        base_url: str,
        headers: dict[str, str],
        *,
        connect_timeout: float,
        read_timeout: float,
        max_idle: int = 64,
    ) -> None:
        url = urlsplit(base_url)
        if url.scheme != "http" or not url.hostname:
            raise ValueError("Http1Client speaks plain http:// only")
        self.host = url.hostname
        self.port = url.port or 80
        self.prefix = url.path.rstrip("/")
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_idle = max_idle
        host_header = f"[{self.host}]" if ":" in self.host else self.host
        if url.port:
            host_header += f":{url.port}"
        lines = [
            f"Host: {host_header}",
            "Connection: keep-alive",
            "Accept: */*",
            "User-Agent: byenatos",
            "Content-Type: application/json",
            *(f"{k}: {v}" for k, v in headers.items()),
        ]
        for line in lines:
            if "\r" in line or "\n" in line:
                raise ValueError("header values must not contain line breaks")
        self._head = ("\r\n".join(lines) + "\r\n").encode("latin-1")
        self._idle: list[Http1Connection] = []

    def put_back(self, conn: Http1Connection) -> None:
        conn.listener = None
        if len(self._idle) < self.max_idle:
            conn.received = 0
            self._idle.append(conn)
        else:
            conn.close()

    async def connect(self) -> Http1Connection:
        """A new connection to the origin (TransportError "connect" if it cannot be made)."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, conn = await loop.create_connection(lambda: Http1Connection(loop), self.host, self.port)
        except TimeoutError:
            raise TransportError("connect", "timed out connecting") from None
        except OSError as e:
            raise TransportError("connect", f"cannot connect: {e.strerror or e}") from None
        return conn

    def render(self, method: str, path: str, body: bytes) -> bytes:
        """The request's bytes on the wire."""
        return (
            f"{method} {self.prefix}{path} HTTP/1.1\r\n".encode("latin-1")
            + self._head
            + b"Content-Length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )

    def has_idle(self) -> bool:
        """Whether a kept-alive connection is ready for a request now (closed ones are dropped)."""
        idle = self._idle
        while idle and idle[-1].closed:
            idle.pop().close()
        return bool(idle)

    def take_idle(self) -> Http1Connection | None:
        """A kept-alive connection for a request, or None; the caller puts it back through
        its Response (`release`) or closes it."""
        return self._idle.pop() if self.has_idle() else None

    async def request(self, method: str, path: str, body: bytes) -> Response:
        """Send; return once the status line and headers are in."""
        request = self.render(method, path, body)
        while self._idle:
            conn = self._idle.pop()
            if conn.closed:
                conn.close()
                continue
            try:
                return await self._exchange(conn, request)
            except TransportError as e:
                if e.phase != "dropped" or conn.received:
                    raise
                # the server closed this idle connection as we reused it; nothing was answered
        return await self._exchange(await self.connect(), request)

    async def _exchange(self, conn: Http1Connection, request: bytes) -> Response:
        assert conn.transport is not None
        try:
            conn.transport.write(request)
            end = conn.buffer.find(b"\r\n\r\n")
            while end < 0:
                if len(conn.buffer) > _MAX_HEAD:
                    raise TransportError("dropped", "the server's answer headers are too large")
                await conn.wait(self.read_timeout)
                end = conn.buffer.find(b"\r\n\r\n")
        except BaseException:
            conn.close()
            raise
        return self.parse_head(conn, end)

    def parse_head(self, conn: Http1Connection, end: int) -> Response:
        """The answer whose head ends at `end` in the connection's buffer (the blank line
        excluded); the head is cut from the buffer. TransportError if it is not HTTP."""
        head = bytes(conn.buffer[:end])
        del conn.buffer[: end + 4]
        status_line, _, fields = head.partition(b"\r\n")
        try:
            status = int(status_line.split(b" ", 2)[1])
        except (IndexError, ValueError):
            conn.close()
            raise TransportError("dropped", f"not an HTTP answer: {status_line[:60]!r}") from None
        # The framing headers are found with C-speed searches of the lower-cased block; the
        # rest is parsed only when asked for (an error answer's Retry-After, say).
        lowered = b"\r\n" + fields.lower()
        chunked = b"chunked" in _field(lowered, b"\r\ntransfer-encoding:")
        length = None if chunked else _int(_field(lowered, b"\r\ncontent-length:"))
        if status in (204, 304) or 100 <= status < 200:
            length = 0
        reusable = (chunked or length is not None) and _field(lowered, b"\r\nconnection:") != b"close"
        return Response(status, fields, conn, self, chunked, length, reusable)

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def _field(lowered: bytes, prefix: bytes) -> bytes:
    """The value of the header line starting with `prefix` (CR LF, the lower-cased name and
    its colon) in a lower-cased header block that starts with a line break; b"" if absent."""
    start = lowered.find(prefix)
    if start < 0:
        return b""
    start += len(prefix)
    end = lowered.find(b"\r\n", start)
    return lowered[start : end if end >= 0 else len(lowered)].strip()


def _parse_headers(fields: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in fields.decode("latin-1").split("\r\n"):
        name, _, value = line.partition(":")
        if name:
            headers[name.strip().lower()] = value.strip()
    return headers


def _int(value: bytes) -> int | None:
    if not value:
        return None
    try:
        return max(0, int(value))
    except ValueError:
        return None
