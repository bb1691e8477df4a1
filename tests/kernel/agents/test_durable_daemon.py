"""A real `byenatos serve` killed with SIGKILL mid-run: after a restart every agent resumes from
its last completed step, and no completed tool call runs again."""

from __future__ import annotations

import asyncio
import json
import signal

import httpx

from app.kernel.kernel import Kernel
from tests.cli.test_daemon_discovery import start_daemon, stop_daemon

AGENTS = 5
ROUNDS = 3
SPEC = '''
name = "survivor"
instructions = "Append to your log, three times."
tools = ["file_write"]
'''
WRITE = ("file_write", {"path": "log.txt", "content": "line\n", "mode": "append"})


async def prepare_home(agent_upstream) -> str:
    """The provider and default model in the home; the admin token the daemon will accept."""
    kernel = await Kernel().start()
    try:
        await kernel.add_provider("fake", "openai", base_url=agent_upstream.api_base)
        await kernel.refresh_provider("fake")
        await kernel.set_default_model("fake/gpt-fake-mini")
        kernel.tool_invoker.permissions.set(None, "file_write", "allow")  # as `byenatos tools allow file_write`
        return kernel.apps.admin_token()
    finally:
        await kernel.stop()


async def until_ended(client: httpx.AsyncClient, pid: int) -> dict:
    """Follow the agent's event stream until its `end` event."""
    async with client.stream("GET", f"/api/agents/{pid}/events") as stream:
        event = None
        async for line in stream.aiter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: ") and event == "end":
                return json.loads(line.removeprefix("data: "))
    raise AssertionError(f"the event stream of agent {pid} closed without an end")


async def test_agents_resume_after_the_daemon_is_killed(home, agent_upstream, unused_tcp_port):
    token = await prepare_home(agent_upstream)
    agent_upstream.plan = [[WRITE]] * ROUNDS
    agent_upstream.gate = asyncio.Event()
    url = f"http://127.0.0.1:{unused_tcp_port}"
    headers = {"Authorization": f"Bearer {token}"}
    daemon = await start_daemon(home, "serve", "--port", str(unused_tcp_port), "--no-scan")
    try:
        async with httpx.AsyncClient(base_url=url, headers=headers, trust_env=False, timeout=30) as client:
            pids = []
            for i in range(AGENTS):
                r = await client.post("/api/agents", json={"spec": SPEC, "task": f"run {i}"})
                assert r.status_code == 201, r.text
                pids.append(r.json()["pid"])
            await asyncio.wait_for(agent_upstream.wait_waiting(AGENTS), 30)
            agent_upstream.gate.set()  # one round each: one tool call made, the next model call held
            agent_upstream.gate = asyncio.Event()
            await asyncio.wait_for(agent_upstream.wait_waiting(AGENTS), 30)
        log = home / "data" / "agents" / "survivor" / "log.txt"
        assert log.read_text().count("line") == AGENTS
        daemon.send_signal(signal.SIGKILL)
        assert await asyncio.wait_for(daemon.wait(), 30) == -signal.SIGKILL
    finally:
        agent_upstream.gate.set()
        if daemon.returncode is None:
            daemon.kill()
            await daemon.wait()

    daemon = await start_daemon(home, "serve", "--port", str(unused_tcp_port), "--no-scan")
    try:
        async with httpx.AsyncClient(base_url=url, headers=headers, trust_env=False, timeout=60) as client:
            ended = await asyncio.wait_for(asyncio.gather(*(until_ended(client, pid) for pid in pids)), 120)
        assert [e["state"] for e in ended] == ["done"] * AGENTS
        assert all(e["usage"]["tool_calls"] == ROUNDS for e in ended)
        assert log.read_text().count("line") == AGENTS * ROUNDS  # every call once: none repeated
    finally:
        assert await stop_daemon(daemon) == 0
    assert (home / "data" / "agents-engine.sqlite3").stat().st_size > 0  # DBOS's system database
