"""The MCP servers Claude Desktop and Cursor are configured with, offered for import.

Nothing is imported on its own: `found()` says which files exist and what they hold, and the
user picks (`byenatos mcp import`, `POST /api/mcp/imports`). On import, every `env` value and
every header value goes to the keyring and the entry names it (`${secret:…}`): those files keep
tokens in plain text, and which values are secrets cannot be told from their names.
Names are made fit for tool names ("My Notes" → "my-notes"); keys ByenatOS does not use
(`autoApprove`, `alwaysAllow`…) are left behind, and the import says so.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.kernel.errors import BadRequestError
from app.kernel.mcp.config import ServerConfig, parse, slug

APPS = {"claude": "Claude Desktop", "cursor": "Cursor"}
_OURS = set(ServerConfig.model_fields) | {"type"}


def config_files(home: Path | None = None) -> list[tuple[str, Path]]:
    """Where each app keeps its `mcpServers` on this platform: (app, path), existing or not."""
    home = home or Path.home()
    if sys.platform == "darwin":
        claude = home / "Library" / "Application Support" / "Claude"
    elif sys.platform == "win32":
        claude = Path(os.environ.get("APPDATA", home / "AppData" / "Roaming")) / "Claude"
    else:
        claude = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config") / "Claude"
    return [("claude", claude / "claude_desktop_config.json"), ("cursor", home / ".cursor" / "mcp.json")]


@dataclass
class Candidate:
    """One server another app has, as it would be imported."""

    source_name: str  # its name there
    name: str  # its name here
    config: ServerConfig | None
    secret_env: dict[str, str] = field(default_factory=dict)
    secret_headers: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    problem: str | None = None  # why it cannot be imported

    def describe(self) -> dict[str, Any]:
        return {"source_name": self.source_name, "name": self.name, "problem": self.problem, "notes": self.notes,
                "config": self.config.to_json() if self.config else None,
                "secret_env": sorted(self.secret_env), "secret_headers": sorted(self.secret_headers)}


@dataclass
class Found:
    app: str  # "claude" | "cursor" | "file"
    label: str
    path: Path
    candidates: list[Candidate]
    problem: str | None = None

    def describe(self) -> dict[str, Any]:
        return {"app": self.app, "label": self.label, "path": str(self.path), "problem": self.problem,
                "servers": [c.describe() for c in self.candidates]}


def convert(source_name: str, raw: Any) -> Candidate:
    name = slug(source_name)
    if not isinstance(raw, dict):
        return Candidate(source_name, name, None, problem="not an object with `command` or `url`")
    notes = [f"left out {key!r} (not used by ByenatOS)" for key in sorted(set(raw) - _OURS)]
    entry = {k: v for k, v in raw.items() if k in _OURS}
    env = entry.pop("env", None) or {}
    headers = entry.pop("headers", None) or {}
    if not isinstance(env, dict) or not isinstance(headers, dict):
        return Candidate(source_name, name, None, problem="`env` and `headers` must be objects")
    secret_env = {str(k): str(v) for k, v in env.items() if v not in (None, "")}
    secret_headers = {str(k): str(v) for k, v in headers.items() if v not in (None, "")}
    try:
        config = parse(name, entry)
    except BadRequestError as e:
        return Candidate(source_name, name, None, notes=notes, problem=str(e).split(": ", 1)[-1])
    if name != source_name:
        notes.insert(0, f"named {name!r} here")
    return Candidate(source_name, name, config, secret_env, secret_headers, notes)


def read(app: str, path: Path) -> Found:
    label = APPS.get(app, str(path))
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        return Found(app, label, path, [], problem=f"cannot read it: {e.strerror}")
    except json.JSONDecodeError as e:
        return Found(app, label, path, [], problem=f"not valid JSON (line {e.lineno}: {e.msg})")
    servers = data.get("mcpServers") if isinstance(data, dict) else None
    if not isinstance(servers, dict):
        return Found(app, label, path, [], problem="no `mcpServers` object in it")
    candidates = [convert(n, raw) for n, raw in servers.items()]
    seen: dict[str, int] = {}
    for c in candidates:  # two names that slug alike ("My App", "my-app"): the second gets a number
        seen[c.name] = seen.get(c.name, 0) + 1
        if seen[c.name] > 1:
            c.name = f"{c.name[:29]}-{seen[c.name]}"
    return Found(app, label, path, candidates)


def found(home: Path | None = None) -> list[Found]:
    """The other apps' files that exist here, read."""
    return [read(app, path) for app, path in config_files(home) if path.is_file()]
