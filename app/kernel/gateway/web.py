"""The gateway's request/response types, application and router: a small aiohttp-shaped API.

The route modules were written against aiohttp's server (`web.Request`, `web.Response`,
`web.StreamResponse`, `web.Application`, `web.AppKey`) and keep those shapes; what serves
them is `app.kernel.gateway.http_server`, over httptools (llhttp, the parser of Node.js).
Why the gateway stopped using aiohttp's server: importing aiohttp costs ~0.15 s of the
daemon's 0.5 s start-up budget (it compiles Forwarded-header regexes and loads two TLS
client contexts with the system's certificates at import time), and its per-request
machinery (a request object with a dozen lazy properties, signals, a payload writer) was
most of what the gateway itself added to a request. This module has only what the routes
use; anything else is an AttributeError, not a silent difference.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import parse_qsl, unquote

T = TypeVar("T")


class Connection(Protocol):
    """What requests and responses need of the connection they arrived on (the server's
    `http_server.Connection` is one): reading the body, and writing the answer."""

    async def wait_for_body(self, request: Request) -> None: ...
    def send_whole(self, request: Request, response: Response) -> None: ...
    def start_stream(self, request: Request, response: StreamResponse) -> None: ...
    async def write_body(self, response: StreamResponse, data: bytes, *, last: bool) -> None: ...


Handler = Callable[["Request"], Awaitable["StreamResponse"]]
Middleware = Callable[["Request", Handler], Awaitable["StreamResponse"]]

_REASONS: dict[int, str] = {}


def reason_of(status: int) -> str:
    reason = _REASONS.get(status)
    if reason is None:
        from http import HTTPStatus

        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Unknown"
        _REASONS[status] = reason
    return reason


class AppKey(Generic[T]):
    """A typed key for application state (`app[KERNEL]`); compared by identity."""

    __slots__ = ("name",)

    def __init__(self, name: str, t: type[T] | None = None) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<AppKey {self.name}>"


# -- errors -------------------------------------------------------------------------------------
class HTTPException(Exception):
    """Raised by the server layer (unknown route, body too large); the guard answers it in the
    caller's API format. `status`, `reason` and `headers` as in aiohttp."""

    status = 500

    def __init__(self, *, reason: str | None = None, headers: dict[str, str] | None = None) -> None:
        self.reason = reason or reason_of(self.status)
        self.headers: dict[str, str] = dict(headers or {})
        super().__init__(self.reason)


class HTTPNotFound(HTTPException):
    status = 404


class HTTPMethodNotAllowed(HTTPException):
    status = 405

    def __init__(self, method: str, allowed_methods: Iterable[str]) -> None:
        self.method = method
        self.allowed_methods = set(allowed_methods)
        super().__init__(headers={"Allow": ",".join(sorted(self.allowed_methods))})


class HTTPRequestEntityTooLarge(HTTPException):
    status = 413

    def __init__(self, max_size: int, actual_size: int) -> None:
        self.max_size, self.actual_size = max_size, actual_size
        super().__init__(reason=f"Maximum request body size {max_size} exceeded, actual body size {actual_size}")


class HTTPBadRequest(HTTPException):
    status = 400


class HTTPRequestHeaderFieldsTooLarge(HTTPException):
    status = 431


def middleware(f: T) -> T:
    """aiohttp's new-style middleware marker; here every middleware is new-style."""
    return f


# -- headers ------------------------------------------------------------------------------------
class CIHeaders(dict[str, str]):
    """Request headers: names stored lower-cased, looked up case-insensitively. A repeated
    header is joined with ", " (RFC 9110 § 5.3), which is how every header the gateway reads
    may be combined."""

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return dict.get(self, key.lower(), default)

    def __getitem__(self, key: str) -> str:
        return dict.__getitem__(self, key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and dict.__contains__(self, key.lower())


class MatchInfo(dict[str, str]):
    """Path parameters of the matched route; `http_exception` says why nothing matched."""

    __slots__ = ("http_exception",)

    def __init__(self, params: dict[str, str] | None = None, http_exception: HTTPException | None = None) -> None:
        super().__init__(params or {})
        self.http_exception = http_exception


# -- request ------------------------------------------------------------------------------------
class Request(dict[Any, Any]):
    """One HTTP request. A dict for per-request state (`request[CTX_KEY]`), like aiohttp's."""

    def __init__(self, conn: Connection, app: Application, method: str, target: bytes, headers: CIHeaders,
                 version: str, keep_alive: bool) -> None:
        super().__init__()
        self._conn = conn
        self.app = app
        self.method = method
        self.headers = headers
        self.version = version
        self.keep_alive = keep_alive
        path, _, query = target.partition(b"?")
        raw = path.decode("latin-1")
        self.raw_path = raw
        self.path = unquote(raw) if "%" in raw else raw
        self.query_string = query.decode("latin-1")
        self.match_info = MatchInfo()
        self._query: dict[str, str] | None = None
        # the body, filled by the connection as it arrives
        self.body = bytearray()
        self.body_complete = False
        self.body_too_large = 0  # bytes received when the limit was passed; 0: within it
        # A framing limit the body broke (a chunk's extensions, its trailers): raised by read().
        self.refused: HTTPException | None = None
        self.body_waiter: Any = None  # set by the connection while a handler waits for the body

    @property
    def query(self) -> dict[str, str]:
        """Query parameters; a repeated one keeps its first value (as aiohttp's `get`)."""
        if self._query is None:
            query: dict[str, str] = {}
            for k, v in parse_qsl(self.query_string, keep_blank_values=True):
                query.setdefault(k, v)
            self._query = query
        return self._query

    @property
    def content_length(self) -> int | None:
        value = self.headers.get("content-length")
        try:
            return int(value) if value is not None else None
        except ValueError:
            return None

    @property
    def content_type(self) -> str:
        value = self.headers.get("content-type")
        if not value:
            return "application/octet-stream"
        return value.partition(";")[0].strip().lower()

    async def read(self) -> bytes:
        """The whole body; HTTPRequestEntityTooLarge past the application's `client_max_size`."""
        if not self.body_complete:
            await self._conn.wait_for_body(self)
        if self.refused is not None:
            raise self.refused
        if self.body_too_large:
            raise HTTPRequestEntityTooLarge(self.app.client_max_size, self.body_too_large)
        return bytes(self.body)

    async def text(self) -> str:
        return (await self.read()).decode("utf-8", errors="replace")

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.path}>"

    __hash__ = object.__hash__  # a dict subclass, but one request is one object
    __eq__ = object.__eq__  # type: ignore[assignment]


# -- responses ----------------------------------------------------------------------------------
class StreamResponse(dict[str, Any]):
    """A response whose body is written in pieces (chunked transfer encoding), e.g. SSE.

    The status line and headers are not sent by `prepare()` itself but with the first piece
    of body (one write instead of two); if the handler awaits something else first, they go out
    at the next turn of the event loop, so a client never waits for them.
    """

    def __init__(self, *, status: int = 200, reason: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__()
        self.status = status
        self.reason = reason
        self.headers: dict[str, str] = dict(headers) if headers else {}
        self._conn: Connection | None = None
        self.chunked = True  # chunked framing (HTTP/1.1); set by prepare()
        self.eof_sent = False  # the end of the body was written

    @property
    def prepared(self) -> bool:
        return self._conn is not None

    def set_status(self, status: int, reason: str | None = None) -> None:
        self.status, self.reason = status, reason

    async def prepare(self, request: Request) -> StreamResponse:
        if self._conn is None:
            self._conn = request._conn
            self.chunked = request.version == "1.1" and self.status not in (204, 304)
            self._conn.start_stream(request, self)
        return self

    async def write(self, data: bytes) -> None:
        if self._conn is None:
            raise RuntimeError("write() before prepare()")
        if self.eof_sent:
            raise RuntimeError("write() after write_eof()")
        if data:
            await self._conn.write_body(self, data, last=False)

    async def write_eof(self, data: bytes = b"") -> None:
        if self.eof_sent:
            return
        if self._conn is None:
            raise RuntimeError("write_eof() before prepare()")
        self.eof_sent = True
        await self._conn.write_body(self, data, last=True)

    __hash__ = object.__hash__
    __eq__ = object.__eq__  # type: ignore[assignment]


class Response(StreamResponse):
    """A response with its whole body at once: status line, headers and body in one write."""

    def __init__(self, *, body: bytes | None = None, text: str | None = None, status: int = 200,
                 reason: str | None = None, content_type: str | None = None, charset: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(status=status, reason=reason, headers=headers)
        if text is not None:
            if body is not None:
                raise ValueError("body and text are exclusive")
            charset = charset or "utf-8"
            body = text.encode(charset)
            content_type = content_type or "text/plain"
        if content_type is not None:
            self.headers["Content-Type"] = f"{content_type}; charset={charset}" if charset else content_type
        elif body is not None and "Content-Type" not in self.headers:
            self.headers["Content-Type"] = "application/octet-stream"
        self.body = body or b""

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    async def prepare(self, request: Request) -> StreamResponse:
        if self._conn is None:
            self._conn = request._conn
            self.eof_sent = True
            self._conn.send_whole(request, self)
        return self


def json_response(data: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    import orjson

    return Response(body=orjson.dumps(data), status=status, content_type="application/json", headers=headers)


# -- application and routing --------------------------------------------------------------------
_PARAM = re.compile(r"\{(\w+)(?::(.+?))?\}")


class _Route:
    __slots__ = ("handlers", "pattern")

    def __init__(self, pattern: re.Pattern[str] | None) -> None:
        self.pattern = pattern
        self.handlers: dict[str, Handler] = {}


class Router:
    """Exact paths in a dict; `{name}` / `{name:regex}` templates tried in the order added."""

    def __init__(self) -> None:
        self._static: dict[str, _Route] = {}
        self._dynamic: list[_Route] = []
        self._templates: dict[str, _Route] = {}
        self._lazy: list[tuple[tuple[str, ...], Callable[[], None]]] = []
        self._lazy_prefixes: tuple[str, ...] = ()  # all of the groups' prefixes: one test per request

    def add_lazy_group(self, prefixes: tuple[str, ...], load: Callable[[], None]) -> None:
        """Routes under `prefixes` that `load()` adds when the first request for one of them
        comes (or when every route is listed): their modules stay off the start-up path."""
        self._lazy.append((prefixes, load))
        self._lazy_prefixes += prefixes

    def _load_lazy(self, path: str | None) -> None:
        for group in list(self._lazy):
            prefixes, load = group
            if path is None or path.startswith(prefixes):
                self._lazy.remove(group)
                self._lazy_prefixes = tuple(p for g, _ in self._lazy for p in g)
                load()

    def add_route(self, method: str, path: str, handler: Handler) -> None:
        method = method.upper()
        if "{" not in path:
            route = self._static.setdefault(path, _Route(None))
        else:
            route = self._templates.get(path)
            if route is None:
                regex = ""
                last = 0
                for m in _PARAM.finditer(path):
                    regex += re.escape(path[last : m.start()]) + f"(?P<{m.group(1)}>{m.group(2) or '[^{}/]+'})"
                    last = m.end()
                regex += re.escape(path[last:])
                route = self._templates[path] = _Route(re.compile(regex))
                self._dynamic.append(route)
        if method in route.handlers:
            raise ValueError(f"{method} {path} is already routed")
        route.handlers[method] = handler

    def add_get(self, path: str, handler: Handler) -> None:
        self.add_route("GET", path, handler)
        self.add_route("HEAD", path, handler)

    def add_post(self, path: str, handler: Handler) -> None:
        self.add_route("POST", path, handler)

    def add_put(self, path: str, handler: Handler) -> None:
        self.add_route("PUT", path, handler)

    def add_patch(self, path: str, handler: Handler) -> None:
        self.add_route("PATCH", path, handler)

    def add_delete(self, path: str, handler: Handler) -> None:
        self.add_route("DELETE", path, handler)

    def resolve(self, method: str, path: str) -> tuple[Handler | None, MatchInfo]:
        """The handler for `method path`. An exact path is tried first, then the templates in
        order; a path that matches only with other methods is a 405 listing them all."""
        if self._lazy_prefixes and path.startswith(self._lazy_prefixes):
            self._load_lazy(path)
        allowed: set[str] = set()
        route = self._static.get(path)
        if route is not None:
            handler = route.handlers.get(method)
            if handler is not None:
                return handler, MatchInfo()
            allowed.update(route.handlers)
        for candidate in self._dynamic:
            m = candidate.pattern.fullmatch(path)  # type: ignore[union-attr]
            if m is not None:
                handler = candidate.handlers.get(method)
                if handler is not None:
                    return handler, MatchInfo(m.groupdict())
                allowed.update(candidate.handlers)
        if allowed:
            return None, MatchInfo(http_exception=HTTPMethodNotAllowed(method, allowed))
        return None, MatchInfo(http_exception=HTTPNotFound())

    def routes(self) -> list[RouteDef]:
        """Every route (lazy groups loaded), for the OpenAPI document and tests."""
        self._load_lazy(None)
        out = [RouteDef(m, p, h) for p, r in self._static.items() for m, h in r.handlers.items()]
        return out + [RouteDef(m, p, h) for p, r in self._templates.items() for m, h in r.handlers.items()]


class RouteDef:
    """One route as aiohttp describes it: `method`, `handler`, `resource.get_info()`."""

    __slots__ = ("handler", "method", "path")

    def __init__(self, method: str, path: str, handler: Handler) -> None:
        self.method, self.path, self.handler = method, path, handler

    @property
    def resource(self) -> RouteDef:
        return self

    def get_info(self) -> dict[str, str]:
        return {"formatter": self.path} if "{" in self.path else {"path": self.path}


async def _unrouted(request: Request) -> StreamResponse:
    exc = request.match_info.http_exception
    assert exc is not None
    raise exc


class Application(dict[Any, Any]):
    """Routes, middlewares and shared state (`app[KEY]`)."""

    def __init__(self, *, client_max_size: int = 1024**2, middlewares: Iterable[Middleware] = ()) -> None:
        super().__init__()
        self.router = Router()
        self.client_max_size = client_max_size
        self.middlewares = list(middlewares)
        self._chains: dict[int, Handler] = {}

    def _chain(self, handler: Handler) -> Handler:
        """`handler` wrapped in the middlewares, built once per handler (no per-request closures)."""
        chained = self._chains.get(id(handler))
        if chained is None:
            chained = handler
            for mw in reversed(self.middlewares):
                chained = _wrap(mw, chained)
            self._chains[id(handler)] = chained
        return chained

    async def handle(self, request: Request) -> StreamResponse:
        handler, request.match_info = self.router.resolve(request.method, request.path)
        return await self._chain(handler or _unrouted)(request)

    __hash__ = object.__hash__
    __eq__ = object.__eq__  # type: ignore[assignment]


def _wrap(mw: Middleware, inner: Handler) -> Handler:
    async def run(request: Request) -> StreamResponse:
        return await mw(request, inner)

    return run
