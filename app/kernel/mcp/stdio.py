"""A stdio MCP server as a child process: the transport a ClientSession runs over.

Ours rather than the SDK's `stdio_client` because a host must say what went wrong, and bound
what a server can do to it:
- it keeps the process, so a crash reads "exited with code 1" and the last lines of stderr;
- a message larger than `max_message_bytes` ends the connection instead of growing a buffer
  without end (an enormous result cannot take the kernel's memory);
- anything on stdout that is not JSON-RPC ends the connection with that text quoted (stdio
  servers must write nothing else there), so a call fails at once instead of timing out, and
  "not an MCP server" is a sentence `byenatos mcp test` can print.
When the connection ends, the session's read stream closes: the SDK fails every pending request
with CONNECTION_CLOSED, and the connection (connection.py) turns that into a ToolError naming
`problem` or the exit code.

The server runs in a session (process group) of its own; stopping closes its stdin, waits a
moment, then SIGTERMs and finally SIGKILLs the group: nothing is left running.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import shutil
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 16 * 2**20
STDERR_TAIL_LINES = 20
STDERR_TAIL_CHARS = 2_000
STOP_GRACE_S = 1.0  # after stdin closes, before SIGTERM (the spec's first step of a shutdown)
TERM_GRACE_S = 1.0  # after SIGTERM, before SIGKILL


def _size(n: int) -> str:
    return f"{n / 2**20:.3g} MB" if n >= 2**20 else f"{n / 1024:.3g} KB"


class CommandNotFound(Exception):
    pass


def find_command(command: str, env: dict[str, str], cwd: str | None) -> str:
    """The program to run, or CommandNotFound saying where it was looked for."""
    if os.sep in command or (os.altsep and os.altsep in command):
        path = command if os.path.isabs(command) or cwd is None else os.path.join(cwd, command)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
        raise CommandNotFound(f"the command {command!r} does not exist or is not executable")
    found = shutil.which(command, path=env.get("PATH"))
    if found is None:
        raise CommandNotFound(f"the command {command!r} was not found on the PATH ByenatOS uses "
                              f"({env.get('PATH', '')}); is it installed?")
    return found


def child_environment(extra: dict[str, str]) -> dict[str, str]:
    """What a server inherits: the variables a program needs to run (as the SDK passes), not
    ByenatOS's whole environment (which may hold provider keys), plus its own settings."""
    keep = ("HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER", "LANG", "LC_ALL", "TMPDIR", "XDG_RUNTIME_DIR",
            "SYSTEMROOT", "APPDATA", "LOCALAPPDATA", "USERPROFILE", "TEMP", "PATHEXT")
    env = {k: os.environ[k] for k in keep if k in os.environ and not os.environ[k].startswith("()")}
    return env | extra


class StdioServer:
    """One run of a server process. `open()` yields the (read, write) streams of a session."""

    def __init__(self, command: str, args: list[str], env: dict[str, str], cwd: str | None,
                 *, max_message_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self.command, self.args, self.env, self.cwd = command, args, env, cwd
        self.max_message_bytes = max_message_bytes
        self.pid: int | None = None
        self.returncode: int | None = None
        self.problem: str | None = None  # a protocol fault that ended the connection
        self.went_first = False  # it had ended on its own before ByenatOS stopped it
        self._stderr: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        self._process: Any = None
        self._ended: Any = None  # anyio.Event: stdout ended (the process exited or closed it)
        self._exited: Any = None  # anyio.Event: the process's exit code is known

    def stderr_tail(self) -> str:
        text = "\n".join(self._stderr).strip()
        return text[-STDERR_TAIL_CHARS:]

    @property
    def ended(self) -> bool:
        return self._ended is not None and self._ended.is_set()

    async def wait_ended(self) -> None:
        await self._ended.wait()

    async def wait_exit(self, timeout: float) -> int | None:
        """The exit code, waiting up to `timeout` for the process to go."""
        import anyio

        if self._exited is not None:
            with anyio.move_on_after(timeout):
                await self._exited.wait()
        return self.returncode

    @contextlib.asynccontextmanager
    async def open(self) -> AsyncIterator[tuple[Any, Any]]:
        import anyio
        import mcp_types
        from mcp.shared.message import SessionMessage

        program = find_command(self.command, self.env, self.cwd)
        self._ended, self._exited = anyio.Event(), anyio.Event()
        process = await anyio.open_process([program, *self.args], env=self.env, cwd=self.cwd,
                                           start_new_session=sys.platform != "win32")
        self._process, self.pid = process, process.pid
        read_send, read_recv = anyio.create_memory_object_stream[Any](16)
        write_send, write_recv = anyio.create_memory_object_stream[Any](16)

        async def fail(problem: str) -> None:
            self.problem = self.problem or problem
            log.info("MCP server %s: %s", self.command, problem)  # the connection reports it
            await read_send.aclose()  # the session fails what is pending with CONNECTION_CLOSED
            self._kill(signal.SIGKILL)

        async def stdout_reader() -> None:
            buf = bytearray()
            try:
                async for chunk in process.stdout:
                    scanned = len(buf)
                    buf += chunk
                    while (nl := buf.find(b"\n", scanned)) >= 0:
                        line = bytes(buf[:nl]).strip()
                        del buf[:nl + 1]
                        scanned = 0
                        if not line:
                            continue
                        try:
                            message = mcp_types.jsonrpc_message_adapter.validate_json(line, by_name=False)
                        except ValueError:
                            shown = line[:120].decode("utf-8", "replace")
                            await fail(f"it wrote {shown!r}{'…' if len(line) > 120 else ''} where an MCP "
                                       "(JSON-RPC) message was expected")
                            return
                        await read_send.send(SessionMessage(message))
                    if len(buf) > self.max_message_bytes:
                        await fail(f"it sent a message larger than {_size(self.max_message_bytes)}, "
                                   "more than ByenatOS accepts from an MCP server; the message was dropped")
                        return
            except (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream):
                pass
            finally:
                self._ended.set()
                with contextlib.suppress(Exception):
                    await read_send.aclose()

        async def stderr_reader() -> None:
            partial = b""
            with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream):
                async for chunk in process.stderr:
                    lines = (partial + chunk).split(b"\n")
                    partial = lines.pop()[-STDERR_TAIL_CHARS:]
                    for raw in lines:
                        text = raw.decode("utf-8", "replace").rstrip()
                        if text:
                            self._stderr.append(text[:STDERR_TAIL_CHARS])
                            log.debug("MCP server %s: %s", self.command, text)
            if partial.strip():
                self._stderr.append(partial.decode("utf-8", "replace").rstrip())

        async def stdin_writer() -> None:
            try:
                async for message in write_recv:
                    data = message.message.model_dump_json(by_alias=True, exclude_unset=True) + "\n"
                    await process.stdin.send(data.encode())
            except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
                with contextlib.suppress(Exception):
                    await read_send.aclose()

        async def exit_watcher() -> None:
            self.returncode = await process.wait()
            self._exited.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(stdout_reader)
            tg.start_soon(stderr_reader)
            tg.start_soon(stdin_writer)
            tg.start_soon(exit_watcher)
            try:
                yield read_recv, write_send
            finally:
                with anyio.CancelScope(shield=True):
                    await self._stop(process)
                    await write_send.aclose()
                    await read_recv.aclose()
                tg.cancel_scope.cancel()

    def _kill(self, sig: int, *, group: bool = False) -> None:
        """Signal the server (with `group`, also what it started, once it has gone itself)."""
        if self._process is None or (self._process.returncode is not None and not group):
            return
        with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
            if sys.platform != "win32":
                os.killpg(self._process.pid, sig)  # the server and whatever it started
            else:
                self._process.kill()

    async def _stop(self, process: Any) -> None:
        import anyio

        self.went_first = self._ended.is_set() or self._exited.is_set()
        with contextlib.suppress(Exception):
            await process.stdin.aclose()
        for grace, sig in ((STOP_GRACE_S, signal.SIGTERM), (TERM_GRACE_S, getattr(signal, "SIGKILL", 9))):
            with anyio.move_on_after(grace):
                await self._exited.wait()
            if self._exited.is_set():
                break
            self._kill(sig)
        with anyio.move_on_after(TERM_GRACE_S):
            await self._exited.wait()
        if not self._exited.is_set():
            log.warning("MCP server %s (pid %s) did not exit after SIGKILL", self.command, process.pid)
        else:
            self._kill(getattr(signal, "SIGKILL", 9), group=True)  # children it left in its group
        # asyncio's subprocess transport is closed only by close() (anyio's aclose leaves it): left
        # open, its __del__ may run after the loop is gone. Nothing public reaches it (the SDK's
        # stdio client walks the same attributes).
        transport = getattr(getattr(process, "_process", None), "_transport", None)
        with contextlib.suppress(Exception):
            if callable(getattr(transport, "close", None)):
                transport.close()
