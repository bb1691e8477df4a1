"""The host against real MCP servers nobody here wrote: the PyPI and npm reference servers over
stdio, and server-everything over streamable HTTP and SSE."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import time
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio

from app.kernel.mcp.config import ServerConfig
from app.kernel.tools.base import Risk
from tests.kernel.mcp.conftest import faulty, free_port, npm_server, python_server


async def test_time_over_stdio_gives_the_real_time(host, ctx):
    host.add("time", python_server("mcp-server-time"))
    tools = {t.name: t for t in await asyncio.wait_for(host.registry.resolve(["mcp__time"]), 30)}
    assert set(tools) == {"mcp__time__get_current_time", "mcp__time__convert_time"}
    tool = tools["mcp__time__get_current_time"]
    assert tool.risk is Risk.NETWORK and tool.source == "mcp:time"
    assert tool.parameters["required"] == ["timezone"]
    answer = json.loads(await tool.call(ctx, {"timezone": "Asia/Tokyo"}))
    assert answer["timezone"] == "Asia/Tokyo"
    from datetime import datetime

    said = datetime.fromisoformat(answer["datetime"])
    assert abs((datetime.now(ZoneInfo("Asia/Tokyo")) - said).total_seconds()) < 120


@pytest.fixture
def git_repo(tmp_path):
    """A real repository: one commit (notes.txt), one untracked file (draft.txt)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@e"}
    subprocess.run(["git", "init", "-q", str(repo)], check=True, env=env)
    (repo / "notes.txt").write_text("Lisbon\n")
    subprocess.run(["git", "-C", str(repo), "add", "notes.txt"], check=True, env=env)
    subprocess.run(["git", "-C", str(repo), "commit", "-qm", "first notes"], check=True, env=env)
    (repo / "draft.txt").write_text("untracked\n")
    return repo


async def test_git_over_stdio_reads_a_real_repository(host, ctx, git_repo):
    repo = git_repo
    host.add("git", python_server("mcp-server-git", "--repository", str(repo)))
    status = await (await host.registry.find("mcp__git__git_status")).call(ctx, {"repo_path": str(repo)})
    assert "draft.txt" in status
    log = await (await host.registry.find("mcp__git__git_log")).call(ctx, {"repo_path": str(repo)})
    assert "first notes" in log


async def test_everything_over_stdio_tools_resources_prompts_and_an_image(host, ctx):
    host.add("everything", ServerConfig(command=str(npm_server("mcp-server-everything")), args=["stdio"]))
    tools = await asyncio.wait_for(host.tools("everything"), 60)
    names = {t["name"] for t in tools}
    assert {"mcp__everything__echo", "mcp__everything__get-sum", "mcp__everything__get-tiny-image"} <= names
    echo = await host.registry.find("mcp__everything__echo")
    assert await echo.call(ctx, {"message": "hi"}) == "Echo: hi"
    image = await (await host.registry.find("mcp__everything__get-tiny-image")).call(ctx, {})
    assert "[image image/png" in image and "bytes, not shown]" in image
    resources = await host.resources("everything")
    assert resources and all(r["uri"] for r in resources)
    prompts = await host.prompts("everything")
    assert any(p["name"] for p in prompts)


async def test_a_secret_reaches_the_server_from_the_keyring_and_never_the_file(host, ctx, paths, secrets):
    host.add("everything", ServerConfig(command=str(npm_server("mcp-server-everything")), args=["stdio"],
                                        env={"PLAIN_SETTING": "visible"}),
             secret_env={"BYENATOS_TEST_TOKEN": "s3cret-value-42"})
    text = (paths.config_dir / "mcp.json").read_text()
    assert "s3cret-value-42" not in text and "${secret:mcp.everything.env.BYENATOS_TEST_TOKEN}" in text
    assert secrets.get("mcp.everything.env.BYENATOS_TEST_TOKEN") == "s3cret-value-42"
    env = json.loads(await (await host.registry.find("mcp__everything__get-env")).call(ctx, {}))
    assert env["BYENATOS_TEST_TOKEN"] == "s3cret-value-42" and env["PLAIN_SETTING"] == "visible"
    assert not any(k.endswith("_API_KEY") for k in env)  # ByenatOS's own environment is not handed on
    await host.remove("everything")
    assert secrets.get("mcp.everything.env.BYENATOS_TEST_TOKEN") is None


async def test_filesystem_over_stdio_lists_and_reads_an_allowed_folder(host, ctx, tmp_path):
    folder = tmp_path / "allowed"
    folder.mkdir()
    (folder / "lisbon.md").write_text("# Notes about Lisbon\n")
    host.add("fs", ServerConfig(command=str(npm_server("mcp-server-filesystem")), args=[str(folder)]))
    listing = await (await host.registry.find("mcp__fs__list_directory")).call(ctx, {"path": str(folder)})
    assert "lisbon.md" in listing
    read = await (await host.registry.find("mcp__fs__read_text_file")).call(ctx, {"path": str(folder / "lisbon.md")})
    assert "Notes about Lisbon" in read


@contextlib.asynccontextmanager
async def everything_over_http(transport: str):
    """server-everything listening on a free loopback port (PORT), until its 'listening' line."""
    launcher = npm_server("mcp-server-everything")
    port = free_port()
    proc = await asyncio.create_subprocess_exec(str(launcher), transport, env={**os.environ, "PORT": str(port)},
                                                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
                                                start_new_session=True)
    try:
        async def listening() -> None:
            while line := await proc.stderr.readline():
                if str(port) in line.decode():
                    return
            raise AssertionError(f"server-everything {transport} exited with {await proc.wait()}")

        await asyncio.wait_for(listening(), 60)
        drain = asyncio.create_task(proc.stderr.read())  # keep its stderr pipe from filling up
        yield port
        drain.cancel()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 15)
        await proc.wait()


@pytest_asyncio.fixture
async def everything_http():
    async with everything_over_http("streamableHttp") as port:
        yield f"http://127.0.0.1:{port}/mcp"


async def test_everything_over_streamable_http(host, ctx, everything_http):
    host.add("remote", ServerConfig(url=everything_http, headers={"X-Test": "1"}))
    assert host.describe("remote")["kind"] == "streamable_http"
    echo = await asyncio.wait_for(host.registry.find("mcp__remote__echo"), 30)
    assert await echo.call(ctx, {"message": "over http"}) == "Echo: over http"
    total = await (await host.registry.find("mcp__remote__get-sum")).call(ctx, {"a": 2, "b": 3})
    assert "5" in total
    report = await host.test("remote")
    assert report["ok"] and report["server"]["name"] and report["resources"] > 0


async def test_everything_over_legacy_sse(host, ctx):
    async with everything_over_http("sse") as port:
        host.add("old", ServerConfig(url=f"http://127.0.0.1:{port}/sse"))
        assert host.describe("old")["kind"] == "sse"
        echo = await asyncio.wait_for(host.registry.find("mcp__old__echo"), 30)
        assert await echo.call(ctx, {"message": "over sse"}) == "Echo: over sse"


async def test_nothing_listening_at_a_url_says_so(host):
    host.add("gone", ServerConfig(url=f"http://127.0.0.1:{free_port()}/mcp"))
    report = await asyncio.wait_for(host.test("gone", timeout=10), 20)
    assert report["ok"] is False
    assert report["problem"]["kind"] == "unreachable", report
    assert "nothing answers at http://127.0.0.1:" in report["problem"]["message"]


async def test_the_registry_follows_the_file_a_cli_in_another_process_writes(host, paths, secrets):
    from app.kernel.mcp.store import McpStore

    assert "mcp__later" not in host.registry.names()
    McpStore(paths, secrets).add("later", faulty())  # as `byenatos mcp add` does, beside the daemon
    deadline = time.monotonic() + 10
    while "mcp__later" not in host.registry.names():  # the host's watch looks at the file each second
        assert time.monotonic() < deadline, "the host never saw the new server"
        await asyncio.sleep(0.05)
    host.registry.check(["mcp__later"])
    McpStore(paths, secrets).remove("later")
    host.sync()
    assert "mcp__later" not in host.registry.names()


async def test_a_changed_config_stops_the_old_server_and_uses_the_new_one(host, ctx):
    host.add("s", faulty())
    tool = await host.registry.find("mcp__s__echo")
    assert await tool.call(ctx, {"text": "one"}) == "one"
    old = host.connection("s")
    host.add("s", faulty(timeout=5), replace=True)
    new = host.connection("s")
    assert new is not old
    assert await (await host.registry.find("mcp__s__echo")).call(ctx, {"text": "two"}) == "two"
    await asyncio.gather(*host._stopping)
    assert old.status()["state"] == "stopped"


async def test_a_disabled_server_offers_no_tools(host):
    host.add("off", faulty(disabled=True))
    with pytest.raises(Exception, match="disabled"):
        host.connection("off")
    assert await host.registry.resolve(["mcp__off"]) == []
