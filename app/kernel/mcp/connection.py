"""One connection per MCP server: the SDK's ClientSession over stdio, streamable HTTP or SSE.

- Started on first use (`session()`), by a runner task that owns the transport and the session
  (the SDK's anyio scopes must be entered and left in one task) until `stop()` or the server
  goes away.
- A server that crashes is started again on the next use, after a backoff that grows with each
  crash in a row (0, 0.5, 1, 2 … 30 s; a server that stayed up a minute starts from 0 again).
  A call arriving during the backoff waits it out if its timeout allows, else fails saying when
  the next try is. A call that was running when the server went is not repeated (it may have
  had effects): it fails, saying so.
- Every request has a timeout; each failure is a ServerError (a ToolError) whose message says in
  plain words what happened: the command is missing, the server exited with code N (and the
  last lines it wrote to stderr), it timed out, it is not an MCP server, nothing answers at the
  URL.
- The tool list is cached and dropped (then fetched again) on `notifications/tools/list_changed`;
  resources and prompts likewise.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from app.kernel.mcp.stdio import MAX_MESSAGE_BYTES, CommandNotFound, StdioServer, child_environment
from app.kernel.tools.base import ToolError

if TYPE_CHECKING:
    from app.kernel.mcp.config import Resolved

log = logging.getLogger(__name__)

STARTUP_TIMEOUT_S = 30.0  # the handshake (a first `npx` download is slow; a hung server is not waited on longer)
LIST_TIMEOUT_S = 30.0
STABLE_S = 60.0  # up this long, a crash counts as the first in a row again
MAX_BACKOFF_S = 30.0
MAX_PAGES = 100  # tools/list pages followed (a server whose cursor never ends cannot hang a listing)

KINDS = ("config", "command_not_found", "exited", "timeout", "not_mcp", "unreachable", "refused", "crashed")


class ServerError(ToolError):
    """An MCP server could not do what was asked. `kind` is one of KINDS; the message is for people."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


BACKOFF_WAIT_MAX_S = 2.0  # longest backoff a call waits out before it says the server is resting


def backoff(crashes: int) -> float:
    return 0.0 if crashes <= 1 else min(MAX_BACKOFF_S, 0.5 * 2 ** (crashes - 2))


def _leaves(e: BaseException) -> list[BaseException]:
    if isinstance(e, BaseExceptionGroup):
        return [leaf for sub in e.exceptions for leaf in _leaves(sub)]
    return [e]


def _root(e: BaseException) -> BaseException:
    """The exception that matters out of anyio's task-group wrapping."""
    leaves = [x for x in _leaves(e) if not isinstance(x, asyncio.CancelledError)]
    return leaves[0] if leaves else e


class McpConnection:
    def __init__(self, name: str, resolve: Callable[[], Resolved], *,
                 max_message_bytes: int = MAX_MESSAGE_BYTES, startup_timeout: float = STARTUP_TIMEOUT_S,
                 client_version: str = "0") -> None:
        self.name = name
        self._resolve = resolve
        self.max_message_bytes = max_message_bytes
        self.startup_timeout = startup_timeout
        self.client_version = client_version
        self.state = "stopped"  # stopped | starting | ready | crashed | failed
        self.crashes = 0  # in a row
        self.restarts = 0
        self.retry_at = 0.0
        self.started_at: float | None = None
        self.last_error: ServerError | None = None
        self.server_info: dict[str, Any] | None = None
        self.instructions: str | None = None
        self.tools_generation = 0
        self._session: Any = None
        self._process: StdioServer | None = None
        self._runner: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None
        self._lock = asyncio.Lock()
        self._tools: list[Any] | None = None
        self._resources: list[Any] | None = None
        self._prompts: list[Any] | None = None
        self._refresh: asyncio.Task[Any] | None = None
        self._transport_errors: collections.deque[BaseException] = collections.deque(maxlen=5)
        self._kind = "stdio"
        self._timeout = 60.0
        self._up_since = 0.0
        self._closed = False  # a request saw the connection closed: the next use starts afresh

    # -- state -----------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "pid": self._process.pid if self._process is not None and self.state == "ready" else None,
            "started_at": self.started_at if self.state == "ready" else None,
            "restarts": self.restarts,
            "tools": len(self._tools) if self._tools is not None else None,
            "server": self.server_info,
            "error": str(self.last_error) if self.last_error and self.state != "ready" else None,
            "error_kind": self.last_error.kind if self.last_error and self.state != "ready" else None,
            "retry_in_s": round(max(0.0, self.retry_at - time.monotonic()), 1) if self.state == "crashed" else None,
        }

    @property
    def alive(self) -> bool:
        if self._session is None or self._runner is None or self._runner.done() or self._closed:
            return False
        return self._process is None or not self._process.ended

    async def _settle(self) -> None:
        """Let a connection that is going finish going (its shutdown is bounded) before a new start."""
        runner = self._runner
        if runner is not None and not runner.done():
            # Not asked to stop: a server that went on its own is counted as a crash by its runner.
            done, _ = await asyncio.wait([runner], timeout=10)
            if not done and self._stop is not None:
                self._stop.set()
                await asyncio.wait([runner], timeout=10)

    # -- starting and stopping -------------------------------------------------------------------
    async def session(self, timeout: float | None = None) -> Any:
        """The live session, starting the server if it must (within `timeout` seconds)."""
        if self.alive:
            return self._session
        deadline = time.monotonic() + (timeout if timeout is not None else self.startup_timeout)
        async with self._lock:
            if self.alive:
                return self._session
            await self._settle()
            wait = self.retry_at - time.monotonic()
            if wait > 0:
                # A short backoff is waited out; a long one is said at once (calls queued on the
                # lock would otherwise each wait it out in turn: an API listing hung for minutes).
                if wait > BACKOFF_WAIT_MAX_S or time.monotonic() + wait >= deadline:
                    why = f"{self.last_error}; " if self.last_error else ""
                    raise ServerError("crashed", f"{why}ByenatOS starts it again in {wait:.0f} s")
                await asyncio.sleep(wait)  # the backoff: let a crashing server rest before the next try
            await self._start(max(0.1, min(self.startup_timeout, deadline - time.monotonic())))
            return self._session

    async def _start(self, timeout: float) -> None:
        try:
            resolved = self._resolve()
        except Exception as e:  # a missing secret, a config gone bad: not started
            self.state = "failed"
            self.last_error = ServerError("config", str(e))
            raise self.last_error from None
        self._kind, self._timeout = resolved.kind, resolved.timeout
        self.state = "starting"
        self._transport_errors.clear()
        self._closed = False
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        self._stop = asyncio.Event()
        self._runner = asyncio.create_task(self._run(resolved, ready, timeout), name=f"mcp:{self.name}")
        try:
            await asyncio.shield(ready)
        except ServerError as e:
            self._failed(e)
            raise
        except asyncio.CancelledError:
            self._stop.set()
            raise
        self.state = "ready"
        self.started_at = time.time()
        self._up_since = time.monotonic()

    def _failed(self, error: ServerError) -> None:
        """It did not start: counted as a crash in a row (the next try waits out the backoff)."""
        self.crashes += 1
        self.retry_at = time.monotonic() + backoff(self.crashes)
        self.state = "crashed"
        self.last_error = error

    async def _run(self, r: Resolved, ready: asyncio.Future[None], timeout: float) -> None:
        import anyio
        import mcp_types
        from mcp import ClientSession

        stop = self._stop
        assert stop is not None
        try:
            async with contextlib.AsyncExitStack() as stack:
                streams = await self._open_transport(stack, r)
                session = await stack.enter_async_context(ClientSession(
                    *streams, message_handler=self._on_message,
                    client_info=mcp_types.Implementation(name="byenatos", version=self.client_version)))
                with anyio.fail_after(timeout):
                    init = await session.initialize()
                self.server_info = {"name": init.server_info.name, "version": init.server_info.version,
                                    "protocol": init.protocol_version}
                self.instructions = init.instructions
                self._session = session
                self._tools = self._resources = self._prompts = None
                ready.set_result(None)
                async with anyio.create_task_group() as tg:
                    async def until(wait: Callable[[], Any]) -> None:
                        await wait()
                        tg.cancel_scope.cancel()

                    tg.start_soon(until, stop.wait)
                    if self._process is not None:
                        tg.start_soon(until, self._process.wait_ended)
        except BaseException as e:  # every way out is reported (a cancellation is raised on)
            error = await self._explain(e, starting=not ready.done(), timeout=timeout)
            if not ready.done():
                ready.set_exception(error)
            elif not stop.is_set():
                self._ended(error)
            if isinstance(_root(e), asyncio.CancelledError):
                raise
        else:
            if not stop.is_set():  # the server went (stdout ended) without being asked to
                self._ended(await self._explain(None, starting=False, timeout=timeout))
        finally:
            self._session = None
            if self.state == "ready":  # asked to stop (a crash has set "crashed" by now)
                self.state = "stopped"

    def _ended(self, error: ServerError) -> None:
        """The server went while it served: a crash, counted for the backoff."""
        if time.monotonic() - self._up_since >= STABLE_S:
            self.crashes = 0
        self.crashes += 1
        self.restarts += 1
        self.retry_at = time.monotonic() + backoff(self.crashes)
        self.state = "crashed"
        self.last_error = error
        log.warning("MCP server %s: %s", self.name, error)

    async def _open_transport(self, stack: contextlib.AsyncExitStack, r: Resolved) -> tuple[Any, Any]:
        if r.kind == "stdio":
            assert r.command is not None
            self._process = StdioServer(r.command, r.args, child_environment(r.env), r.cwd,
                                        max_message_bytes=self.max_message_bytes)
            return await stack.enter_async_context(self._process.open())
        import httpx2

        self._process = None
        assert r.url is not None
        if r.kind == "sse":
            from mcp.client.sse import sse_client

            streams = await stack.enter_async_context(sse_client(r.url, headers=r.headers or None, timeout=30))
        else:
            from mcp.client.streamable_http import streamable_http_client

            client = await stack.enter_async_context(
                httpx2.AsyncClient(headers=r.headers, timeout=httpx2.Timeout(30, read=300)))
            streams = await stack.enter_async_context(streamable_http_client(r.url, http_client=client))
        return streams[0], streams[1]

    async def stop(self) -> None:
        """Stop the server (and forget its caches); the next use starts it again."""
        runner, self._runner = self._runner, None
        if self._stop is not None:
            self._stop.set()
        if self._refresh is not None:
            self._refresh.cancel()
        if runner is not None and not runner.done():
            try:
                await asyncio.wait_for(asyncio.shield(runner), 10)
            except (TimeoutError, asyncio.CancelledError):
                runner.cancel()
            except Exception:
                log.debug("MCP server %s: runner ended with an error", self.name, exc_info=True)
        self._session = None
        self._tools = self._resources = self._prompts = None
        if self.state in ("ready", "starting"):
            self.state = "stopped"

    # -- what went wrong, in words ---------------------------------------------------------------
    def _what(self) -> str:
        r = self._resolve_quiet()
        if r is None:
            return f"the MCP server {self.name!r}"
        return f"{r.command!r} (MCP server {self.name!r})" if r.kind == "stdio" else \
            f"the MCP server {self.name!r} at {r.url}"

    def _resolve_quiet(self) -> Resolved | None:
        try:
            return self._resolve()
        except Exception:
            return None

    async def _gone(self, during: str) -> ServerError:
        """The connection closed: why (a protocol fault, an exit code, a dropped HTTP stream)."""
        what = self._what()
        proc = self._process
        if proc is not None and self._kind == "stdio":
            if proc.problem:
                return ServerError("not_mcp", f"{what} is not speaking MCP: {proc.problem}")
            code = await proc.wait_exit(2.0)
            tail = proc.stderr_tail()
            said = f"; its last words on stderr:\n{tail}" if tail else " (nothing on stderr)"
            if code is None:
                return ServerError("crashed", f"{what} closed its output {during}{said}")
            return ServerError("exited", f"{what} exited with code {code} {during}{said}")
        detail = f": {self._transport_errors[-1]}" if self._transport_errors else ""
        return ServerError("crashed", f"the connection to {what} closed {during}{detail}")

    async def _explain(self, e: BaseException | None, *, starting: bool, timeout: float) -> ServerError:
        from mcp.shared.exceptions import MCPError

        during = "before it answered" if starting else "while it was in use"
        if e is None:
            return await self._gone(during)
        root = _root(e)
        what = self._what()
        if isinstance(root, ServerError):
            return root
        if isinstance(root, CommandNotFound):
            return ServerError("command_not_found", f"MCP server {self.name!r}: {root}")
        if isinstance(root, MCPError) and root.code == -32000:  # CONNECTION_CLOSED
            return await self._gone(during)
        if isinstance(root, TimeoutError):
            proc = self._process
            if proc is not None and proc.problem:
                return ServerError("not_mcp", f"{what} is not speaking MCP: {proc.problem}")
            if proc is not None and proc.went_first:
                return await self._gone(during)
            tail = proc.stderr_tail() if proc is not None else ""
            said = f"; its last words on stderr:\n{tail}" if tail else ""
            return ServerError("timeout", f"{what} did not answer the MCP handshake within {round(timeout, 1):g} s "
                                          f"(is it an MCP server?){said}")
        if isinstance(root, OSError) and self._kind == "stdio" and starting:  # after TimeoutError, an OSError
            return ServerError("command_not_found", f"{what} could not be started: {root.strerror or root}")
        http = self._http_problem(root)
        if http is not None:
            return http
        if isinstance(root, MCPError):
            extra = f" ({self._transport_errors[-1]})" if self._transport_errors else ""
            return ServerError("refused", f"{what} answered with an error: {root.message}{extra}")
        if isinstance(root, asyncio.CancelledError):
            return ServerError("crashed", f"starting {what} was cancelled")
        return ServerError("crashed", f"{what} failed: {type(root).__name__}: {root}")

    def _http_problem(self, e: BaseException) -> ServerError | None:
        try:
            import httpx2
        except ImportError:  # pragma: no cover
            return None
        errors = [e, *self._transport_errors]
        for err in errors:
            if isinstance(err, httpx2.HTTPStatusError):
                status = err.response.status_code
                hint = " (does it need a token in `headers`?)" if status in (401, 403) else ""
                return ServerError("refused", f"{self._what()} answered HTTP {status} "
                                              f"{err.response.reason_phrase}{hint}")
            if isinstance(err, httpx2.ConnectError | httpx2.ConnectTimeout):
                r = self._resolve_quiet()
                where = r.url if r is not None else "its url"
                return ServerError("unreachable", f"nothing answers at {where} for MCP server {self.name!r} "
                                                  f"({err}); is the server running?")
            if isinstance(err, httpx2.HTTPError):
                return ServerError("unreachable", f"{self._what()} could not be reached: {type(err).__name__}: {err}")
        return None

    # -- notifications ---------------------------------------------------------------------------
    async def _on_message(self, message: Any) -> None:
        import mcp_types

        if isinstance(message, Exception):
            self._transport_errors.append(message)
            log.debug("MCP server %s: transport: %r", self.name, message)
        elif isinstance(message, mcp_types.ToolListChangedNotification):
            self._tools = None
            self.tools_generation += 1
            # Fetched again now, so the next call finds the new list ready.
            self._refresh = asyncio.get_running_loop().create_task(self._quiet(self.list_tools()))
        elif isinstance(message, mcp_types.ResourceListChangedNotification):
            self._resources = None
        elif isinstance(message, mcp_types.PromptListChangedNotification):
            self._prompts = None

    @staticmethod
    async def _quiet(job: Any) -> None:
        with contextlib.suppress(Exception):
            await job

    # -- requests --------------------------------------------------------------------------------
    async def _request(self, what: str, send: Callable[[Any, float], Any], timeout: float) -> Any:
        """One request with a timeout, its failures as ServerErrors."""
        from mcp.shared.exceptions import MCPError
        from pydantic import ValidationError

        started = time.monotonic()
        session = await self.session(timeout)
        left = max(0.1, timeout - (time.monotonic() - started))
        try:
            async with asyncio.timeout(left + 1.0):  # a backstop for the SDK's own read timeout
                return await send(session, left)
        except MCPError as e:
            if e.code == -32000:  # CONNECTION_CLOSED: the server went while we waited
                self._closed = True
                error = await self._gone(f"during {what}")
                if self._kind != "stdio" and self._stop is not None and not self._stop.is_set():
                    self._ended(error)  # an HTTP session that dropped: the next use connects again
                    self._stop.set()
                raise error from None
            if e.code == -32001:  # REQUEST_TIMEOUT
                raise self._timed_out(what, timeout) from None
            raise ServerError("refused", f"{self._what()} refused {what}: {e.message}") from None
        except TimeoutError:
            raise self._timed_out(what, timeout) from None
        except ValidationError as e:
            first = e.errors()[0]
            raise ServerError("not_mcp", f"{self._what()} answered {what} with something that is not valid MCP "
                                         f"({'.'.join(map(str, first['loc']))}: {first['msg']})") from None

    def _timed_out(self, what: str, timeout: float) -> ServerError:
        return ServerError("timeout", f"{self._what()} did not answer {what} within {timeout:g} s; "
                                      "the request was cancelled")

    async def list_tools(self, timeout: float = LIST_TIMEOUT_S) -> list[Any]:
        if self._tools is not None and self.alive:
            return self._tools
        generation = self.tools_generation
        tools = await self._paged("the tool list", lambda s, c: s.list_tools(params=c), "tools", timeout)
        if generation == self.tools_generation:
            self._tools = tools
        return tools

    async def list_resources(self, timeout: float = LIST_TIMEOUT_S) -> list[Any]:
        if self._resources is None or not self.alive:
            self._resources = await self._paged("the resource list", lambda s, c: s.list_resources(params=c),
                                                "resources", timeout, capability="resources")
        return self._resources

    async def list_prompts(self, timeout: float = LIST_TIMEOUT_S) -> list[Any]:
        if self._prompts is None or not self.alive:
            self._prompts = await self._paged("the prompt list", lambda s, c: s.list_prompts(params=c),
                                              "prompts", timeout, capability="prompts")
        return self._prompts

    async def _paged(self, what: str, fetch: Callable[[Any, Any], Any], field: str, timeout: float,
                     capability: str | None = None) -> list[Any]:
        import mcp_types

        session = await self.session(timeout)
        if capability is not None:
            caps = session.server_capabilities
            if caps is None or getattr(caps, capability, None) is None:
                return []  # the server offers none: asking would only get "method not found"
        items: list[Any] = []
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            params = mcp_types.PaginatedRequestParams(cursor=cursor) if cursor else None

            async def send(s: Any, left: float, params: Any = params) -> Any:
                return await fetch(s, params)

            page = await self._request(what, send, timeout)
            items.extend(getattr(page, field))
            cursor = page.next_cursor
            if not cursor:
                break
        return items

    async def call_tool(self, tool: str, arguments: dict[str, Any], timeout: float | None = None) -> Any:
        """The tool's CallToolResult (its own is_error included: the caller words it)."""
        limit = timeout if timeout is not None else self._timeout

        async def send(s: Any, left: float) -> Any:
            return await s.call_tool(tool, arguments, read_timeout_seconds=left)

        return await self._request(f"the call of {tool!r}", send, limit)
