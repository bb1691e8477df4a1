"""One server's connection against servers that misbehave: each fault is a clear ToolError, fast.

Every test bounds its own wait (asyncio.wait_for): a fault that made a call hang fails the test
instead of hanging the run.
"""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from app.kernel.mcp.config import ServerConfig
from app.kernel.mcp.connection import ServerError, backoff
from app.kernel.tools.base import ToolError
from tests.kernel.mcp.conftest import faulty


async def call(host, ctx, server: str, tool: str, args: dict | None = None, within: float = 20):
    found = await asyncio.wait_for(host.registry.find(f"mcp__{server}__{tool}"), within)
    return await asyncio.wait_for(found.call(ctx, args or {}), within)


async def test_a_server_that_crashes_mid_call_is_an_error_naming_its_exit_code_then_it_restarts(host, ctx):
    host.add("bad", faulty())
    assert await call(host, ctx, "bad", "echo", {"text": "before"}) == "before"
    first_pid = host.connection("bad").status()["pid"]
    with pytest.raises(ServerError) as e:
        await call(host, ctx, "bad", "crash")
    assert e.value.kind == "exited"
    assert "exited with code 7" in str(e.value) and "something broke" in str(e.value)
    # the next call starts it again (the first crash in a row waits no backoff)
    assert await call(host, ctx, "bad", "echo", {"text": "after"}) == "after"
    status = host.connection("bad").status()
    assert status["restarts"] == 1 and status["state"] == "ready" and status["pid"] != first_pid


async def test_a_hanging_tool_times_out_and_the_server_serves_the_next_call(host, ctx):
    host.add("slow", faulty(timeout=1))
    started = time.monotonic()
    with pytest.raises(ServerError) as e:
        await call(host, ctx, "slow", "hang")
    assert e.value.kind == "timeout" and "within 1 s" in str(e.value)
    assert time.monotonic() - started < 5
    assert await call(host, ctx, "slow", "echo", {"text": "still here"}) == "still here"


async def test_malformed_json_rpc_ends_the_call_at_once_saying_what_the_server_wrote(host, ctx):
    host.add("garbled", faulty())
    started = time.monotonic()
    with pytest.raises(ServerError) as e:
        await call(host, ctx, "garbled", "malformed")
    assert e.value.kind == "not_mcp" and "{this is not json" in str(e.value)
    assert time.monotonic() - started < 10  # not the 60 s call timeout


async def test_a_result_of_the_wrong_shape_is_a_tool_error(host, ctx):
    host.add("shape", faulty())
    with pytest.raises(ToolError, match="not valid MCP"):
        await call(host, ctx, "shape", "bad_result")


async def test_an_enormous_result_is_capped_for_the_model(host, ctx):
    host.add("big", faulty())
    text = await call(host, ctx, "big", "huge", {"chars": 3_000_000})
    assert len(text) < 101_000 and text.startswith("x" * 1000)
    assert "2,900,000 more characters cut" in text


async def test_a_message_beyond_the_transport_limit_is_refused_without_buffering_it(paths, secrets, ctx):
    from app.kernel.mcp.host import McpHost
    from app.kernel.tools.base import ToolRegistry

    small = McpHost(paths, secrets, max_message_bytes=1_000_000)
    small.attach(registry := ToolRegistry())
    small.add("big", faulty())
    try:
        tool = await registry.find("mcp__big__huge")
        with pytest.raises(ServerError) as e:
            await asyncio.wait_for(tool.call(ctx, {"chars": 3_000_000}), 20)
        assert e.value.kind == "not_mcp" and "a message larger than 977 KB" in str(e.value)
        echo = await registry.find("mcp__big__echo")  # started again for the next call
        assert await asyncio.wait_for(echo.call(ctx, {"text": "ok"}), 20) == "ok"
    finally:
        await small.stop()


async def test_a_tool_result_marked_as_an_error_is_a_tool_error_with_its_text(host, ctx):
    host.add("f", faulty())
    with pytest.raises(ToolError, match="the disk is full"):
        await call(host, ctx, "f", "fail")


async def test_a_command_that_does_not_exist(host):
    host.add("ghost", ServerConfig(command="byenatos-no-such-mcp-server"))
    with pytest.raises(ServerError) as e:
        await asyncio.wait_for(host.registry.find("mcp__ghost__anything"), 10)
    assert e.value.kind == "command_not_found" and "'byenatos-no-such-mcp-server' was not found" in str(e.value)


async def test_a_server_that_never_answers_the_handshake_times_out(paths, secrets):
    from app.kernel.mcp.host import McpHost

    h = McpHost(paths, secrets, startup_timeout=1.0)
    h.add("mute", faulty("--hang-on-start"))
    started = time.monotonic()
    try:
        report = await asyncio.wait_for(h.test("mute", timeout=1.0), 15)
    finally:
        await h.stop()
    assert report["ok"] is False and report["problem"]["kind"] == "timeout"
    assert "did not answer the MCP handshake within 1 s" in report["problem"]["message"]
    assert time.monotonic() - started < 10


async def test_a_banner_on_stdout_means_not_an_mcp_server(host):
    host.add("chatty", faulty("--banner", "Welcome to my server!"))
    report = await asyncio.wait_for(host.test("chatty"), 15)
    assert report["problem"]["kind"] == "not_mcp"
    assert "Welcome to my server!" in report["problem"]["message"]


async def test_a_server_that_ignores_sigterm_is_killed_on_stop(host, ctx):
    host.add("stubborn", faulty("--stubborn"))
    assert await call(host, ctx, "stubborn", "echo", {"text": "hi"}) == "hi"
    pid = host.connection("stubborn").status()["pid"]
    started = time.monotonic()
    await asyncio.wait_for(host.stop(), 15)
    assert time.monotonic() - started < 6
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_the_tool_list_is_fetched_again_after_list_changed(host, ctx):
    host.add("grower", faulty())
    names = [t.name for t in await host.registry.resolve(["mcp__grower"])]
    assert "mcp__grower__extra" not in names
    conn = host.connection("grower")
    generation = conn.tools_generation
    assert await call(host, ctx, "grower", "grow") == "grown"
    deadline = time.monotonic() + 10
    while conn.tools_generation == generation:  # the notification arrives after the answer
        assert time.monotonic() < deadline, "no tools/list_changed seen"
        await asyncio.sleep(0.01)
    names = [t.name for t in await host.registry.resolve(["mcp__grower"])]
    assert "mcp__grower__extra" in names


async def test_the_tool_list_is_cached(host):
    host.add("c", faulty())
    conn = host.connection("c")
    first = await conn.list_tools()
    assert await conn.list_tools() is first


async def test_repeated_start_failures_back_off(host):
    host.add("crashy", ServerConfig(command="sh", args=["-c", "exit 2"]))
    conn = host.connection("crashy")
    with pytest.raises(ServerError, match="exited with code 2"):
        await conn.session(5)
    with pytest.raises(ServerError, match="exited with code 2"):
        await conn.session(5)  # the first failure in a row is retried at once
    # the second is not: a call whose timeout is shorter than the backoff fails at once, saying when
    started = time.monotonic()
    with pytest.raises(ServerError) as e:
        await conn.session(0.2)
    assert e.value.kind == "crashed" and "starts it again in" in str(e.value)
    assert time.monotonic() - started < 0.2
    assert conn.status()["state"] == "crashed" and conn.status()["retry_in_s"] > 0


def test_backoff_grows_and_is_bounded():
    assert [backoff(n) for n in (1, 2, 3, 4)] == [0.0, 0.5, 1.0, 2.0]
    assert backoff(50) == 30.0
