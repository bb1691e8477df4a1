"""Fixtures for the tool tests: a ToolContext over a real ByenatOS home's folders and settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.kernel.config import Paths, Settings
from app.kernel.tools.base import ToolContext
from tests.kernel.tools.desktop_fakes import notification_server, session_bus, xvfb  # noqa: F401 (fixtures)


class RecordingUndo:
    """An UndoKeeper that records what each file held when `keep` was called (None: absent)."""

    def __init__(self) -> None:
        self.kept: list[tuple[Path, bytes | None]] = []

    async def keep(self, path: Path) -> None:
        self.kept.append((path, path.read_bytes() if path.is_file() else None))  # noqa: ASYNC240 (a test fake)


@pytest.fixture
def tool_home(tmp_path):
    paths = Paths(tmp_path / "home" / "config", tmp_path / "home" / "data", tmp_path / "home" / "cache").ensure()
    workdir = paths.data_dir / "agents" / "worker"
    workdir.mkdir(parents=True)
    return paths, workdir


@pytest.fixture
def make_ctx(tool_home):
    paths, workdir = tool_home

    def make(*, settings: Settings | None = None, app: str = "agent-worker", **services) -> ToolContext:
        return ToolContext(app=app, scopes=frozenset(), workdir=workdir, key="1:0:0", pid=1,
                           services={"settings": settings or Settings(), "paths": paths, **services})

    return make
