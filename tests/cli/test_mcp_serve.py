"""`byenatos mcp serve` over stdio, driven by the official `mcp` SDK client spawning the real
entry point (.venv/bin/byenatos): with nothing running it serves from a kernel of its own; with
a gateway running for the home it relays to that gateway's /mcp (no second kernel)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import warnings
from pathlib import Path

import pytest
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError

from app.kernel import runtime_file
from app.kernel.mcp_server import MISSING_SCOPE

BYENATOS = str(Path(sys.executable).with_name("byenatos"))
ALL_TOOLS = ["memory_search", "memory_add", "psp_preview", "socket_show", "socket_swap", "agents_spawn",
             "agents_status"]


def env_for(home: Path, token: str | None = None) -> dict[str, str]:
    env = {"BYENATOS_HOME": str(home), "BYENATOS_SECRETS": "file", "LITELLM_LOCAL_MODEL_COST_MAP": "True",
           "PATH": os.environ.get("PATH", "")}
    if token is not None:
        env["BYENATOS_TOKEN"] = token
    return env


@contextlib.asynccontextmanager
async def stdio_client(home: Path, *args: str, token: str | None = None):
    from mcp import Client, StdioServerParameters

    params = StdioServerParameters(command=BYENATOS, args=["mcp", "serve", *args], env=env_for(home, token))
    async with Client(params, mode="legacy", cache=None, read_timeout_seconds=60) as client:
        yield client


async def ping(client) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MCPDeprecationWarning)
        assert (await client.send_ping()) is not None


def data(result) -> dict:
    assert not result.is_error, result.content
    return json.loads(result.content[0].text)


async def register(home: Path, *scopes: str) -> str:
    """An app token made before the server starts (the kernel here is stopped again)."""
    from app.kernel.kernel import Kernel

    os.environ["BYENATOS_SECRETS"] = "file"
    async with Kernel() as kernel:
        _, token = kernel.apps.register("an-mcp-client", list(scopes))
    return token


# -- nothing running: a kernel in the server's own process --------------------------------------------
async def test_in_process_serves_every_tool_paginated_with_the_admin_token(home):
    async with stdio_client(home, "--page-size", "2") as client:
        assert client.server_info.name == "byenatos" and client.protocol_version == "2025-11-25"
        names, cursor, pages = [], None, 0
        while True:
            page = await client.list_tools(cursor=cursor)
            names += [t.name for t in page.tools]
            pages += 1
            if (cursor := page.next_cursor) is None:
                break
        assert names == ALL_TOOLS and pages == 4
        added = data(await client.call_tool("memory_add", {"highlight": "stdio remembers the vault code 4711"}))
        found = data(await client.call_tool("memory_search", {"query": "vault code"}))["records"]
        assert [r["id"] for r in found] == [added["id"]]
        assert data(await client.call_tool("socket_show", {}))["aliases"] == []
        psp = (await client.read_resource("byenatos://psp")).contents[0]
        assert psp.mime_type == "text/markdown"
        await ping(client)


async def test_in_process_an_app_token_sees_its_scopes_and_gets_json_rpc_errors_past_them(home):
    token = await register(home, "chat", "hinata:write")
    async with stdio_client(home, token=token) as client:
        assert [t.name for t in (await client.list_tools()).tools] == ["memory_add", "socket_show"]
        assert data(await client.call_tool("memory_add", {"highlight": "mine"}))["status"] == "created"
        with pytest.raises(MCPError) as e:
            await client.call_tool("memory_search", {"query": "mine"})
        assert e.value.code == MISSING_SCOPE and "lacks the 'hinata:read' scope" in e.value.message
        with pytest.raises(MCPError) as e:
            await client.call_tool("socket_swap", {"model": "x"})
        assert e.value.code == MISSING_SCOPE and "'admin'" in e.value.message


async def test_a_revoked_token_is_one_readable_line_and_exit_1(home):
    token = "byn-" + "x" * 43
    proc = await asyncio.create_subprocess_exec(
        BYENATOS, "mcp", "serve", env=env_for(home, token), stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(b""), 60)
    assert proc.returncode == 1 and out == b""
    assert err.decode().strip().splitlines()[-1] == (
        "byenatos: the token in $BYENATOS_TOKEN is invalid or revoked; "
        "`byenatos apps register NAME --scope …` gives a new one")


# -- ByenatOS running: a relay to its /mcp ------------------------------------------------------------
@pytest.fixture
async def daemon(kernel, agent_upstream):
    """A gateway for the home, announced in the runtime file as a running `byenatos serve` is."""
    from app.kernel.gateway.server import GatewayServer

    await kernel.add_provider("fake", "openai", base_url=agent_upstream.api_base)
    await kernel.refresh_provider("fake")
    await kernel.set_default_model("fake/gpt-fake-mini")
    server = await GatewayServer(kernel, host="127.0.0.1", port=0).start()
    runtime_file.write(kernel.paths, host="127.0.0.1", port=server.port, kind="serve")
    try:
        yield server
    finally:
        runtime_file.remove(kernel.paths)
        await server.stop()


async def test_with_byenatos_running_it_relays_to_its_gateway(home, kernel, daemon):
    _, token = kernel.apps.register("relay-client", ["chat", "hinata:read", "hinata:write"])
    async with stdio_client(home, token=token) as client:
        added = data(await client.call_tool("memory_add", {"highlight": "relayed into the daemon"}))
        # written by the running kernel, not by one of the server's own
        assert (await kernel.personal.get(added["id"], _caller("relay-client")))["highlight"] == \
            "relayed into the daemon"
        with pytest.raises(MCPError) as e:
            await client.call_tool("psp_preview", {})
        assert e.value.code == MISSING_SCOPE and "'psp:read'" in e.value.message
        await ping(client)
    assert ("memory_add", "ok") in daemon.app["mcp_http"].server.activity.finished


async def test_through_the_relay_progress_arrives_and_a_cancel_reaches_the_daemon(home, kernel, daemon,
                                                                                agent_upstream):
    agent_upstream.gate = asyncio.Event()
    progress: list[float] = []

    async def on_progress(done, total, message):
        progress.append(done)

    async with stdio_client(home) as client:
        proc = data(await client.call_tool("agents_spawn", {"agent": "assistant", "task": "Wait."}))
        await agent_upstream.wait_waiting(1)
        activity = daemon.app["mcp_http"].server.activity
        call = asyncio.create_task(client.call_tool("agents_status", {"pid": proc["pid"], "wait_s": 600}))
        await activity.wait_for(lambda a: "agents_status" in a.in_flight.values())
        call.cancel()
        await activity.wait_for(lambda a: not a.in_flight)
        assert activity.finished[-1] == ("agents_status", "cancelled")
        with pytest.raises(asyncio.CancelledError):
            await call

        waiting = asyncio.create_task(client.call_tool("agents_status", {"pid": proc["pid"], "wait_s": 60},
                                                       progress_callback=on_progress))
        await activity.wait_for(lambda a: "agents_status" in a.in_flight.values())
        agent_upstream.gate.set()
        assert data(await waiting)["state"] == "done"
        assert progress and progress == sorted(progress)


def _caller(app: str):
    from app.kernel.personal.service import Caller

    return Caller(app, frozenset({"hinata:read"}))
