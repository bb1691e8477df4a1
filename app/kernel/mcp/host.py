"""The MCP host: the user's servers, one connection each, their tools in the kernel's registry.

`attach(registry)` adds one ToolSource per configured server (`mcp__<server>`); the host keeps
the registry in step with `mcp.json` (changed by the API, or by `byenatos mcp add` in another
process: the file is looked at every WATCH_S while attached), stopping the connection of a
server that was removed or changed. `stop()` stops every server (the kernel's stop).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from typing import TYPE_CHECKING, Any

from app.kernel.errors import BadRequestError, NotFoundError
from app.kernel.mcp import imports
from app.kernel.mcp.config import ServerConfig, check_name, resolve
from app.kernel.mcp.connection import McpConnection, ServerError
from app.kernel.mcp.source import McpToolSource, prefix, tool_name
from app.kernel.mcp.stdio import MAX_MESSAGE_BYTES
from app.kernel.mcp.store import McpStore

if TYPE_CHECKING:
    from pathlib import Path

    from app.kernel.config import Paths
    from app.kernel.security.secrets import SecretStore
    from app.kernel.tools.base import ToolRegistry

log = logging.getLogger(__name__)
WATCH_S = 1.0  # how often an attached host looks at mcp.json (one stat)
TEST_TIMEOUT_S = 30.0


def _version() -> str:
    from app import version

    return version()


class McpHost:
    def __init__(self, paths: Paths, secrets: SecretStore, *, max_message_bytes: int = MAX_MESSAGE_BYTES,
                 startup_timeout: float | None = None) -> None:
        self.paths = paths
        self.secrets = secrets
        self.store = McpStore(paths, secrets)
        self.max_message_bytes = max_message_bytes
        self.startup_timeout = startup_timeout
        self._connections: dict[str, tuple[ServerConfig, McpConnection]] = {}
        self._sources: dict[str, McpToolSource] = {}
        self._registry: ToolRegistry | None = None
        self._generation = -1
        self._watch: asyncio.Task[None] | None = None
        self._stopping: set[asyncio.Task[None]] = set()

    # -- keeping in step with the file -----------------------------------------------------------
    def attach(self, registry: ToolRegistry) -> None:
        self._registry = registry
        self._generation = -1
        self.sync()

    def sync(self, *, fresh: bool = True) -> dict[str, ServerConfig]:
        """Bring the registry and the connections in step with mcp.json (`fresh`: look at the
        file now; else at most every RESTAT_S, as every tool call asks)."""
        servers = self.store.servers(fresh=fresh)
        if self.store.generation != self._generation:
            self._generation = self.store.generation
            for name, (config, _) in list(self._connections.items()):
                if servers.get(name) != config:
                    self._drop_later(name)
            if self._registry is not None:
                for name in list(self._sources):
                    if name not in servers:
                        self._registry.remove_source(prefix(name))
                        del self._sources[name]
                for name in servers:
                    if name not in self._sources:
                        source = McpToolSource(name, lambda n=name: self.connection(n),
                                               known=lambda n=name: self.configured(n),
                                               timeout=lambda n=name: self.store.get(n).timeout)
                        self._sources[name] = source
                        self._registry.add_source(source)
        if self._registry is not None and self._watch is None:
            with contextlib.suppress(RuntimeError):  # no running loop: the next sync inside one starts it
                self._watch = asyncio.get_running_loop().create_task(self._watch_file(), name="mcp:watch")
        return servers

    async def _watch_file(self) -> None:
        while True:
            await asyncio.sleep(WATCH_S)
            try:
                self.sync()
            except Exception:  # a bad file is reported by the store; the watch goes on
                log.debug("mcp.json sync failed", exc_info=True)

    def _drop_later(self, name: str) -> None:
        _, conn = self._connections.pop(name)
        try:
            task = asyncio.get_running_loop().create_task(conn.stop())
        except RuntimeError:
            return
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    def configured(self, name: str) -> bool:
        config = self.sync(fresh=False).get(name)
        return config is not None and not config.disabled

    def connection(self, name: str) -> McpConnection:
        """The server's connection (not started until used)."""
        config = self.sync(fresh=False).get(name)
        if config is None:
            raise ServerError("config", f"no MCP server named {name!r} is configured")
        if config.disabled:
            raise ServerError("config", f"the MCP server {name!r} is disabled")
        held = self._connections.get(name)
        if held is None or held[0] != config:
            held = (config, self._new_connection(name, config))
            self._connections[name] = held
        return held[1]

    def _new_connection(self, name: str, config: ServerConfig) -> McpConnection:
        kw: dict[str, Any] = {}
        if self.startup_timeout is not None:
            kw["startup_timeout"] = self.startup_timeout
        return McpConnection(name, lambda: resolve(name, config, self.secrets.get, dict(os.environ)),
                             max_message_bytes=self.max_message_bytes, client_version=_version(), **kw)

    async def stop(self) -> None:
        """Stop every server (their configs stay; the next use starts them again)."""
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._watch
            self._watch = None
        conns = [c for _, c in self._connections.values()]
        await asyncio.gather(*(c.stop() for c in conns), *self._stopping, return_exceptions=True)

    # -- what the API and the CLI ask ------------------------------------------------------------
    def describe(self, name: str) -> dict[str, Any]:
        config = self.store.get(name)
        held = self._connections.get(name)
        status = held[1].status() if held is not None and held[0] == config else {"state": "stopped"}
        return {"name": name, "kind": config.kind, "config": config.to_json(), "disabled": config.disabled,
                "status": status}

    def servers(self) -> list[dict[str, Any]]:
        return [self.describe(name) for name in sorted(self.sync())]

    def add(self, name: str, config: ServerConfig, *, secret_env: dict[str, str] | None = None,
            secret_headers: dict[str, str] | None = None, replace: bool = False) -> dict[str, Any]:
        self.store.add(name, config, secret_env=secret_env, secret_headers=secret_headers, replace=replace)
        self.sync()
        return self.describe(name)

    async def remove(self, name: str) -> dict[str, Any]:
        described = self.describe(name)
        self.store.remove(name)
        held = self._connections.pop(name, None)
        if held is not None:
            await held[1].stop()
        self.sync()
        return described

    async def test(self, name: str, timeout: float = TEST_TIMEOUT_S) -> dict[str, Any]:
        """Start the server afresh (beside any running connection), list what it offers, stop it."""
        config = self.store.get(name)
        conn = self._new_connection(name, config)
        conn.startup_timeout = timeout
        report: dict[str, Any] = {"name": name, "kind": config.kind, "ok": False, "problem": None}
        started = time.perf_counter()
        try:
            await conn.session(timeout)
            report["started_ms"] = round((time.perf_counter() - started) * 1000, 1)
            report["server"] = conn.server_info
            tools = await conn.list_tools(timeout)
            report["tools"] = [_tool_json(name, t, n) for t, n in _named(name, tools)]
            report["resources"] = len(await conn.list_resources(timeout))
            report["prompts"] = len(await conn.list_prompts(timeout))
            report["ok"] = True
        except ServerError as e:
            report["problem"] = {"kind": e.kind, "message": str(e)}
        finally:
            await conn.stop()
        return report

    async def tools(self, name: str) -> list[dict[str, Any]]:
        self.store.get(name)
        listed = await self.connection(name).list_tools()
        return [_tool_json(name, t, n) for t, n in _named(name, listed)]

    async def resources(self, name: str) -> list[dict[str, Any]]:
        self.store.get(name)
        return [{"uri": str(r.uri), "name": r.name, "description": r.description, "mime_type": r.mime_type}
                for r in await self.connection(name).list_resources()]

    async def prompts(self, name: str) -> list[dict[str, Any]]:
        self.store.get(name)
        return [{"name": p.name, "description": p.description,
                 "arguments": [{"name": a.name, "description": a.description, "required": bool(a.required)}
                               for a in (p.arguments or [])]}
                for p in await self.connection(name).list_prompts()]

    # -- imports ---------------------------------------------------------------------------------
    def offers(self, home: Path | None = None) -> list[imports.Found]:
        """Claude Desktop's and Cursor's servers found here that are not configured yet."""
        have = self.sync()
        out = []
        for found in imports.found(home):
            found.candidates = [c for c in found.candidates if c.name not in have]
            if found.candidates or found.problem:
                out.append(found)
        return out

    def import_from(self, found: imports.Found, names: list[str] | None = None,
                    replace: bool = False) -> dict[str, Any]:
        """Import the chosen servers of one file (all of them when `names` is None)."""
        wanted = set(names) if names is not None else None
        by_name = {c.name: c for c in found.candidates} | {c.source_name: c for c in found.candidates}
        if wanted is not None:
            missing = sorted(n for n in wanted if n not in by_name)
            if missing:
                raise NotFoundError(f"{found.label}'s file has no server named {missing[0]!r}; it has: "
                                    + ", ".join(c.source_name for c in found.candidates))
        have = self.sync()
        imported: list[dict[str, Any]] = []
        skipped: list[dict[str, str]] = []
        for c in found.candidates:
            if wanted is not None and c.name not in wanted and c.source_name not in wanted:
                continue
            if c.config is None:
                skipped.append({"name": c.source_name, "why": c.problem or "cannot be read"})
                continue
            if c.name in have and not replace:
                skipped.append({"name": c.source_name, "why": f"a server named {c.name!r} exists already"})
                continue
            self.store.add(c.name, c.config, secret_env=c.secret_env, secret_headers=c.secret_headers,
                           replace=replace)
            imported.append({"name": c.name, "from": c.source_name, "notes": c.notes,
                             "secrets": len(c.secret_env) + len(c.secret_headers)})
        self.sync()
        return {"source": found.label, "path": str(found.path), "imported": imported, "skipped": skipped}

    def find_offer(self, source: str, home: Path | None = None) -> imports.Found:
        """`claude`, `cursor` or a path to a file in the same shape."""
        from pathlib import Path

        if source in imports.APPS:
            for app, path in imports.config_files(home):
                if app == source:
                    if not path.is_file():
                        raise NotFoundError(f"{imports.APPS[app]}'s MCP settings are not here ({path})")
                    return imports.read(app, path)
        path = Path(source).expanduser()
        if not path.is_file():
            raise BadRequestError(f"{source!r} is neither claude, cursor nor a file")
        return imports.read("file", path)


def _named(server: str, tools: list[Any]) -> list[tuple[Any, str]]:
    taken: set[str] = set()
    out = []
    for t in tools:
        n = tool_name(server, t.name, taken)
        taken.add(n)
        out.append((t, n))
    return out


def _tool_json(server: str, tool: Any, name: str) -> dict[str, Any]:
    return {"name": name, "mcp_name": tool.name, "description": tool.description or "",
            "input_schema": tool.input_schema}


__all__ = ["McpHost", "ServerError", "check_name"]
