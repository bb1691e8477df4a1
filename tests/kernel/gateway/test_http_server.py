"""The gateway's HTTP/1.1 server over raw sockets: framing, keep-alive, limits, cancellation."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.kernel.gateway import web
from app.kernel.gateway.http_server import (
    MAX_CHUNK_LINE,
    MAX_HEAD_BYTES,
    MAX_HEADERS,
    ChunkedFraming,
    HttpServer,
    header_lines,
)


class Probe:
    """What the handlers saw, for the tests to await on."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.cancelled = asyncio.Event()
        self.release = asyncio.Event()


@pytest.fixture
async def probe() -> Probe:
    return Probe()


@pytest.fixture
async def server(probe):
    app = web.Application(client_max_size=1000)

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        return web.json_response(
            {"method": request.method, "path": request.path, "query": request.query, "body": body.decode(),
             "ua": request.headers.get("user-agent")}
        )

    async def item(request: web.Request) -> web.Response:
        return web.Response(text=request.match_info["name"])

    async def model(request: web.Request) -> web.Response:
        return web.Response(text=request.match_info["model_id"])

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for i in range(3):
            await response.write(f"data: {i}\n\n".encode())
        await response.write_eof(b"data: [DONE]\n\n")
        return response

    async def slow(request: web.Request) -> web.Response:
        probe.started.set()
        try:
            await probe.release.wait()
        except asyncio.CancelledError:
            probe.cancelled.set()
            raise
        return web.Response(text="finished")

    async def boom(request: web.Request) -> web.Response:
        raise RuntimeError("a bug")

    app.router.add_post("/echo", echo)
    app.router.add_get("/echo", echo)
    app.router.add_get("/items/{name}", item)
    app.router.add_get("/models/{model_id:.+}", model)
    app.router.add_get("/stream", stream)
    app.router.add_get("/slow", slow)
    app.router.add_get("/boom", boom)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    srv = HttpServer(app, shutdown_timeout=2.0)
    await srv.start(sock)
    srv.port = sock.getsockname()[1]
    try:
        yield srv
    finally:
        await srv.close()


@pytest.fixture
async def http(server):
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", trust_env=False) as c:
        yield c


async def raw(server, data: bytes, *, until_close: bool = True) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(data)
    await writer.drain()
    try:
        return await (reader.read() if until_close else reader.read(65536))
    finally:
        writer.close()


async def test_json_round_trip_with_query_and_path_parameters(http):
    r = await http.post("/echo?a=1&a=2&b=", content=b"hello", headers={"User-Agent": "t"})
    assert r.status_code == 200
    assert r.json() == {"method": "POST", "path": "/echo", "query": {"a": "1", "b": ""}, "body": "hello", "ua": "t"}
    assert r.headers["content-type"] == "application/json" and r.headers["date"]
    assert (await http.get("/items/a%20b")).text == "a b"
    assert (await http.get("/models/up/gpt-x")).text == "up/gpt-x"  # {name:.+} spans slashes


async def test_unknown_route_404_and_wrong_method_405_with_allow(http):
    assert (await http.get("/nope")).status_code == 404
    r = await http.delete("/echo")
    assert r.status_code == 405 and set(r.headers["allow"].split(",")) == {"GET", "HEAD", "POST"}


async def test_head_has_the_length_but_no_body(server):
    answer = await raw(server, b"HEAD /items/abc HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and b"Content-Length: 3" in head and body == b""


async def test_keep_alive_and_pipelined_requests_are_answered_in_order(server):
    requests = b"".join(
        f"GET /items/{n} HTTP/1.1\r\nHost: x\r\n{'Connection: close' if n == 'c' else 'X: y'}\r\n\r\n".encode()
        for n in ("a", "b", "c")
    )
    answer = await raw(server, requests)
    assert answer.count(b"HTTP/1.1 200 OK") == 3
    assert [answer.index(b"\r\n\r\n" + n) for n in (b"a", b"b", b"c")] == sorted(
        answer.index(b"\r\n\r\n" + n) for n in (b"a", b"b", b"c")
    )


async def test_http_1_0_client_gets_close_delimited_stream(server):
    answer = await raw(server, b"GET /stream HTTP/1.0\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding" not in head and b"Connection: close" in head
    assert body == b"data: 0\n\ndata: 1\n\ndata: 2\n\ndata: [DONE]\n\n"


async def test_stream_is_chunked_and_read_by_a_client(http):
    async with http.stream("GET", "/stream") as r:
        assert r.headers["transfer-encoding"] == "chunked"
        body = b"".join([part async for part in r.aiter_bytes()])
    assert body == b"data: 0\n\ndata: 1\n\ndata: 2\n\ndata: [DONE]\n\n"


async def test_chunked_request_body(server):
    answer = await raw(
        server,
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
    )
    assert b'"body":"abcde"' in answer


CHUNKED_HEAD = b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"


async def test_a_20_kb_chunk_extension_is_refused(server):
    # Node's CVE-2024-22019: llhttp reads chunk extensions without counting them.
    body = b"5;" + b"a" * 20_000 + b"\r\nhello\r\n0\r\n\r\n"
    answer = await asyncio.wait_for(raw(server, CHUNKED_HEAD + b"\r\n" + body), 10)
    assert answer.startswith(b"HTTP/1.1 400") and b"Connection: close" in answer
    assert b"extensions are too large" in answer


async def test_a_chunk_extension_without_end_is_refused_before_it_ends(server):
    """The extension trickles in and never ends: the answer comes once the limit is passed,
    while the client is still sending, and the connection closes (no read without end)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(CHUNKED_HEAD + b"\r\n5;x=")
    sent = 0
    while sent <= MAX_CHUNK_LINE:
        try:
            writer.write(b"b" * 1024)
            await writer.drain()
        except ConnectionError:  # refused and closed as the last KiB went out
            break
        sent += 1024
    answer = await asyncio.wait_for(reader.read(), 5)  # the answer, then the end: the server closed
    assert answer.startswith(b"HTTP/1.1 400") and b"Connection: close" in answer
    writer.close()


async def test_chunked_trailers_are_bounded_like_the_head(server):
    big = b"0\r\nX-Trailer: " + b"t" * (MAX_HEAD_BYTES + 10) + b"\r\n\r\n"
    assert (await asyncio.wait_for(raw(server, CHUNKED_HEAD + b"\r\n" + big), 10)).startswith(b"HTTP/1.1 431")
    many = b"0\r\n" + b"".join(b"X-T%d: v\r\n" % i for i in range(MAX_HEADERS + 1)) + b"\r\n"
    assert (await asyncio.wait_for(raw(server, CHUNKED_HEAD + b"\r\n" + many), 10)).startswith(b"HTTP/1.1 431")


async def test_chunk_extensions_and_trailers_within_the_limits_are_read(server):
    ext = b";name=" + b"v" * 1000 + b';q="quoted"'
    body = b"3" + ext + b"\r\nabc\r\n2\r\nde\r\n0\r\nX-Checksum: 1\r\n\r\n"
    answer = await raw(server, CHUNKED_HEAD + b"Connection: close\r\n\r\n" + body)
    assert answer.startswith(b"HTTP/1.1 200") and b'"body":"abcde"' in answer


async def test_pipelined_requests_around_a_chunked_one_byte_by_byte(server):
    """The connection feeds llhttp a message part at a time: a Content-Length request, a
    chunked one and a last one in one stream, sent a byte per write, are all answered."""
    stream = (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nxyz"
              + CHUNKED_HEAD + b"\r\n3;e=1\r\nabc\r\n0\r\n\r\n"
              + b"GET /items/last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.transport.set_write_buffer_limits(0)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for i in range(len(stream)):
        writer.write(stream[i : i + 1])
        await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    assert answer.count(b"HTTP/1.1 200 OK") == 3
    assert b'"body":"xyz"' in answer and b'"body":"abc"' in answer and answer.endswith(b"last")


async def test_a_chunked_request_pipelined_behind_another_in_one_write_is_bounded_too(server):
    first = b"GET /items/a HTTP/1.1\r\nHost: x\r\n\r\n"
    answer = await asyncio.wait_for(
        raw(server, first + CHUNKED_HEAD + b"\r\n5;" + b"a" * 20_000 + b"\r\nhello\r\n0\r\n\r\n"), 10)
    # the request before it is answered, and the connection closes: the chunked one is not served
    assert answer.startswith(b"HTTP/1.1 200") and b"Connection: close" in answer
    assert answer.count(b"HTTP/1.1") == 1 and b"hello" not in answer


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 300), max_size=6),
    ext=st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"").replace(b"\r", b"")),
    trailers=st.lists(st.sampled_from([b"A: 1\r\n", b"Checksum: abc\r\n"]), max_size=3),
    cuts=st.lists(st.integers(0, 3000), max_size=8),
)
def test_chunked_framing_finds_the_body_end_however_the_reads_fall(sizes, ext, trailers, cuts):
    body = b"".join(b"%x;%b\r\n%b\r\n" % (n, ext, b"\n" * n) for n in sizes)
    body += b"0\r\n" + b"".join(trailers) + b"\r\n"
    stream = body + b"GET / HTTP/1.1\r\n\r\n"  # the next message, which must not be taken as body
    framing, at, end = ChunkedFraming(), 0, -1
    for cut in [*sorted({c % (len(stream) + 1) for c in cuts}), len(stream)]:
        if cut <= at or end >= 0:
            continue
        piece_end = framing.scan(stream[:cut], at)
        end, at = piece_end, cut
    assert end == len(body)


async def test_expect_100_continue_gets_the_interim_answer(server):
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
    assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(b"ok")
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    writer.close()


async def test_body_over_the_limit_is_413_without_reading_the_upload(server):
    # Content-Length says 10 MB; only the headers are sent, and the answer comes anyway.
    answer = await raw(server, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 500") is False
    # the echo handler's read() raised HTTPRequestEntityTooLarge; with no guard it becomes a plain 413
    assert answer.startswith(b"HTTP/1.1 413") and b"Connection: close" in answer


async def test_chunked_body_over_the_limit_is_413(server):
    chunk = b"%x\r\n%b\r\n" % (600, b"x" * 600)
    answer = await raw(
        server, b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk + chunk
    )
    assert answer.startswith(b"HTTP/1.1 413")


async def test_oversized_headers_get_431_and_malformed_requests_400(server):
    big = b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (MAX_HEAD_BYTES + 10) + b"\r\n\r\n"
    assert (await raw(server, big)).startswith(b"HTTP/1.1 431")
    assert (await raw(server, b"NOT HTTP AT ALL\r\n\r\n")).startswith(b"HTTP/1.1 400")
    smuggle = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    assert (await raw(server, smuggle)).startswith(b"HTTP/1.1 400")  # request smuggling refused


async def test_too_many_header_fields_get_431(server):
    fields = b"".join(b"X-F%d: v\r\n" % i for i in range(MAX_HEADERS + 1))
    assert (await raw(server, b"GET /echo HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n")).startswith(b"HTTP/1.1 431")
    fine = b"".join(b"X-F%d: v\r\n" % i for i in range(MAX_HEADERS - 2))
    assert (await raw(server, b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + fine + b"\r\n")).startswith(
        b"HTTP/1.1 200"
    )


async def test_unhandled_error_is_a_plain_500_and_the_server_keeps_serving(http):
    r = await http.get("/boom")
    assert r.status_code == 500 and "a bug" not in r.text  # no internals to the client
    assert (await http.get("/items/ok")).text == "ok"


async def test_client_disconnect_cancels_the_handler(server, probe):
    _, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    await probe.started.wait()
    writer.close()
    await asyncio.wait_for(probe.cancelled.wait(), 5)


async def test_close_lets_a_request_in_flight_finish(server, probe, http):
    pending = asyncio.create_task(http.get("/slow"))
    await probe.started.wait()
    closing = asyncio.create_task(server.close())
    await asyncio.sleep(0)  # close() has started and is waiting for the request
    probe.release.set()
    r = await pending
    await closing
    assert r.status_code == 200 and r.text == "finished"
    with pytest.raises(httpx.ConnectError):
        await http.get("/items/x")  # no longer listening


async def test_idle_keep_alive_connections_are_closed(server):
    server.keepalive_timeout = 0.0
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /items/a HTTP/1.1\r\nHost: x\r\n\r\n")
    await reader.readuntil(b"\r\n\r\na")
    server._sweep()  # what the periodic sweep does
    assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the server
    writer.close()


async def test_headers_trickling_in_too_slowly_get_408(server):
    server.head_timeout = 0.05
    server._sweeper.cancel()
    server._schedule_sweep()  # the sweep now runs every 50 ms
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /items/a HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # and never the rest
    answer = await asyncio.wait_for(reader.read(), 5)  # the server answers and closes
    assert answer.startswith(b"HTTP/1.1 408") and b"Connection: close" in answer
    writer.close()


def test_router_falls_through_to_a_template_when_the_exact_path_lacks_the_method():
    router = web.Router()

    async def h(request):  # pragma: no cover - never called
        return web.Response()

    async def g(request):  # pragma: no cover - never called
        return web.Response()

    router.add_post("/records/import", h)
    router.add_get("/records/{id:.+}", g)
    handler, info = router.resolve("GET", "/records/import")  # a record whose id is "import"
    assert handler is g and info == {"id": "import"}
    handler, info = router.resolve("PUT", "/records/import")
    assert handler is None and info.http_exception.allowed_methods == {"POST", "GET", "HEAD"}


def test_router_rejects_a_duplicate_route():
    router = web.Router()

    async def h(request):  # pragma: no cover - never called
        return web.Response()

    router.add_post("/x", h)
    with pytest.raises(ValueError):
        router.add_post("/x", h)


def test_header_lines_refuse_injection_and_leave_framing_to_the_server():
    assert header_lines({"X-A": "1", "Content-Length": "99", "Connection": "close"}) == "X-A: 1\r\n"
    assert header_lines({"Retry-After": 3, "X-B": "b"}) == "Retry-After: 3\r\nX-B: b\r\n"
    for bad in ({"X": "a\r\nSet-Cookie: b"}, {"X": "a\nb"}, {"X": "a\rb"}, {"X\nY": "v"}, {"A": "1", "B": "2\n"}):
        with pytest.raises(ValueError):
            header_lines(bad)
