"""The gateway's HTTP/1.1 server: an asyncio protocol over httptools (llhttp, Node's parser).

One `Connection` per client socket; requests on it are answered one at a time, in order
(pipelined ones wait their turn). What it does for the routes in `app.kernel.gateway.web`:

- framing: Content-Length for whole responses, chunked for streams (close-delimited for
  HTTP/1.0 clients), keep-alive as the client asks, `Expect: 100-continue`, HEAD;
- limits: request line + headers at most 64 KiB and 128 fields (431), bodies up to the
  application's `client_max_size` (the handler gets HTTPRequestEntityTooLarge, the
  connection closes after the answer instead of reading the rest), malformed requests 400;
  in a chunked body, a chunk's size line with its extensions at most 16 KiB (400) and the
  trailers as the head (431): llhttp reads both without counting them, so a client could
  otherwise send them without end (Node's CVE-2024-22019). `ChunkedFraming` follows the
  chunked framing next to llhttp, which the connection feeds message by message for that;
- a client that hangs up cancels its handler at once (the upstream request stops with it);
- idle keep-alive connections close after `keepalive_timeout`, and `close()` lets requests in
  flight finish for up to `shutdown_timeout` before cancelling them;
- writes: a whole response is one `transport.write`; a stream's headers go out with its
  first piece of body; writers wait while the client is not reading (flow control).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import httptools

from app.kernel.gateway.web import (
    Application,
    CIHeaders,
    HTTPBadRequest,
    HTTPException,
    HTTPRequestHeaderFieldsTooLarge,
    Request,
    Response,
    StreamResponse,
    reason_of,
)

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 64 * 1024
MAX_HEADERS = 128
MAX_CHUNK_LINE = 16 * 1024  # a chunk's size line with its extensions, CRLF included (Node's limit)
_HEAD_END = b"\r\n\r\n"
_MAX_PENDING = 16  # pipelined requests queued before the connection stops reading
_FRAMING = frozenset({"content-length", "transfer-encoding", "connection"})  # the server sets these
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_date_cache: list[Any] = [0, "", b""]
# CIHeaders lower-cases names in its own methods; the parser has them lower-cased already.
_dict_contains, _dict_getitem, _dict_setitem = dict.__contains__, dict.__getitem__, dict.__setitem__


def _date() -> str:
    """The Date header, rebuilt once a second; English names whatever the process locale
    (Qt sets the C library's locale from the environment)."""
    now = int(time.time())
    if _date_cache[0] != now:
        t = time.gmtime(now)
        _date_cache[0] = now
        _date_cache[1] = (
            f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year} "
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
        )
        _date_cache[2] = _date_cache[1].encode()
    return _date_cache[1]


_time = time.time
_FAST_JSON_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
_FAST_STREAM_HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                     b"X-Accel-Buffering: no\r\nTransfer-Encoding: chunked\r\nDate: ")
_FAST_HEAD_END = b"\r\nServer: ByenatOS\r\n\r\n"
_FAST_CLOSE_END = b"\r\nServer: ByenatOS\r\nConnection: close\r\n\r\n"


def _date_bytes() -> bytes:
    _date()
    return _date_cache[2]


def header_lines(headers: dict[str, str]) -> str:
    """The handler's headers as wire lines, minus the framing ones the server sets itself.
    A line break in a name or value is refused: it would let a value inject headers."""
    lines = []
    for name, value in headers.items():  # a loop, not a comprehension: no extra frame per response
        if name.lower() not in _FRAMING:
            lines.append(f"{name}: {value}\r\n")
    block = "".join(lines)
    # One count over the whole block instead of four tests per header: each line ends with the
    # one CR LF it was given, so any other line break came from a name or a value.
    if block.count("\n") != len(lines) or block.count("\r") != len(lines):
        raise ValueError("a response header name or value contains a line break")
    return block


class _HeadTooLarge(Exception):
    pass


class ChunkedFraming:
    """The framing of one chunked request body, followed byte for byte next to llhttp: llhttp
    checks the syntax and hands over the data, but neither limits nor reports how long a
    chunk's extensions or the trailers are. `scan` sees each piece of the body before llhttp
    does, skips chunk data by count and reads only the size lines and trailer lines, so the
    cost is a `find` per line, not per byte."""

    __slots__ = ("fields", "left", "line", "size_line", "trailer_bytes", "trailers")

    def __init__(self) -> None:
        self.left = 0  # chunk data (and its CRLF) still to skip
        self.line = 0  # bytes of the line being read so far
        self.size_line = b""  # the start of the size line being read (enough to read the size)
        self.trailers = False  # past the last chunk: trailer lines until an empty one
        self.trailer_bytes = 0
        self.fields = 0

    def scan(self, data: bytes, pos: int = 0) -> int:
        """Follow `data[pos:]`: where in it the body ends (-1: not in it). HTTPException (400,
        431) when a size line or the trailers pass their limit."""
        n = len(data)
        while pos < n:
            if self.left:  # chunk data, then the CRLF after it (llhttp checks that it is one)
                take = min(self.left, n - pos)
                pos += take
                self.left -= take
                continue
            lf = data.find(b"\n", pos)
            stop = n if lf < 0 else lf + 1
            self.line += stop - pos
            if self.trailers:
                self.trailer_bytes += stop - pos
                if self.trailer_bytes > MAX_HEAD_BYTES:
                    raise HTTPRequestHeaderFieldsTooLarge(reason="the chunked body's trailers are too large")
            else:
                if len(self.size_line) < 32:
                    self.size_line += data[pos : min(stop, pos + 32)]
                if self.line > MAX_CHUNK_LINE:
                    raise HTTPBadRequest(reason=f"a chunk's extensions are too large (more than "
                                                f"{MAX_CHUNK_LINE // 1024} KiB)")
            if lf < 0:
                return -1
            pos = stop
            if self.trailers:
                if self.line <= 2:  # the empty line after the trailers: the body is over
                    return pos
                self.fields += 1
                if self.fields > MAX_HEADERS:
                    raise HTTPRequestHeaderFieldsTooLarge(reason="the chunked body has too many trailers")
            else:
                try:
                    size = int(self.size_line.partition(b";")[0], 16)
                except ValueError:
                    raise HTTPBadRequest(reason="malformed chunked body: a chunk size that is not hex") from None
                self.size_line = b""
                if size:
                    self.left = size + 2
                else:
                    self.trailers = True
            self.line = 0
        return -1


class FastCall(Protocol):
    """A request a fast path took: what the connection tells it while it runs."""

    def client_gone(self) -> None: ...  # the client hung up
    def pause(self) -> None: ...  # the client stopped reading (its socket buffer is full)
    def resume(self) -> None: ...  # it reads again


class FastPath(Protocol):
    """A hook that may serve a request straight from `Connection.data_received`, before the
    parser sees it (the gateway's pass-through lane plugs in here). The transport knows
    nothing of routes: it offers the bytes of a new message and, if they are taken, gives the
    fast path the connection's `fast_*` methods to answer, end or hand the request back with."""

    unsettled: list[Any]  # answered calls whose settling is still due (non-empty: call settle())

    def offer(self, conn: Connection, data: bytes) -> bool: ...  # True: taken, do not parse
    def settle(self) -> None: ...  # settle answered calls now: a new request needs their resources
    def close(self) -> None: ...  # the server is closing


class Connection(asyncio.Protocol):
    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.app = server.app
        self.loop = server.loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self._fast = server.fast_path
        self._fast_call: FastCall | None = None  # the request being answered by the fast path
        self.last_activity = self.loop.time()
        self.lost = False
        self._closing = False  # answer what is in flight, then close
        # the message being received
        self._url = b""
        self._headers = CIHeaders()
        self._head_bytes = 0
        self._head_started: float | None = None  # when the request being received began
        self._receiving: Request | None = None
        # Where llhttp is in the byte stream, so that it is fed one message part at a time:
        # the last bytes of a head still arriving (its end may straddle two reads), the bytes
        # left of a Content-Length body, the framing of a chunked one.
        self._head_tail = b""
        self._body_left = 0
        self._chunks: ChunkedFraming | None = None
        # the message being answered, and the ones waiting behind it
        self._active: Request | None = None
        self._task: asyncio.Task[None] | None = None
        self._pending: deque[Request] = deque()
        self._reading_paused = False
        # writing
        self._stream_head: bytes | None = None
        self._head_only = False  # HEAD, 204, 304: headers without a body
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None

    # -- asyncio.Protocol ----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server.connections.add(self)

    def data_received(self, data: bytes) -> None:
        self.last_activity = self.loop.time()
        fast = self._fast
        if fast is not None and fast.unsettled:
            fast.settle()  # the calls answered just now: their connections and slots are needed again
        if self._closing:
            return  # after a request we will not answer in full, the rest is not read
        if (
            fast is not None
            and self._active is None
            and self._receiving is None
            and self._head_started is None  # between messages: the parser holds nothing
            and not self._head_tail
            and fast.offer(self, data)
        ):
            return
        self._feed(data)

    def _feed(self, data: bytes) -> None:
        """Hand `data` to llhttp a message part at a time (a head, a body, the next head…), so
        that a chunked body's framing is known at every byte (ChunkedFraming) and checked
        before llhttp reads it. A head and its body in one read are two calls."""
        pos, n = 0, len(data)
        view: memoryview | None = None
        while pos < n and not self._closing:
            chunks = self._chunks
            if chunks is not None:  # a chunked body
                try:
                    end = chunks.scan(data, pos)
                except HTTPException as e:
                    self._refuse_body(e)
                    return
                if end >= 0:
                    self._chunks = None
            elif self._body_left:  # a Content-Length body
                end = min(n, pos + self._body_left)
                self._body_left -= end - pos
            else:  # a head (or the empty lines before one)
                tail = self._head_tail
                at = (tail + data[pos : pos + 4]).find(_HEAD_END) if tail else -1
                if at >= 0:  # the head's end straddles the last read and this one
                    end = pos + at + 4 - len(tail)
                else:
                    end = data.find(_HEAD_END, pos)
                    if end >= 0:
                        end += 4
                if end < 0:
                    self._head_tail = (tail + data[pos:])[-3:]
                else:
                    self._head_tail = b""
            stop = n if end < 0 else end
            if pos == 0 and stop == n:
                self._parse(data)
                return
            if view is None:
                view = memoryview(data)
            self._parse(view[pos:stop])
            pos = stop

    def _parse(self, data: bytes | memoryview) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._closing = True  # no upgrades here (no WebSocket routes): answer, then close
        except httptools.HttpParserCallbackError as e:
            if isinstance(e.__context__, _HeadTooLarge):
                self._refuse(431, "request headers too large")
            else:
                raise
        except httptools.HttpParserError as e:
            self._refuse(400, f"malformed HTTP request: {e}")

    def _refuse_body(self, error: HTTPException) -> None:
        """The chunked body being received broke a framing limit: nothing more is read; its
        handler gets `error` (answered in the caller's format), then the connection closes."""
        self._closing = True
        self._chunks = None
        request, self._receiving = self._receiving, None
        if request is None:
            self._close()
            return
        request.refused = error
        request.keep_alive = False
        request.body.clear()
        if request is self._active or request in self._pending:
            _wake(request)  # its handler, waiting for the body, answers the error
        else:
            self._close()  # answered already (it never read its body)

    def eof_received(self) -> bool:
        # The client closed its side. Treated as gone (as aiohttp does): its handler is
        # cancelled, which is what stops an upstream generation nobody will read.
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.server.connections.discard(self)
        if self._task is not None:
            self._task.cancel()  # the client went away: stop its work (and its upstream request)
        call, self._fast_call = self._fast_call, None
        if call is not None:
            self._active = None
            call.client_gone()
            self.server.fast_call_settled(call)
        for request in (self._receiving, self._active):
            if request is not None:
                _wake(request)
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionResetError("the client closed the connection"))

    def pause_writing(self) -> None:
        self._write_paused = True
        if self._fast_call is not None:
            self._fast_call.pause()

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._fast_call is not None:
            self._fast_call.resume()
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- httptools callbacks -------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = CIHeaders()
        self._head_bytes = 0
        self._head_started = self.loop.time()

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_bytes += len(url)
        if self._head_bytes > MAX_HEAD_BYTES:
            raise _HeadTooLarge

    def on_header(self, name: bytes, value: bytes) -> None:
        # Called once per header line, so kept to the fewest Python operations (the number
        # of fields is checked once, when the head is complete).
        size = self._head_bytes = self._head_bytes + len(name) + len(value) + 4
        if size > MAX_HEAD_BYTES:
            raise _HeadTooLarge
        headers = self._headers
        key = name.decode("latin-1").lower()
        if _dict_contains(headers, key):
            _dict_setitem(headers, key, f"{_dict_getitem(headers, key)}, {value.decode('latin-1')}")
        else:
            _dict_setitem(headers, key, value.decode("latin-1"))

    def on_headers_complete(self) -> None:
        self._head_started = None
        if len(self._headers) > MAX_HEADERS:
            raise _HeadTooLarge
        parser = self.parser
        request = Request(self, self.app, parser.get_method().decode("latin-1"), self._url, self._headers,
                          parser.get_http_version(), parser.should_keep_alive())
        length = request.content_length
        if length is not None and length > self.app.client_max_size:
            request.body_too_large = length  # refused without reading it
            request.keep_alive = False
        if "chunked" in self._headers.get("transfer-encoding", "").lower():  # llhttp refuses any other last coding
            self._chunks = ChunkedFraming()
        elif length:
            self._body_left = length
        self._receiving = request
        if self._active is None:
            self._start(request)
        else:
            self._pending.append(request)
            if len(self._pending) >= _MAX_PENDING and self.transport is not None:
                self.transport.pause_reading()
                self._reading_paused = True

    def on_body(self, body: bytes) -> None:
        request = self._receiving
        if request is None or request.body_too_large:
            return
        if len(request.body) + len(body) > self.app.client_max_size:
            request.body_too_large = len(request.body) + len(body)
            request.keep_alive = False
            request.body.clear()
            _wake(request)  # a handler waiting for the body learns now, not after the upload
            return
        request.body += body

    def on_message_complete(self) -> None:
        request = self._receiving
        if request is not None:
            request.body_complete = True
            self._receiving = None
            _wake(request)

    # -- the fast path's side (FastPath) ------------------------------------------------------
    def fast_began(self, call: FastCall) -> None:
        """The fast path took the request that just arrived; later ones wait behind it."""
        self._fast_call = call
        self._active = call  # type: ignore[assignment]  # only ever compared with None

    # The fast path's two writers are on the way to the client, where each Python call costs several
    # µs after an idle spell: one join each, the Date header's cache read in place (see _date).
    def fast_answer(self, body: bytes) -> None:
        """The fast path's answer: 200, JSON, as the general path renders it."""
        transport = self.transport
        if self.lost or transport is None or transport.is_closing():
            return
        if _date_cache[0] != int(_time()):
            _date()
        transport.write(b"".join((_FAST_JSON_HEAD, str(len(body)).encode(), b"\r\nDate: ", _date_cache[2],
                                  _FAST_CLOSE_END if self._closing else _FAST_HEAD_END, body)))

    def fast_stream(self, data: bytes, *, end: bool) -> None:
        """A piece of the fast path's event stream (the head before the first), chunked as the
        general path sends it; `end`: the last piece, and the end of the body."""
        transport = self.transport
        if self.lost or transport is None or transport.is_closing():
            return
        tail = b"\r\n0\r\n\r\n" if end else b"\r\n"
        if self._stream_head is None:
            self._stream_head = b""  # sent: only the first piece carries it
            if _date_cache[0] != int(_time()):
                _date()
            head = (_FAST_STREAM_HEAD, _date_cache[2], _FAST_CLOSE_END if self._closing else _FAST_HEAD_END)
            if data:
                transport.write(b"".join((*head, b"%x\r\n" % len(data), data, tail)))
            else:
                transport.write(b"".join((*head, b"0\r\n\r\n" if end else b"")))
        elif data:
            transport.write(b"".join((b"%x\r\n" % len(data), data, tail)))
        elif end:
            transport.write(b"0\r\n\r\n")

    def fast_ended(self, call: FastCall) -> None:
        """The fast path answered: on to the next request, as `_done` does."""
        if self._fast_call is not call:
            return
        self._fast_call = None
        self.server.fast_call_settled(call)
        self._active = None
        self._stream_head = None
        if self.lost:
            return
        if self._closing:
            self._close()
            return
        self.last_activity = self.loop.time()
        if self._pending:
            if self._reading_paused and self.transport is not None:
                self.transport.resume_reading()
                self._reading_paused = False
            self._start(self._pending.popleft())

    def fast_hand_over(self, call: FastCall, request: Request, on_end: Callable[[], None]) -> None:
        """The fast path cannot finish `request` alone: a task serves it on the general path,
        then calls `on_end` (whatever the fast path still held is given back there)."""
        if self._fast_call is call:
            self._fast_call = None
            self.server.fast_call_settled(call)
        self._active = request
        self._task = self.loop.create_task(self._serve_then(request, on_end))

    async def _serve_then(self, request: Request, on_end: Callable[[], None]) -> None:
        try:
            await self._serve(request)
        finally:
            on_end()

    # -- answering -----------------------------------------------------------------------------
    def _start(self, request: Request) -> None:
        self._active = request
        if (
            not request.body_complete
            and not request.body_too_large
            and request.version == "1.1"
            and request.headers.get("expect", "").lower() == "100-continue"
            and self.transport is not None
        ):
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self._task = self.loop.create_task(self._serve(request))

    async def _serve(self, request: Request) -> None:
        response: StreamResponse | None = None
        try:
            try:
                response = await self.app.handle(request)
            except HTTPException as e:
                response = Response(status=e.status, text=e.reason, headers=e.headers)
            if not response.prepared:
                await response.prepare(request)
            if not response.eof_sent:
                await response.write_eof()
        except asyncio.CancelledError:
            self._abort()  # the client left, or the server is shutting down
            return
        except ConnectionError:
            self._abort()
            return
        except Exception:
            log.exception("unhandled error answering %s %s", request.method, request.path)
            if response is not None and response.prepared:
                self._abort()  # part of an answer is out: the client must see it cut off
                return
            try:
                await Response(status=500, text="500 Internal Server Error").prepare(request)
            except ConnectionError:
                self._abort()
                return
        self._done(request)

    def _done(self, request: Request) -> None:
        self._active = self._task = None
        self._stream_head = None
        if self.lost:
            return
        if not request.keep_alive or self._closing:
            self._close()
            return
        self.last_activity = self.loop.time()
        if self._pending:
            if self._reading_paused and self.transport is not None:
                self.transport.resume_reading()
                self._reading_paused = False
            self._start(self._pending.popleft())

    def _abort(self) -> None:
        self._active = self._task = None
        self._close()

    def _close(self) -> None:
        self._closing = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def _refuse(self, status: int, message: str) -> None:
        """A request that cannot be parsed: answer it plainly (if nothing else is being
        answered on this connection) and close."""
        self._closing = True
        if self._active is not None or self.transport is None:
            return  # the answer in progress finishes, then the connection closes
        body = message.encode()
        self.transport.write(
            f"HTTP/1.1 {status} {reason_of(status)}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode("latin-1") + body
        )
        self._close()

    # -- called by Request and the responses ---------------------------------------------------
    async def wait_for_body(self, request: Request) -> None:
        while not request.body_complete and not request.body_too_large and request.refused is None:
            if self.lost:
                raise ConnectionResetError("the client closed the connection")
            request.body_waiter = self.loop.create_future()
            await request.body_waiter

    def _render_head(self, request: Request, response: StreamResponse, length: int | None) -> bytes:
        status = response.status
        parts = [f"HTTP/1.1 {status} {response.reason or reason_of(status)}\r\n", header_lines(response.headers)]
        bodiless = status in (204, 304) or status < 200
        if bodiless:
            pass
        elif length is not None:
            parts.append(f"Content-Length: {length}\r\n")
        elif response.chunked:
            parts.append("Transfer-Encoding: chunked\r\n")
        else:
            request.keep_alive = False  # HTTP/1.0 stream: the body ends when the connection does
        parts.append(f"Date: {_date()}\r\nServer: ByenatOS\r\n")
        if not request.keep_alive or self._closing:
            parts.append("Connection: close\r\n")
        elif request.version == "1.0":
            parts.append("Connection: keep-alive\r\n")
        parts.append("\r\n")
        return "".join(parts).encode("latin-1")

    def send_whole(self, request: Request, response: Response) -> None:
        body = response.body
        head = self._render_head(request, response, len(body))
        if self.lost or self.transport is None or self.transport.is_closing():
            raise ConnectionResetError("the client closed the connection")
        bodiless = request.method == "HEAD" or response.status in (204, 304)
        self.transport.write(head if bodiless or not body else head + body)

    def start_stream(self, request: Request, response: StreamResponse) -> None:
        self._stream_head = self._render_head(request, response, None)
        self._head_only = request.method == "HEAD" or response.status in (204, 304)
        self.loop.call_soon(self._flush_head)

    def _flush_head(self) -> None:
        head, self._stream_head = self._stream_head, None
        if head is not None and self.transport is not None and not self.transport.is_closing():
            self.transport.write(head)

    async def write_body(self, response: StreamResponse, data: bytes, *, last: bool) -> None:
        if self.lost or self.transport is None or self.transport.is_closing():
            raise ConnectionResetError("the client closed the connection")
        head, self._stream_head = self._stream_head, None
        if self._head_only:
            out = b""
        elif response.chunked:
            out = (b"%x\r\n%b\r\n" % (len(data), data) if data else b"") + (b"0\r\n\r\n" if last else b"")
        else:
            out = data
        if head is not None:
            out = head + out
        if out:
            self.transport.write(out)
        if self._write_paused and not last:
            self._drain_waiter = self.loop.create_future()
            await self._drain_waiter

    @property
    def idle(self) -> bool:
        return self._active is None and self._receiving is None and not self._pending


def _wake(request: Request) -> None:
    waiter, request.body_waiter = request.body_waiter, None
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


class HttpServer:
    """Serves an Application on a listening socket."""

    def __init__(self, app: Application, *, keepalive_timeout: float = 75.0, head_timeout: float = 30.0,
                 shutdown_timeout: float = 5.0, fast_path: FastPath | None = None,
                 before_close: Callable[[], None] | None = None) -> None:
        self.app = app
        self.fast_path = fast_path  # serves some requests in callbacks, before the parser (FastPath)
        # Called at shutdown once the requests in flight are answered, before the handlers'
        # tasks are waited for (the gateway drains the bookkeeping of the last answers there).
        self.before_close = before_close
        self._fast_waiters: dict[Any, asyncio.Future[None]] = {}  # at shutdown: fast calls to wait for
        self.keepalive_timeout = keepalive_timeout
        self.head_timeout = head_timeout  # a request line and headers trickling in slower are refused
        self.shutdown_timeout = shutdown_timeout
        self.connections: set[Connection] = set()
        self.loop = asyncio.get_running_loop()
        self._server: asyncio.AbstractServer | None = None
        self._sweeper: asyncio.TimerHandle | None = None

    async def start(self, sock: socket.socket, *, backlog: int = 1024) -> None:
        self._server = await self.loop.create_server(lambda: Connection(self), sock=sock, backlog=backlog)
        self._schedule_sweep()

    @property
    def addresses(self) -> list[Any]:
        return [s.getsockname() for s in self._server.sockets] if self._server is not None else []

    def _schedule_sweep(self) -> None:
        self._sweeper = self.loop.call_later(min(10.0, self.keepalive_timeout, self.head_timeout), self._sweep)

    def _sweep(self) -> None:
        """Close connections idle past the keep-alive timeout, and answer 408 to requests whose
        headers are still arriving after `head_timeout` (a slow-loris client holds a socket
        and a parser per connection while sending a byte now and then)."""
        now = self.loop.time()
        for conn in list(self.connections):
            if conn._head_started is not None and now - conn._head_started > self.head_timeout:
                conn._refuse(408, "the request headers took too long to arrive")
            elif conn._active is None and conn.last_activity < now - self.keepalive_timeout:
                conn._close()
        self._schedule_sweep()

    def fast_call_settled(self, call: Any) -> None:
        waiter = self._fast_waiters.pop(call, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self.fast_path is not None:
            self.fast_path.close()  # the answered calls settled: their connections may close now
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            if conn._active is None:
                conn._close()
            else:
                conn._closing = True  # finish this answer, then close
        fast_calls = [c._fast_call for c in self.connections if c._fast_call is not None]
        if fast_calls:
            waiters = [self._fast_waiters.setdefault(call, self.loop.create_future()) for call in fast_calls]
            await asyncio.wait(waiters, timeout=self.shutdown_timeout)
        if self.before_close is not None:
            self.before_close()
        busy = [c._task for c in self.connections if c._task is not None]
        if busy:
            _, late = await asyncio.wait(busy, timeout=self.shutdown_timeout)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=1.0)
        for conn in list(self.connections):
            conn._close()
        self._server = None
