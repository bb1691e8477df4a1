"""The user's MCP servers: `mcp.json` in the config dir (`{"mcpServers": {...}}`), secrets in the keyring.

The file is the one truth shared by the CLI and a running ByenatOS: `byenatos mcp add` writes it
while `serve` runs, and the daemon's host sees the change on its next look (`servers()` re-reads
the file when its modification time or size changed). Writes are atomic (a temporary file
renamed into place, owner-only) under a lock file, so two writers never lose each other's server.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.kernel.errors import ConfigError, NotFoundError
from app.kernel.mcp.config import ServerConfig, check_name, parse, secret_name, secret_ref

if TYPE_CHECKING:
    from app.kernel.config import Paths
    from app.kernel.security.secrets import SecretStore

log = logging.getLogger(__name__)
FILE_NAME = "mcp.json"
RESTAT_S = 0.25  # the file is looked at (one stat) at most this often: every tool call asks


class McpStore:
    def __init__(self, paths: Paths, secrets: SecretStore) -> None:
        self.path: Path = paths.config_dir / FILE_NAME
        self.secrets = secrets
        self._stamp: tuple[int, int] | None = None
        self._loaded = False
        self._checked = 0.0  # time.monotonic() of the last stat
        self._servers: dict[str, ServerConfig] = {}
        self._problem: str | None = None  # why the file could not be read (its servers are then unknown)
        self.generation = 0  # grows whenever what the file says changes

    # -- reading ---------------------------------------------------------------------------------
    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return st.st_mtime_ns, st.st_size

    def servers(self, *, fresh: bool = False) -> dict[str, ServerConfig]:
        """Every configured server by name (re-read when the file changed; looked at no more often
        than every RESTAT_S unless `fresh`)."""
        now = time.monotonic()
        if self._loaded and not fresh and now - self._checked < RESTAT_S:
            return self._servers
        self._checked = now
        stamp = self._file_stamp()
        if stamp != self._stamp or not self._loaded:
            self._stamp = stamp
            servers, problem = self._read()
            if servers != self._servers or problem != self._problem or not self._loaded:
                self._servers, self._problem, self._loaded = servers, problem, True
                self.generation += 1
                if problem:
                    log.warning("%s", problem)
        return self._servers  # replaced, never changed in place: callers may keep it

    @property
    def problem(self) -> str | None:
        self.servers(fresh=True)
        return self._problem

    def _read(self) -> tuple[dict[str, ServerConfig], str | None]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}, None
        except OSError as e:
            return {}, f"cannot read {self.path}: {e.strerror}"
        try:
            data = json.loads(text) if text.strip() else {}
        except json.JSONDecodeError as e:
            return {}, f"{self.path} is not valid JSON (line {e.lineno}: {e.msg}); fix or remove it"
        raw = data.get("mcpServers", {}) if isinstance(data, dict) else None
        if not isinstance(raw, dict):
            return {}, f"{self.path}: `mcpServers` must be an object of servers by name"
        servers: dict[str, ServerConfig] = {}
        problems: list[str] = []
        for name, entry in raw.items():
            try:
                servers[check_name(name)] = parse(name, entry)
            except Exception as e:  # one bad entry leaves the others usable
                problems.append(str(e))
        return servers, (f"{self.path}: " + "; ".join(problems)) if problems else None

    def get(self, name: str) -> ServerConfig:
        found = self.servers().get(name)
        if found is None:
            found = self.servers(fresh=True).get(name)
        if found is None:
            known = ", ".join(sorted(self._servers)) or "none yet (add one with `byenatos mcp add`)"
            raise NotFoundError(f"no MCP server named {name!r}; servers: {known}")
        return found

    # -- writing ---------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        """The file's JSON, to change in place and write back, with other writers kept out."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = os.open(self.path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            with contextlib.suppress(ImportError):
                import fcntl

                fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                data = json.loads(self.path.read_text(encoding="utf-8") or "{}")
            except FileNotFoundError:
                data = {}
            except json.JSONDecodeError as e:
                raise ConfigError(f"{self.path} is not valid JSON (line {e.lineno}: {e.msg}); "
                                  "fix or remove it before changing servers") from None
            if not isinstance(data, dict) or not isinstance(data.setdefault("mcpServers", {}), dict):
                raise ConfigError(f"{self.path}: `mcpServers` must be an object of servers by name")
            yield data
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh, indent=2, ensure_ascii=False)
                fh.write("\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        finally:
            os.close(lock)  # releases the flock
        self.servers(fresh=True)

    def add(self, name: str, config: ServerConfig, *, secret_env: dict[str, str] | None = None,
            secret_headers: dict[str, str] | None = None, replace: bool = False) -> ServerConfig:
        """Save a server. Secrets go to the keyring and the file names them (`${secret:…}`)."""
        from app.kernel.errors import BadRequestError

        check_name(name)
        if name in self.servers(fresh=True) and not replace:
            raise BadRequestError(f"an MCP server named {name!r} exists already (remove it first, or replace it)")
        env, headers = dict(config.env), dict(config.headers)
        written: list[str] = []
        for where, values, target in (("env", secret_env or {}, env), ("header", secret_headers or {}, headers)):
            for key, value in values.items():
                ref = secret_name(name, where, key)
                self.secrets.set(ref, value)
                written.append(ref)
                target[key] = secret_ref(ref)
        final = config.model_copy(update={"env": env, "headers": headers})
        final = parse(name, final.model_dump())  # the references keep it valid (headers only with a url…)
        with self._locked() as data:
            old = data["mcpServers"].get(name)
            data["mcpServers"][name] = final.to_json()
        if old is not None:  # secrets the replaced entry named and the new one does not: gone
            with contextlib.suppress(Exception):
                for stale in set(parse(name, old).secret_names()) - set(final.secret_names()):
                    self._forget(name, stale)
        return final

    def remove(self, name: str) -> ServerConfig:
        config = self.get(name)
        with self._locked() as data:
            data["mcpServers"].pop(name, None)
        for ref in config.secret_names():
            self._forget(name, ref)
        return config

    def _forget(self, server: str, ref: str) -> None:
        if ref.startswith(f"mcp.{server}."):  # only secrets this host wrote for the server
            self.secrets.delete(ref)

    def set_disabled(self, name: str, disabled: bool) -> ServerConfig:
        config = self.get(name).model_copy(update={"disabled": disabled})
        with self._locked() as data:
            data["mcpServers"][name] = config.to_json()
        return config
