"""Fixtures for the agent kernel: a kernel whose default socket is a tool-using fake model."""

from __future__ import annotations

import pytest_asyncio


@pytest_asyncio.fixture
async def agent_kernel(kernel, agent_upstream):
    """The kernel with `agent_upstream` as provider `fake`, its first model in the default socket."""
    await kernel.add_provider("fake", "openai", base_url=agent_upstream.api_base)
    await kernel.refresh_provider("fake")
    await kernel.set_default_model("fake/gpt-fake-mini")
    # The tools these tests' agents write with, allowed as the user would (`byenatos tools allow`);
    # asking first is tested in tests/kernel/tools/test_invoke.py.
    kernel.tool_invoker.permissions.set(None, "risk:write", "allow")
    return kernel
