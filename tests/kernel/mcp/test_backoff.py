"""A server that keeps crashing rests between tries, and callers are told so instead of queueing."""

from __future__ import annotations

import asyncio
import shutil

import pytest

from app.kernel.mcp.config import ServerConfig
from app.kernel.mcp.connection import ServerError


async def test_callers_of_a_resting_server_are_told_at_once_not_queued(host):
    host.add("down", ServerConfig(command=shutil.which("false") or "false"))

    async def ask_six_times() -> list[str]:
        said = []
        for _ in range(6):
            with pytest.raises(ServerError) as e:
                await host.tools("down")
            said.append(str(e.value))
        return said

    # Waiting out every backoff (0, 0, 0.5, 1, 2, 4 s, and 8 s next) takes longer than this bound;
    # a long rest is said at once instead.
    said = await asyncio.wait_for(ask_six_times(), 6)
    assert "exited with code 1" in said[0]
    assert any("starts it again in" in s for s in said[3:])
    # Callers at the same time are not queued behind each other's waits either.
    many = await asyncio.wait_for(asyncio.gather(*(host.tools("down") for _ in range(10)),
                                                 return_exceptions=True), 3)
    assert all(isinstance(e, ServerError) and "starts it again in" in str(e) for e in many)
