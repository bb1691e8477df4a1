"""A kernel-run agent calling a real MCP server's tool through the kernel's tool registry."""

from __future__ import annotations

import json

import pytest_asyncio

from app.kernel.agents.process import ProcessState
from app.kernel.agents.spec import parse_agent
from tests.kernel.mcp.conftest import faulty, python_server


@pytest_asyncio.fixture
async def agent_kernel(kernel, agent_upstream):
    await kernel.add_provider("fake", "openai", base_url=agent_upstream.api_base)
    await kernel.refresh_provider("fake")
    await kernel.set_default_model("fake/gpt-fake-mini")
    return kernel


def allow(kernel, app: str, selector: str) -> None:
    """Grant the tool the user would approve (MCP tools ask until the user decides). Kernels
    without a permission layer run every tool the agent file names."""
    invoker = getattr(type(kernel), "tool_invoker", None)
    if invoker is not None:
        kernel.tool_invoker.permissions.set(app, selector, "allow")


async def test_an_agent_naming_mcp_time_gets_the_real_time(agent_kernel, agent_upstream):
    agent_kernel.mcp.add("time", python_server("mcp-server-time"))
    allow(agent_kernel, "agent-clock", "mcp:time")
    agent_upstream.plan = [[("mcp__time__get_current_time", {"timezone": "Europe/Lisbon"})]]
    spec = parse_agent('name = "clock"\ninstructions = "Tell the time."\ntools = ["mcp__time"]\n')
    proc = await agent_kernel.agents.spawn(spec, "What time is it in Lisbon?")
    done = await agent_kernel.agents.wait(proc.pid, timeout=60)
    assert done.state is ProcessState.DONE, done.reason
    said = json.loads(done.result.removeprefix("Final answer. Last tool said: "))
    assert said["timezone"] == "Europe/Lisbon" and said["datetime"][:4].isdigit()
    offered = {t["function"]["name"] for t in agent_upstream.chat_bodies[0]["tools"]}
    assert offered == {"mcp__time__get_current_time", "mcp__time__convert_time"}


async def test_an_agent_whose_mcp_server_crashes_mid_call_is_told_in_words(agent_kernel, agent_upstream):
    agent_kernel.mcp.add("bad", faulty())
    allow(agent_kernel, "agent-victim", "mcp:bad")
    agent_upstream.plan = [[("mcp__bad__crash", {})]]
    spec = parse_agent('name = "victim"\ninstructions = "Use the tool."\ntools = ["mcp__bad"]\n')
    proc = await agent_kernel.agents.spawn(spec, "go")
    done = await agent_kernel.agents.wait(proc.pid, timeout=60)
    assert done.state is ProcessState.DONE, done.reason
    assert "exited with code 7" in done.result and "something broke" in done.result
