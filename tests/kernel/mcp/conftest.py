"""Fixtures for the MCP host: a host on a fresh home, the reference servers, the faulty fake."""

from __future__ import annotations

import shutil
import socket
import sys
from pathlib import Path

import pytest
import pytest_asyncio

from app.kernel.mcp.config import ServerConfig

ROOT = Path(__file__).resolve().parents[3]
VENV_BIN = Path(sys.executable).parent
NPM_BIN = ROOT / "tests" / "fakes" / "npm_mcp" / "node_modules" / ".bin"


def faulty(*flags: str, **kw) -> ServerConfig:
    """The deliberately bad server (tests/fakes/mcp_faulty.py)."""
    return ServerConfig(command=sys.executable, args=["-m", "tests.fakes.mcp_faulty", *flags], cwd=str(ROOT), **kw)


def python_server(name: str, *args: str) -> ServerConfig:
    """A reference server from PyPI, installed in the venv (mcp-server-time, mcp-server-git)."""
    path = VENV_BIN / name
    if not path.exists():
        pytest.skip(f"{name} is not installed in the venv (a dev dependency)")
    return ServerConfig(command=str(path), args=list(args))


def npm_server(name: str) -> Path:
    """An npm reference server's launcher; skips without node or the installed package."""
    if shutil.which("node") is None:
        pytest.skip("node is not installed (scripts/node_deps.sh installs it)")
    path = NPM_BIN / name
    if not path.exists():
        pytest.skip(f"{name} is not installed in tests/fakes/npm_mcp (run scripts/node_deps.sh)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def paths(home, monkeypatch):
    from app.kernel.config import Paths
    from app.kernel.security.secrets import BACKEND_ENV

    monkeypatch.setenv(BACKEND_ENV, "file")
    return Paths.default().ensure()


@pytest.fixture
def secrets(paths):
    from app.kernel.security.secrets import SecretStore

    return SecretStore(paths.secrets_file)


@pytest_asyncio.fixture
async def host(paths, secrets):
    """An McpHost attached to a registry of its own; every server stopped at the end."""
    from app.kernel.mcp.host import McpHost
    from app.kernel.tools.base import ToolRegistry

    h = McpHost(paths, secrets)
    h.registry = ToolRegistry()
    h.attach(h.registry)
    try:
        yield h
    finally:
        await h.stop()


@pytest.fixture
def ctx(tmp_path):
    from app.kernel.tools.base import ToolContext

    return ToolContext(app="test", scopes=frozenset(), workdir=tmp_path, key="1:1:0")
