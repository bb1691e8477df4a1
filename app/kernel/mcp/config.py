"""One MCP server's settings, in the shape Claude Desktop and Cursor use for `mcpServers`.

    {"mcpServers": {
        "time":   {"command": "uvx", "args": ["mcp-server-time"], "env": {"TZ": "Europe/Lisbon"}},
        "github": {"command": "github-mcp", "env": {"GITHUB_TOKEN": "${secret:mcp.github.env.GITHUB_TOKEN}"}},
        "remote": {"url": "https://example.com/mcp", "headers": {"Authorization": "${secret:mcp.remote.header.Authorization}"}},
        "legacy": {"url": "http://127.0.0.1:3001/sse", "transport": "sse"}}}

A stdio server has `command` (and `args`, `env`, `cwd`); a remote one has `url`, `transport`
(`streamable_http`, the default, or `sse`; `type` as Claude Code and VS Code spell it is read
too) and `headers`. Values of `env`, `headers` and `args` may name a secret kept in the keyring,
`${secret:NAME}`, or a variable of ByenatOS's own environment, `${env:NAME}` (as Cursor does):
secrets are never written in the file. `timeout` (seconds per call) and `disabled` are ours.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from app.kernel.errors import BadRequestError, ConfigError

Transport = Literal["stdio", "streamable_http", "sse"]
TRANSPORTS: tuple[str, ...] = ("stdio", "streamable_http", "sse")
# What other apps write in `type`/`transport`, as ours.
_TRANSPORT_ALIASES = {
    "stdio": "stdio", "http": "streamable_http", "streamable_http": "streamable_http",
    "streamable-http": "streamable_http", "streamablehttp": "streamable_http", "sse": "sse",
}
# Server names end up in tool names (`mcp__<server>__<tool>`, ^[A-Za-z0-9_-]{1,64}$): letters,
# digits, `-` and single `_` (a `__` would make `mcp__a__b__x` ambiguous), at most 32 characters.
NAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]|_(?!_))*$")
MAX_NAME = 32
_REF = re.compile(r"\$\{(secret|env):([^}]+)\}")
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DEFAULT_TIMEOUT_S = 60.0


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME or not NAME_RE.match(name) \
            or name.endswith("_"):
        raise BadRequestError(f"{name!r} is not a server name: use letters, digits, '-' and single '_', "
                              f"at most {MAX_NAME} characters (e.g. 'github', 'my-notes')")
    return name


def slug(name: str) -> str:
    """A name from another app's file ("My Notes.app") as a server name here ("my-notes-app")."""
    out = re.sub(r"_+", "_", re.sub(r"[^a-z0-9_]+", "-", name.lower())).strip("-_")[:MAX_NAME].strip("-_")
    return out or "server"


class ServerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    command: str | None = Field(None, min_length=1, max_length=4096)
    args: list[str] = Field(default_factory=list, max_length=256)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = Field(None, min_length=1, max_length=4096)
    url: str | None = Field(None, min_length=1, max_length=4096)
    transport: Transport | None = None  # None: stdio with `command`, streamable HTTP with `url`
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: float = Field(DEFAULT_TIMEOUT_S, gt=0, le=3600)  # seconds a call may take
    disabled: bool = False

    @model_validator(mode="before")
    @classmethod
    def _type_alias(cls, data: Any) -> Any:
        if isinstance(data, dict) and "type" in data:
            data = dict(data)
            kind = data.pop("type")
            data.setdefault("transport", kind)
        if isinstance(data, dict) and isinstance(data.get("transport"), str):
            data = dict(data)
            data["transport"] = _TRANSPORT_ALIASES.get(data["transport"].lower().replace(" ", ""),
                                                       data["transport"])
        return data

    @field_validator("env")
    @classmethod
    def _env_keys(cls, v: dict[str, str]) -> dict[str, str]:
        for key in v:
            if not _ENV_KEY.match(key):
                raise ValueError(f"{key!r} is not an environment variable name")
        return v

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^\s/]+", v):
            raise ValueError("a url starts with http:// or https://")
        return v

    @model_validator(mode="after")
    def _one_kind(self) -> ServerConfig:
        if (self.command is None) == (self.url is None):
            raise ValueError("give either `command` (a program to run) or `url` (a remote server), not both")
        if self.command is not None and self.transport not in (None, "stdio"):
            raise ValueError("a server with `command` talks over stdio; `transport` is for a `url`")
        if self.url is not None:
            if self.transport == "stdio":
                raise ValueError("a server with `url` talks over streamable_http or sse, not stdio")
            if self.args or self.env or self.cwd:
                raise ValueError("`args`, `env` and `cwd` are for a server started with `command`")
        if self.command is not None and self.headers:
            raise ValueError("`headers` are for a server at a `url`")
        return self

    @property
    def kind(self) -> str:
        if self.command is not None:
            return "stdio"
        return self.transport or ("sse" if self.url and self.url.rstrip("/").endswith("/sse") else "streamable_http")

    def to_json(self) -> dict[str, Any]:
        """The file's entry: what was set, in the shape the other apps read."""
        return self.model_dump(exclude_defaults=True)

    def secret_names(self) -> list[str]:
        """The keyring entries this server's settings name."""
        texts = [*self.env.values(), *self.headers.values(), *self.args]
        return sorted({m.group(2) for t in texts for m in _REF.finditer(t) if m.group(1) == "secret"})


def parse(name: str, raw: Any) -> ServerConfig:
    """A server's entry, or a BadRequestError saying what is wrong with it in one line."""
    if not isinstance(raw, dict):
        raise BadRequestError(f"server {name!r}: an object with `command` or `url`")
    try:
        return ServerConfig.model_validate(raw)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        msg = first["msg"].removeprefix("Value error, ")
        raise BadRequestError(f"server {name!r}: {where + ': ' if where else ''}{msg}") from None


def secret_ref(name: str) -> str:
    return "${secret:" + name + "}"


def secret_name(server: str, where: str, key: str) -> str:
    """The keyring entry of one of a server's secrets: `mcp.<server>.env.<VAR>` or `.header.<Name>`."""
    return f"mcp.{server}.{where}.{key}"


@dataclass(frozen=True, slots=True)
class Resolved:
    """A server's settings with every reference replaced: what is used to start or reach it."""

    name: str
    kind: str
    command: str | None
    args: list[str]
    env: dict[str, str]
    cwd: str | None
    url: str | None
    headers: dict[str, str]
    timeout: float


def resolve(name: str, config: ServerConfig, secret: Callable[[str], str | None],
            environ: dict[str, str]) -> Resolved:
    """Fill in `${secret:…}` from the keyring and `${env:…}` from `environ` (ConfigError naming
    what is missing: the server is not started without it)."""

    def fill(text: str, where: str) -> str:
        def one(m: re.Match[str]) -> str:
            kind, ref = m.group(1), m.group(2)
            value = secret(ref) if kind == "secret" else environ.get(ref)
            if value is None:
                if kind == "secret":
                    raise ConfigError(f"server {name!r}: {where} needs the secret {ref!r}, which is not in the "
                                      f"keyring; set it again with `byenatos mcp add {name} … --secret VAR`")
                raise ConfigError(f"server {name!r}: {where} needs the environment variable {ref}, which is not set")
            return value

        return _REF.sub(one, text)

    return Resolved(
        name=name, kind=config.kind, command=config.command,
        args=[fill(a, "an argument") for a in config.args],
        env={k: fill(v, f"env {k}") for k, v in config.env.items()},
        cwd=config.cwd, url=config.url,
        headers={k: fill(v, f"header {k}") for k, v in config.headers.items()},
        timeout=config.timeout,
    )
